//! A fleet of client connections driven by one mio loop in one thread: open N connections
//! (a bounded number of connects in flight, so no SYN waits on a full backlog), send each a
//! request, and hand every complete HTTP response to a callback that says what next.
//! The comet waiters and the keep-alive load generator are both built on it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// How many non-blocking connects may be in progress at once.
const CONNECT_WINDOW: usize = 64;

/// What a connection does after a complete response.
pub enum Next {
    /// Send this request again on the same (kept-alive) connection.
    Again,
    /// This connection is finished (it stays open until the fleet is dropped).
    Done,
    /// Keep the connection open and send nothing until [`Fleet::send_on`] says so.
    Idle,
}

#[derive(Debug, PartialEq)]
enum State {
    Connecting,
    Idle,
    Sending,
    Receiving,
    Done,
    Failed,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    state: State,
    inbuf: Vec<u8>,
    written: usize,
    sent_at: Instant,
    answered_at: Option<Instant>,
    /// The server closed its side (after the response in `inbuf`, or during it).
    closed: bool,
}

/// Many client connections to one server, in one thread.
#[derive(Debug)]
pub struct Fleet {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    request: Vec<u8>,
    /// Where the connections go (a connection the server closes is opened again here).
    addr: SocketAddr,
    /// Connections that failed: connect refused, reset, EOF before a whole response.
    pub failed: usize,
}

impl Fleet {
    /// Opens up to `n` connections to `addr` until `deadline`; fewer when connects fail or
    /// time runs out (see [`Fleet::established`]).
    pub fn connect(addr: SocketAddr, n: usize, deadline: Instant) -> io::Result<Fleet> {
        let mut fleet = Fleet {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            conns: Vec::with_capacity(n),
            request: Vec::new(),
            addr,
            failed: 0,
        };
        let (mut connecting, mut established) = (0, 0);
        while established < n && Instant::now() < deadline {
            while connecting < CONNECT_WINDOW && established + connecting < n {
                let mut stream = TcpStream::connect(addr)?;
                let token = Token(fleet.conns.len());
                fleet.poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                fleet.conns.push(Conn {
                    stream,
                    state: State::Connecting,
                    inbuf: Vec::new(),
                    written: 0,
                    sent_at: Instant::now(),
                    answered_at: None,
                    closed: false,
                });
                connecting += 1;
            }
            fleet
                .poll
                .poll(&mut fleet.events, Some(Duration::from_millis(50)))?;
            for event in &fleet.events {
                let conn = &mut fleet.conns[event.token().0];
                if conn.state != State::Connecting {
                    continue;
                }
                match (conn.stream.take_error(), conn.stream.peer_addr()) {
                    (Ok(None), Ok(_)) => {
                        conn.state = State::Idle;
                        established += 1;
                    }
                    (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => continue,
                    _ => {
                        conn.state = State::Failed;
                        fleet.failed += 1;
                    }
                }
                connecting -= 1;
            }
        }
        Ok(fleet)
    }

    /// Connections that are open.
    pub fn established(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| !matches!(c.state, State::Connecting | State::Failed))
            .count()
    }

    /// Sends `request` on every open connection (and remembers it for [`Next::Again`]).
    pub fn send_all(&mut self, request: &[u8]) {
        self.request = request.to_vec();
        for i in 0..self.conns.len() {
            if self.conns[i].state == State::Idle {
                self.start_request(i);
            }
        }
    }

    /// Remembers `request` for [`Fleet::send_on`] without sending it.
    pub fn set_request(&mut self, request: &[u8]) {
        self.request = request.to_vec();
    }

    /// How many connections were attempted (open, failed or still connecting).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether connection `i` is open and waiting for a request to send.
    pub fn is_idle(&self, i: usize) -> bool {
        self.conns[i].state == State::Idle
    }

    /// Registers a readable fd (a timer) whose readiness should end a [`Fleet::poll_once`]
    /// wait; its events are otherwise ignored.
    pub fn register_wakeup(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        self.poll.registry().register(
            &mut mio::unix::SourceFd(&fd),
            Token(usize::MAX),
            Interest::READABLE,
        )
    }

    /// Sends the request on connection `i` if it is idle.
    pub fn send_on(&mut self, i: usize) {
        if self.is_idle(i) {
            self.start_request(i);
        }
    }

    fn start_request(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.state = State::Sending;
        conn.written = 0;
        conn.inbuf.clear();
        conn.sent_at = Instant::now();
        self.write_some(i);
    }

    fn write_some(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        while conn.state == State::Sending {
            match conn.stream.write(&self.request[conn.written..]) {
                Ok(0) => conn.state = State::Failed,
                Ok(k) => {
                    conn.written += k;
                    if conn.written == self.request.len() {
                        conn.state = State::Receiving;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => conn.state = State::Failed,
            }
        }
        if conn.state == State::Failed {
            self.failed += 1;
        }
    }

    /// Runs the loop until every connection is done, idle or failed, or `deadline`.
    /// `on_response(status, body, latency)` sees each complete response.
    pub fn run(
        &mut self,
        deadline: Instant,
        mut on_response: impl FnMut(u16, &[u8], Duration) -> Next,
    ) -> io::Result<()> {
        while Instant::now() < deadline && self.active() > 0 {
            let wait = deadline.saturating_duration_since(Instant::now());
            self.poll_once(
                wait.min(Duration::from_millis(100)),
                |_, status, body, latency| on_response(status, body, latency),
            )?;
        }
        Ok(())
    }

    /// One wait of at most `timeout` and the work it brings: writes go on, and
    /// `on_response(connection, status, body, latency)` sees each complete response.
    pub fn poll_once(
        &mut self,
        timeout: Duration,
        mut on_response: impl FnMut(usize, u16, &[u8], Duration) -> Next,
    ) -> io::Result<()> {
        self.poll.poll(&mut self.events, Some(timeout))?;
        let ready: Vec<usize> = self
            .events
            .iter()
            .map(|e| e.token().0)
            .filter(|&i| i < self.conns.len())
            .collect();
        for i in ready {
            match self.conns[i].state {
                State::Sending => self.write_some(i),
                State::Receiving => {
                    if let Some((body_at, end)) = self.read_some(i) {
                        let conn = &mut self.conns[i];
                        let latency = conn.sent_at.elapsed();
                        conn.answered_at = Some(Instant::now());
                        let status = status_code(&conn.inbuf);
                        let next = on_response(i, status, &conn.inbuf[body_at..end], latency);
                        match next {
                            // Like wrk: a server that ends the connection (a cap on
                            // requests per connection) gets a fresh one.
                            Next::Again
                                if self.conns[i].closed
                                    || says_close(&self.conns[i].inbuf[..body_at]) =>
                            {
                                self.reconnect(i)
                            }
                            Next::Again => self.start_request(i),
                            Next::Done => self.conns[i].state = State::Done,
                            Next::Idle => self.conns[i].state = State::Idle,
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Opens connection `i` again (blocking: loopback) and sends the request on it.
    fn reconnect(&mut self, i: usize) {
        let fresh = std::net::TcpStream::connect(self.addr).and_then(|stream| {
            stream.set_nonblocking(true)?;
            Ok(TcpStream::from_std(stream))
        });
        let registered = fresh.and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match registered {
            Ok(stream) => {
                let mut old = std::mem::replace(&mut self.conns[i].stream, stream);
                let _ = self.poll.registry().deregister(&mut old);
                self.conns[i].closed = false;
                self.start_request(i);
            }
            Err(_) => {
                self.conns[i].state = State::Failed;
                self.failed += 1;
            }
        }
    }

    /// Connections that got an answer at or after `since`.
    pub fn served_since(&self, since: Instant) -> usize {
        self.conns
            .iter()
            .filter(|c| c.answered_at.is_some_and(|t| t >= since))
            .count()
    }

    fn active(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| matches!(c.state, State::Sending | State::Receiving))
            .count()
    }

    /// Reads what is there; returns the body's range once the response is complete.
    ///
    /// The server may close right after its last response (`Connection: close`, a cap
    /// on requests per connection): the end of the stream then often arrives in the
    /// same read loop as the response, which is still complete. A connection that ends
    /// before a whole response failed; its socket is shut at once, so a server that
    /// lingers for our end of the stream before it takes the next connection does not
    /// wait for it.
    fn read_some(&mut self, i: usize) -> Option<(usize, usize)> {
        let conn = &mut self.conns[i];
        let mut buf = [0u8; 16 * 1024];
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    conn.closed = true;
                    break;
                }
                Ok(k) => conn.inbuf.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.closed = true;
                    conn.inbuf.clear();
                    break;
                }
            }
        }
        let complete = match parse_response(&conn.inbuf) {
            Some((body_at, Some(len))) if conn.inbuf.len() >= body_at + len => {
                Some((body_at, body_at + len))
            }
            // No length: the body ends with the connection.
            Some((body_at, None)) if conn.closed => Some((body_at, conn.inbuf.len())),
            _ => None,
        };
        if complete.is_none() && conn.closed {
            conn.state = State::Failed;
            self.failed += 1;
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        complete
    }
}

/// The status code of a response head (`HTTP/1.1 200 OK` → 200); 0 if unreadable.
pub fn status_code(buf: &[u8]) -> u16 {
    buf.split(|&b| b == b' ')
        .nth(1)
        .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Whether a response head says `Connection: close`.
fn says_close(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("connection")
                && value.trim().eq_ignore_ascii_case("close")
        })
    })
}

/// The start of the body and the Content-Length (if any) once the head is complete.
pub fn parse_response(buf: &[u8]) -> Option<(usize, Option<usize>)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    });
    Some((head_end, length))
}
