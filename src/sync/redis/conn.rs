//! One non-blocking Redis connection: a mio socket, the bytes waiting to go out, the
//! bytes of a reply still arriving, and the replies still owed, oldest first (Redis
//! answers in order). What arrives is bounded in size (see `frame`) and in time: a
//! reply that started arriving must finish within the timeout, on every connection (a
//! subscriber's owes nothing, yet a half-sent message would hold it forever).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use redis::Value;

use super::frame;
use crate::sys::fork;

/// How much one read asks the socket for.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes one [`RedisConn::read`] takes at most: a peer that sends faster than they
/// are handled is read in turns, and the bridge's lock is let go between them.
const READ_BUDGET: usize = 64 * READ_CHUNK;
/// An empty read buffer larger than this is given back (after a large reply).
const KEEP_BUFFER: usize = 64 * 1024;

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
    /// The read stopped at its budget: the socket may hold more, and no new readiness
    /// event will say so (edge-triggered), so the caller reads again soon.
    pub(crate) more: bool,
    /// The connection is lost, and why (closed by Redis, reset, or a reply we cannot
    /// parse or will not hold). The replies and messages above came before it and are
    /// delivered all the same: a reply followed by a close in one read is an answer.
    pub(crate) lost: Option<String>,
}

/// One connection to Redis, driven by whichever mio loop hosts the bridge.
pub(crate) struct RedisConn {
    stream: TcpStream,
    /// The loop token of this socket.
    pub(crate) token: Token,
    /// Bytes read and not yet a complete value.
    inbuf: Vec<u8>,
    /// When the value `inbuf` begins started arriving.
    partial_since: Option<Instant>,
    /// When a value last completed (or the connection was made).
    last_value: Instant,
    /// How long a value may take to arrive, once it started.
    patience: Duration,
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
    /// closed (never shut down) in children forked while it is open. A reply that
    /// started arriving has `patience` to finish.
    pub(crate) fn open(
        addr: SocketAddr,
        token: Token,
        registry: &Registry,
        patience: Duration,
    ) -> io::Result<Self> {
        let mut stream = TcpStream::connect(addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        fork::close_in_child(stream.as_raw_fd());
        let _ = stream.set_nodelay(true);
        Ok(RedisConn {
            stream,
            token,
            inbuf: Vec::new(),
            partial_since: None,
            last_value: Instant::now(),
            patience,
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
            match crate::sys::send_nosignal(self.stream.as_raw_fd(), &[io::IoSlice::new(&self.out)])
            {
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

    /// Reads and parses every complete value, up to [`READ_BUDGET`] bytes (then
    /// `more` is set); `lost` says the connection is lost, after the values it gave.
    pub(crate) fn read(&mut self, subscriber: bool) -> Incoming {
        let mut got = Incoming::default();
        if let Err(why) = self.read_into(subscriber, &mut got) {
            got.lost = Some(why);
        }
        got
    }

    fn read_into(&mut self, subscriber: bool, got: &mut Incoming) -> Result<(), String> {
        let mut completed = false;
        let mut budget = READ_BUDGET;
        loop {
            while let Some(value) = frame::take_value(&mut self.inbuf)? {
                self.take(value, subscriber, got)?;
                completed = true;
            }
            if budget < READ_CHUNK {
                got.more = true;
                break;
            }
            budget -= READ_CHUNK;
            if !self.fill()? {
                break;
            }
        }
        if completed {
            self.last_value = Instant::now();
        }
        // The patience runs from the start of the value now arriving: a connection that
        // keeps completing values, each read ending inside the next one, is not stuck.
        self.partial_since = match (self.inbuf.is_empty(), self.partial_since) {
            (true, _) => None,
            (false, Some(since)) if !completed => Some(since),
            (false, _) => Some(Instant::now()),
        };
        if self.inbuf.is_empty() && self.inbuf.capacity() > KEEP_BUFFER {
            self.inbuf = Vec::new();
        }
        Ok(())
    }

    /// One read into `inbuf`: false when the socket has nothing more now.
    fn fill(&mut self) -> Result<bool, String> {
        let start = self.inbuf.len();
        self.inbuf.resize(start + READ_CHUNK, 0);
        let read = loop {
            match (&self.stream).read(&mut self.inbuf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let kept = match &read {
            Ok(n) => start + n,
            Err(_) => start,
        };
        self.inbuf.truncate(kept);
        match read {
            Ok(0) => Err("the connection was closed by Redis".into()),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Hands one complete value to its owner: a pub/sub message, or the oldest owed reply.
    fn take(&mut self, value: Value, subscriber: bool, got: &mut Incoming) -> Result<(), String> {
        if subscriber {
            if let Some(message) = as_message(&value) {
                got.messages.push(message);
                return Ok(());
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
        Ok(())
    }

    /// When the connection counts as stuck: the oldest reply's deadline, or sooner, the
    /// end of the patience of a reply that started arriving.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let partial = self.partial_since.map(|since| since + self.patience);
        let owed = self.owed.front().map(|owed| owed.deadline);
        partial.into_iter().chain(owed).min()
    }

    /// How long since a value last completed here.
    pub(crate) fn quiet_for(&self) -> Duration {
        self.last_value.elapsed()
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
