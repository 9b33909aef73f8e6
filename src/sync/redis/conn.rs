//! One non-blocking Redis connection: a mio socket, the bytes waiting to go out, and
//! the replies still owed, oldest first (Redis answers in order).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use redis::Value;

use crate::sys::fork;

/// A reply: the value, or the error text (a Redis error reply or a lost connection).
pub(crate) type Reply = Result<Value, String>;

/// What to do with a reply; it runs outside the bridge's lock.
pub(crate) type OnReply = Box<dyn FnOnce(Reply) + Send>;

/// A reply owed by Redis.
struct Owed {
    /// Past this the connection counts as stuck (a slow or frozen Redis).
    deadline: Instant,
    /// `None`: the bridge's own command (hand-shake, subscribe); an error reply to it
    /// breaks the connection.
    on_reply: Option<OnReply>,
}

/// What one read turned up.
#[derive(Default)]
pub(crate) struct Incoming {
    /// Replies to commands, with their handlers.
    pub(crate) replies: Vec<(Option<OnReply>, Reply)>,
    /// Pub/sub messages `(channel, payload)` (only on a subscriber connection).
    pub(crate) messages: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One connection to Redis, driven by whichever mio loop hosts the bridge.
pub(crate) struct RedisConn {
    stream: TcpStream,
    /// The loop token of this socket.
    pub(crate) token: Token,
    /// Redis's incremental RESP parser; keeps a partial value across `WouldBlock`.
    parser: redis::Parser,
    /// Packed commands not yet written.
    out: Vec<u8>,
    /// Replies still owed, in order.
    owed: VecDeque<Owed>,
    /// The non-blocking connect finished.
    connected: bool,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("token", &self.token)
            .field("owed", &self.owed.len())
            .field("connected", &self.connected)
            .finish()
    }
}

impl RedisConn {
    /// Starts a non-blocking connect and registers the socket with `registry`. The fd is
    /// closed (never shut down) in children forked while it is open.
    pub(crate) fn open(addr: SocketAddr, token: Token, registry: &Registry) -> io::Result<Self> {
        let mut stream = TcpStream::connect(addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        fork::close_in_child(stream.as_raw_fd());
        let _ = stream.set_nodelay(true);
        Ok(RedisConn {
            stream,
            token,
            parser: redis::Parser::new(),
            out: Vec::new(),
            owed: VecDeque::new(),
            connected: false,
        })
    }

    /// Queues a packed command that owes `replies` replies; `on_reply` takes the first
    /// (the rest are the bridge's own, e.g. one confirmation per subscribed channel).
    pub(crate) fn push(
        &mut self,
        packed: &[u8],
        deadline: Instant,
        on_reply: Option<OnReply>,
        replies: usize,
    ) {
        self.out.extend_from_slice(packed);
        self.owed.push_back(Owed { deadline, on_reply });
        for _ in 1..replies {
            self.owed.push_back(Owed {
                deadline,
                on_reply: None,
            });
        }
    }

    /// Writes what it can; an error means the connection is lost.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if !self.connected {
            if let Some(error) = self.stream.take_error()? {
                return Err(error);
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads and parses every complete value; an error means the connection is lost
    /// (closed by Redis, reset, or a reply we cannot parse).
    pub(crate) fn read(&mut self, subscriber: bool) -> Result<Incoming, String> {
        let mut got = Incoming::default();
        loop {
            let value = match self.parser.parse_value(Retrying(&self.stream)) {
                Ok(value) => value,
                Err(e) if e.is_timeout() => return Ok(got),
                Err(e) => return Err(e.to_string()),
            };
            if subscriber {
                if let Some(message) = as_message(&value) {
                    got.messages.push(message);
                    continue;
                }
            }
            let Some(owed) = self.owed.pop_front() else {
                return Err("a reply nobody asked for".into());
            };
            let reply = match value {
                Value::ServerError(e) => Err(e.to_string()),
                value => Ok(value),
            };
            if owed.on_reply.is_none() {
                if let Err(e) = &reply {
                    return Err(e.clone());
                }
            }
            got.replies.push((owed.on_reply, reply));
        }
    }

    /// The oldest reply's deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.owed.front().map(|owed| owed.deadline)
    }

    /// True while replies are owed.
    pub(crate) fn busy(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Closes the socket (a plain close) and hands back the handlers still owed a reply.
    pub(crate) fn close(mut self, registry: Option<&Registry>) -> Vec<OnReply> {
        if let Some(registry) = registry {
            let _ = registry.deregister(&mut self.stream);
        }
        self.owed
            .drain(..)
            .filter_map(|owed| owed.on_reply)
            .collect()
    }

    /// In a forked child: the fd was closed by `after_fork_in_child` and its number
    /// may be reused; never close it again (the little memory is the child's to lose).
    pub(crate) fn abandon(self) {
        std::mem::forget(self);
    }
}

impl Drop for RedisConn {
    fn drop(&mut self) {
        fork::forget_in_child(self.stream.as_raw_fd());
    }
}

/// A pub/sub `message` push: `(channel, payload)`.
fn as_message(value: &Value) -> Option<(Vec<u8>, Vec<u8>)> {
    let Value::Array(items) = value else {
        return None;
    };
    match items.as_slice() {
        [
            Value::BulkString(kind),
            Value::BulkString(channel),
            Value::BulkString(payload),
        ] if kind == b"message" => Some((channel.clone(), payload.clone())),
        _ => None,
    }
}

/// Reads from the socket, retrying `EINTR` (the parser would take it as a failure).
struct Retrying<'a>(&'a TcpStream);

impl Read for Retrying<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&mut &*self.0).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}
