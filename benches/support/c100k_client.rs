//! One client process of the c100k round (`comet --c100k-client …`): opens its share
//! of the waiters, spread over several loopback source addresses (each address has its
//! own ephemeral ports), sends `GET /wait` on each, says `ready CONNECTED FAILED`, then
//! reads every answer and says `done ANSWERED FAILED LAST_NS TALLY` — `LAST_NS` the
//! wall-clock time of the last answer in nanoseconds since the epoch (comparable across
//! processes), `TALLY` the answers as `status:body=count,…`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};

/// Connects in flight at once (keeps the server's backlogs from overflowing).
const IN_FLIGHT: usize = 512;

/// Wall-clock nanoseconds since the epoch.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

enum State {
    Connecting,
    Waiting(Vec<u8>),
    Done,
}

struct Waiter {
    stream: TcpStream,
    state: State,
}

/// Runs one client process: `count` waiters to `addr` from `sources` in turn, for at
/// most `limit`.
pub fn run(addr: SocketAddr, sources: &[IpAddr], count: usize, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let request = format!("GET /wait HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut waiters: Vec<Waiter> = Vec::with_capacity(count);
    let (mut connecting, mut connected, mut failed, mut answered) = (0usize, 0usize, 0usize, 0);
    // Sockets that could not even be opened (no fd, no port): they have no slot.
    let mut open_failed = 0usize;
    let mut tally: HashMap<String, usize> = HashMap::new();
    let mut last_ns = 0u128;
    let mut ready_said = false;
    let mut stdout = io::stdout();
    while Instant::now() < deadline {
        while connecting < IN_FLIGHT && waiters.len() + open_failed < count {
            let source = sources[waiters.len() % sources.len()];
            match open(addr, source) {
                Ok(mut stream) => {
                    let token = Token(waiters.len());
                    poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    waiters.push(Waiter {
                        stream,
                        state: State::Connecting,
                    });
                    connecting += 1;
                }
                Err(e) => {
                    if open_failed == 0 {
                        eprintln!("c100k client: connect from {source}: {e}");
                    }
                    open_failed += 1;
                    failed += 1;
                }
            }
        }
        if !ready_said && connecting == 0 && waiters.len() + open_failed >= count {
            writeln!(stdout, "ready {connected} {failed}")?;
            stdout.flush()?;
            ready_said = true;
        }
        if ready_said && answered + failed >= count {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in events.iter() {
            let Some(waiter) = waiters.get_mut(event.token().0) else {
                continue;
            };
            match &mut waiter.state {
                State::Connecting => {
                    if !event.is_writable() && !event.is_error() {
                        continue;
                    }
                    connecting -= 1;
                    let up = waiter.stream.take_error().ok().flatten().is_none()
                        && waiter.stream.peer_addr().is_ok()
                        && waiter.stream.write_all(request.as_bytes()).is_ok();
                    if up {
                        connected += 1;
                        waiter.state = State::Waiting(Vec::new());
                    } else {
                        failed += 1;
                        waiter.state = State::Done;
                    }
                }
                State::Waiting(buf) => {
                    if !event.is_readable() {
                        continue;
                    }
                    match read_answer(&mut waiter.stream, buf) {
                        Ok(Some(answer)) => {
                            *tally.entry(answer).or_default() += 1;
                            answered += 1;
                            last_ns = now_ns();
                            waiter.state = State::Done;
                            let _ = poll.registry().deregister(&mut waiter.stream);
                            let _ = waiter.stream.shutdown(std::net::Shutdown::Both);
                        }
                        Ok(None) => {}
                        Err(_) => {
                            failed += 1;
                            waiter.state = State::Done;
                            let _ = poll.registry().deregister(&mut waiter.stream);
                        }
                    }
                }
                State::Done => {}
            }
        }
    }
    if !ready_said {
        writeln!(stdout, "ready {connected} {failed}")?;
    }
    let tally: Vec<String> = tally.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(
        stdout,
        "done {answered} {failed} {last_ns} {}",
        tally.join(",")
    )?;
    stdout.flush()
}

/// A non-blocking connect from `source`, its port picked at connect time
/// (`IP_BIND_ADDRESS_NO_PORT`: a bind to port 0 would search the range for a port free
/// for every destination, slower with each socket bound).
fn open(addr: SocketAddr, source: IpAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: the fd is the open socket owned by `socket`; `on` is a live c_int whose size
    // is passed with it.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&SocketAddr::new(source, 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Reads what is there; `Some("STATUS:BODY")` once the whole answer is in.
///
/// An answer followed by the end of the stream counts: a client that reads it more
/// than the server's `idle_timeout` (5 s) after it was sent finds the keep-alive
/// connection closed behind it, which a slow release on a loaded machine takes.
fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<String>> {
    let mut chunk = [0u8; 1024];
    let ended = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    match parse_answer(buf) {
        None if ended => Err(io::ErrorKind::UnexpectedEof.into()),
        answer => Ok(answer),
    }
}

/// `Some("STATUS:BODY")` when `buf` holds a whole answer.
fn parse_answer(buf: &[u8]) -> Option<String> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head.split_whitespace().nth(1).unwrap_or("?").to_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let body = &buf[head_end + 4..];
    if body.len() < length {
        return None;
    }
    // One word per answer in the report line.
    let body: String = String::from_utf8_lossy(&body[..length])
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == ',' || c == '=' {
                '_'
            } else {
                c
            }
        })
        .collect();
    Some(format!("{status}:{body}"))
}
