//! A waiting thread that watches its client costs no file descriptor beyond the
//! client's socket: the comet server, run with a low open-file limit, holds hundreds of
//! waiting threads that all see their client leave and all get one notify. Servers run
//! as separate processes (with `ulimit -n` set by a shell before `exec`). In process,
//! wake-ups that race a watched thread's wait are never lost.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mixserve::Conn;
use mixserve::sync::{Broadcast, Channel};
use util::{count_fds, example_path, get, read_reply, start_waiters, wait_until};

/// The server's open-file limit: a pipe pair per waiting thread would need three times
/// `WAITERS` and more.
const FD_LIMIT: usize = 512;
/// Waiters held at once: most of the limit, so only the client sockets fit.
const WAITERS: usize = 400;
/// Waiters that hang up before the notify.
const LEAVERS: usize = 20;

/// The comet example with `args`, under `FD_LIMIT`; killed and reaped on drop.
struct LimitedServer {
    child: Child,
    addr: SocketAddr,
}

impl LimitedServer {
    fn start(args: &[&str]) -> LimitedServer {
        LimitedServer::start_with(FD_LIMIT, args, Stdio::inherit())
    }

    /// Under `fd_limit`, with stderr going to `stderr`.
    fn start_with(fd_limit: usize, args: &[&str], stderr: impl Into<Stdio>) -> LimitedServer {
        let path = example_path("comet");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {fd_limit} && exec \"$0\" \"$@\""))
            .arg(&path)
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("comet: bad first line {line:?}"));
        LimitedServer { child, addr }
    }

    fn waiting(&self) -> String {
        get(self.addr, "/").text()
    }
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn many_waiters_under_a_low_fd_limit(args: &[&str]) {
    let server = LimitedServer::start(args);
    let pid = server.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&FD_LIMIT.to_string())),
        "{args:?}: the limit did not apply:\n{limits}"
    );
    let at_rest = count_fds(pid);

    let mut waiters = start_waiters(server.addr, WAITERS);
    wait_until(
        &format!("{args:?}: {WAITERS} waiters"),
        Duration::from_secs(60),
        || server.waiting() == WAITERS.to_string(),
    );
    // One socket per waiter and nothing more per waiter (slack for probes still being
    // closed and fds a server opens once, lazily; a pipe pair per wait would be 800).
    let waiting_fds = count_fds(pid);
    assert!(
        waiting_fds <= at_rest + WAITERS + WAITERS / 10,
        "{args:?}: {waiting_fds} fds with {WAITERS} waiters, {at_rest} at rest"
    );

    // Every watched waiter still sees its client leave.
    for waiter in waiters.drain(..LEAVERS) {
        let _ = waiter.get_ref().shutdown(Shutdown::Both);
    }
    let stay = WAITERS - LEAVERS;
    wait_until(
        &format!("{args:?}: {stay} waiters after {LEAVERS} left"),
        Duration::from_secs(30),
        || server.waiting() == stay.to_string(),
    );

    let notify = get(server.addr, "/notify");
    assert_eq!((notify.status, notify.text()), (200, stay.to_string()));
    for waiter in &mut waiters {
        let reply = read_reply(waiter);
        assert_eq!(
            (reply.status, reply.text()),
            (200, stay.to_string()),
            "{args:?}"
        );
    }
    wait_until(
        &format!("{args:?}: nobody waiting"),
        Duration::from_secs(30),
        || server.waiting() == "0",
    );
}

#[test]
fn a_waiting_thread_costs_only_its_client_socket_under_threading() {
    many_waiters_under_a_low_fd_limit(&["--mixin", "threading"]);
}

#[test]
fn a_waiting_thread_costs_only_its_client_socket_under_prethreaded() {
    many_waiters_under_a_low_fd_limit(&[
        "--mixin",
        "prethreaded",
        "--accept",
        "handoff",
        "--max-workers",
        "1000",
    ]);
}

/// At its fd limit with nothing queued, `accept` still fails with `EMFILE` (Linux finds a
/// free fd before it looks at the queue). The scheduled loop must then wait for the next
/// connection, not look again at once: that spun a core and wrote a warning per turn.
#[test]
fn a_scheduled_server_at_its_fd_limit_refuses_each_extra_connection_once_and_waits() {
    const LIMIT: usize = 64;
    const CLIENTS: usize = 80;
    let scratch = util::scratch::Scratch::new("fd-limit");
    let log = scratch.join("server.log");
    let server = LimitedServer::start_with(
        LIMIT,
        &["--mixin", "scheduled"],
        std::fs::File::create(&log).expect("log file"),
    );
    // The ones past the limit are reset at once, maybe before their request is out.
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(server.addr).ok()?;
            let _ = stream.write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n");
            Some(stream)
        })
        .collect();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        "a connection refused for want of fds",
        Duration::from_secs(30),
        || read_log().contains("refused one connection"),
    );
    // A spinning loop burns this time on the CPU (and may write a warning per turn);
    // a waiting one sleeps, and writes one warning per connection refused.
    let pid = server.child.id();
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_millis(500));
    let spent = cpu_ticks(pid) - before;
    let warnings = read_log()
        .lines()
        .filter(|l| l.contains("accept: "))
        .count();
    assert!(
        spent <= 10,
        "the server spent {spent} ticks of CPU in 500 ms, idle at its fd limit"
    );
    assert!(
        warnings <= CLIENTS,
        "{warnings} accept warnings for {CLIENTS} clients"
    );
    // Fds freed: the server serves again (a probe that comes before the server has
    // closed the waiters' sockets is refused).
    drop(clients);
    wait_until("the waiters to leave", Duration::from_secs(30), || {
        try_get(server.addr, "/").as_deref() == Some("0")
    });
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The fields after the command's closing parenthesis: utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after it.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A watched connection for an in-process waiter (the test keeps the client end open).
fn watched_conn() -> (std::os::unix::net::UnixStream, Conn) {
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    (client, Conn::from_unix(server).unwrap())
}

/// How long an in-process wait may take before it counts as a lost wake-up.
const LOST: Duration = Duration::from_secs(20);

/// A preforked worker that takes passed connections and runs out of fds loses the one
/// in flight (the kernel cannot install its fd), then asks for the next: once its
/// waiters leave, it serves again. (It used to wait for an answer to a request the
/// master had already answered, for good.)
#[test]
fn a_worker_out_of_fds_for_a_passed_connection_asks_for_the_next_one() {
    let server = LimitedServer::start(&[
        "--mixin",
        "preforked",
        "--workers",
        "1",
        "--max-workers",
        "1",
        "--accept",
        "passed",
        "--inner",
        "threading",
    ]);
    let worker = || {
        util::live_children(server.child.id())
            .into_iter()
            .next()
            .expect("a worker")
    };
    wait_until("a worker", Duration::from_secs(30), || {
        !util::live_children(server.child.id()).is_empty()
    });
    // More waiters than the worker has fds: the last ones arrive at a full worker.
    let mut waiters = Vec::new();
    for _ in 0..FD_LIMIT + 50 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        waiters.push(stream);
    }
    wait_until(
        "the worker at its fd limit",
        Duration::from_secs(60),
        || count_fds(worker()) >= FD_LIMIT - 8,
    );
    drop(waiters);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(count) = try_get(server.addr, "/") {
            assert_eq!(count, "0", "every waiter left");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker takes no connection any more"
        );
    }
}

/// `GET path`, if answered within two seconds.
fn try_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

#[test]
fn a_value_sent_while_a_watched_thread_starts_waiting_always_wakes_it() {
    const ROUNDS: u64 = 2000;
    let to_waiter: Channel<u64> = Channel::new();
    let back: Channel<u64> = Channel::new();
    let (client, conn) = watched_conn();
    let waiter = {
        let (to_waiter, back) = (to_waiter.clone(), back.clone());
        // One thread for every round: a wake that arrives after its wait ended stays
        // pending for the next one, which must just loop.
        thread::spawn(move || {
            for _ in 0..ROUNDS {
                let value = conn.watch(|| to_waiter.recv_timeout(LOST))?;
                back.send(value).expect("send back");
            }
            Ok::<(), mixserve::sync::WaitError>(())
        })
    };
    for round in 0..ROUNDS {
        // Sent at once: it lands before, during or after the waiter's registration.
        to_waiter.send(round).unwrap();
        assert_eq!(back.recv_timeout(LOST), Ok(round), "round {round}");
    }
    waiter.join().unwrap().expect("every watched wait woken");
    drop(client);
}

#[test]
fn one_send_wakes_every_watched_thread_many_times_over() {
    const THREADS: usize = 16;
    const ROUNDS: usize = 100;
    let news: Broadcast<usize> = Broadcast::new();
    let mut clients = Vec::new();
    let waiters: Vec<_> = (0..THREADS)
        .map(|_| {
            let (client, conn) = watched_conn();
            clients.push(client);
            let news = news.clone();
            thread::spawn(move || {
                (0..ROUNDS)
                    .map(|_| conn.watch(|| news.wait_timeout(LOST)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for round in 0..ROUNDS {
        wait_until(&format!("round {round}"), LOST, || {
            news.waiting() == THREADS
        });
        assert_eq!(news.send(round), Ok(THREADS));
    }
    for waiter in waiters {
        assert_eq!(
            waiter.join().unwrap(),
            (0..ROUNDS).map(Ok).collect::<Vec<_>>()
        );
    }
    drop(clients);
}
