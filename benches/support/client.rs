//! The load generators: the UNP Fig. 30.1 client (C threads, each making M sequential
//! connections that each ask for B bytes), the comet c10k round (N waiters, one notify),
//! and the keep-alive closed loop (C connections each sending `GET /` again as soon as
//! the answer is in, with latencies in an HDR histogram).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::fleet::{Fleet, Next};

/// Socket timeout for each blocking read or write of the simple clients.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Outcome of the UNP Fig. 30.1 client load.
#[derive(Debug, Clone, Default)]
pub struct BytesLoad {
    /// Connections that got all B bytes.
    pub ok: u64,
    /// Connections that failed or came back short.
    pub errors: u64,
    /// Wall time of the whole load.
    pub wall: Duration,
}

/// `clients` threads, each making `conns` sequential connections asking `GET /bytes/B`
/// (with `Connection: close`), until done or `deadline`.
pub fn bytes_load(
    addr: SocketAddr,
    clients: usize,
    conns: usize,
    bytes: usize,
    deadline: Instant,
) -> BytesLoad {
    let start = Instant::now();
    let request =
        format!("GET /bytes/{bytes} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let (mut ok, mut errors) = (0, 0);
                for _ in 0..conns {
                    if Instant::now() >= deadline {
                        errors += 1;
                        continue;
                    }
                    match fetch(addr, request.as_bytes()) {
                        Ok(body) if body == bytes => ok += 1,
                        _ => errors += 1,
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    let mut load = BytesLoad::default();
    for w in workers {
        let (ok, errors) = w.join().unwrap_or((0, conns as u64));
        load.ok += ok;
        load.errors += errors;
    }
    load.wall = start.elapsed();
    load
}

/// One request on a fresh connection; returns the body length.
fn fetch(addr: SocketAddr, request: &[u8]) -> io::Result<usize> {
    let body = get_body(addr, request)?;
    Ok(body.len())
}

/// One request on a fresh blocking connection (read until the length or EOF); the body.
pub fn get_body(addr: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(request)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let k = stream.read(&mut chunk)?;
        if k > 0 {
            buf.extend_from_slice(&chunk[..k]);
        }
        match super::fleet::parse_response(&buf) {
            Some((at, Some(len))) if buf.len() >= at + len => return Ok(buf[at..at + len].into()),
            Some((at, None)) if k == 0 => return Ok(buf[at..].into()),
            _ if k == 0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => {}
        }
    }
}

/// `GET path` on a fresh connection; the body as text.
pub fn get_text(addr: SocketAddr, path: &str) -> io::Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let body = get_body(addr, request.as_bytes())?;
    Ok(String::from_utf8_lossy(&body).trim().to_owned())
}

/// How long the comet poller waits for the waiter count to grow before giving up.
const STALL: Duration = Duration::from_secs(5);

/// How long waiters may take to answer once the notify has been sent: this plus 1 ms per
/// waiter.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Outcome of one comet round.
#[derive(Debug, Clone, Default)]
pub struct CometRound {
    /// Waiters asked for.
    pub asked: usize,
    /// Waiters connected and sent `GET /wait`.
    pub connected: usize,
    /// The server's count (`GET /`) when the notify was sent.
    pub seen_waiting: usize,
    /// The body of `GET /notify`.
    pub notify_said: Option<usize>,
    /// Waiters whose response body was the number released (all of them).
    pub released_ok: usize,
    /// Waiters answered 200 with another body than the notify's count.
    pub wrong: usize,
    /// Waiters answered with a status other than 200 (e.g. 503: the model refused).
    pub refused: usize,
    /// Waiter connections that failed (refused, reset, closed early).
    pub failed: usize,
    /// From the first connect until all waiters are registered at the server.
    pub setup: Duration,
    /// From the notify until the last waiter has its answer.
    pub release: Duration,
    /// The whole round.
    pub wall: Duration,
    /// Why the round stopped short, if it did.
    pub error: Option<String>,
}

/// N clients send `GET /wait`; a poller waits until `GET /` says N; one `GET /notify`;
/// every waiter must get N back. Everything bounded by `deadline`. `all_waiting` is called
/// when the server holds every waiter (the moment to sample its memory).
pub fn comet_round(
    addr: SocketAddr,
    n: usize,
    deadline: Instant,
    all_waiting: impl FnOnce(),
) -> CometRound {
    let start = Instant::now();
    let mut round = CometRound {
        asked: n,
        ..CometRound::default()
    };
    let mut fleet = match Fleet::connect(addr, n, deadline) {
        Ok(f) => f,
        Err(e) => {
            round.error = Some(format!("connect: {e}"));
            return round;
        }
    };
    let wait = format!("GET /wait HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    fleet.send_all(wait.as_bytes());
    round.connected = fleet.established();
    // Poll until every waiter is registered, or the count stops growing for STALL.
    let mut last_growth = Instant::now();
    let mut poll_error = None;
    while Instant::now() < deadline && last_growth.elapsed() < STALL {
        match get_text(addr, "/").map(|t| t.parse::<usize>()) {
            Ok(Ok(k)) => {
                if k > round.seen_waiting {
                    last_growth = Instant::now();
                }
                round.seen_waiting = k;
                if k >= round.connected {
                    break;
                }
            }
            Ok(Err(_)) => poll_error = Some("GET / did not answer a number".to_owned()),
            Err(e) => poll_error = Some(format!("GET /: {e}")),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    round.setup = start.elapsed();
    all_waiting();
    if round.seen_waiting < round.connected {
        let why = poll_error.map_or(String::new(), |e| format!(" (last poll: {e})"));
        round.error = Some(format!(
            "only {} of {} waiting{why}",
            round.seen_waiting, round.connected
        ));
    }
    let notified = Instant::now();
    round.notify_said = get_text(addr, "/notify").ok().and_then(|t| t.parse().ok());
    let expected = round.notify_said.unwrap_or(usize::MAX).to_string();
    let (mut ok, mut wrong, mut refused) = (0, 0, 0);
    let release_deadline =
        deadline.min(notified + RELEASE_TIMEOUT + Duration::from_millis(n as u64));
    let run = fleet.run(release_deadline, |status, body, _| {
        if status != 200 {
            refused += 1;
        } else if body == expected.as_bytes() {
            ok += 1;
        } else {
            wrong += 1;
        }
        Next::Done
    });
    round.release = notified.elapsed();
    round.wall = start.elapsed();
    round.released_ok = ok;
    round.refused = refused;
    round.failed = fleet.failed;
    round.wrong = wrong;
    if let Err(e) = run {
        round.error = Some(format!("poll: {e}"));
    }
    round
}

/// Outcome of a keep-alive run.
#[derive(Debug, Clone, Default)]
pub struct KeepAlive {
    /// Connections asked for and opened.
    pub asked: usize,
    /// Connections opened.
    pub connected: usize,
    /// Connections that got at least one answer during the measured window.
    pub served: usize,
    /// Requests answered in the measured window.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
    /// Failed connections.
    pub failed: usize,
    /// Answers with a status other than 200.
    pub non_200: u64,
}

/// `conns` keep-alive connections sending `GET /` in a closed loop: `warmup`, then
/// `duration` measured.
pub fn keepalive(
    addr: SocketAddr,
    conns: usize,
    warmup: Duration,
    duration: Duration,
) -> io::Result<KeepAlive> {
    // Models that accept one connection at a time leave the rest in a full backlog.
    let setup_deadline = Instant::now() + Duration::from_secs(5);
    let mut fleet = Fleet::connect(addr, conns, setup_deadline)?;
    let mut result = KeepAlive {
        asked: conns,
        connected: fleet.established(),
        ..Default::default()
    };
    fleet.send_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    fleet.run(Instant::now() + warmup, |_, _, _| Next::Again)?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(io::Error::other)?;
    let start = Instant::now();
    let mut errors = 0;
    fleet.run(start + duration, |status, _, latency| {
        if status != 200 {
            errors += 1;
        }
        let _ = hist.record((latency.as_micros() as u64).max(1));
        Next::Again
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    result.requests = hist.len();
    result.rps = hist.len() as f64 / elapsed;
    result.p50_us = hist.value_at_quantile(0.5);
    result.p99_us = hist.value_at_quantile(0.99);
    result.served = fleet.served_since(start);
    result.failed = fleet.failed;
    result.non_200 = errors;
    Ok(result)
}
