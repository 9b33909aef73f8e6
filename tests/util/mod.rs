//! Helpers shared by the integration tests: example servers run as separate processes
//! (so forking models never fork the multithreaded test harness) and small clients.
#![allow(dead_code)]

pub mod fresh;
pub mod in_thread;
pub mod logged;
mod procfs;
pub mod scratch;
pub mod stderr;

#[allow(unused_imports)] // each test crate uses some
pub use procfs::{children_of, count_fds, holds_socket, listening_on, live_children, sockets_to};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any single client operation may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// What the `hello` example answers to `GET /` (the peer kit's hello).
pub const HELLO: &str = "Hello, world!";

/// The models every shared test runs under (iterative has its own comet rule).
pub const MODELS: &[&str] = &["iterative", "threading", "forking", "scheduled"];

/// The pool variants every shared test runs under: each preforked accept strategy
/// with each inner model (the crate's models and a user-written one), and each
/// prethreaded hand-over. `SO_REUSEPORT` spreads by hash, not by readiness, so it runs
/// with more than one connection per worker.
pub const POOL_VARIANTS: &[&[&str]] = &[
    &["--mixin", "preforked", "--accept", "shared"],
    &["--mixin", "preforked", "--accept", "locked"],
    &["--mixin", "preforked", "--accept", "locked-mutex"],
    &["--mixin", "preforked", "--accept", "passed"],
    &["--mixin", "preforked", "--accept", "passed-round-robin"],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "shared",
        "--inner",
        "threading",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "locked",
        "--inner",
        "threading",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "locked-mutex",
        "--inner",
        "threading",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "passed",
        "--inner",
        "threading",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "reuseport",
        "--inner",
        "threading",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "shared",
        "--inner",
        "scheduled",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "passed",
        "--inner",
        "scheduled",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "reuseport",
        "--inner",
        "scheduled",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "shared",
        "--inner",
        "prethreaded",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "passed",
        "--inner",
        "prethreaded",
        "--inner-accept",
        "handoff",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "reuseport",
        "--inner",
        "prethreaded",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "locked-mutex",
        "--inner",
        "user",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "passed",
        "--inner",
        "user",
    ],
    &["--mixin", "prethreaded", "--accept", "locked"],
    &["--mixin", "prethreaded", "--accept", "handoff"],
];

/// Every model a preforked worker can run, by its `--inner` name (`user` is a model
/// written outside the crate).
pub const INNER_MODELS: &[&str] = &["iterative", "threading", "scheduled", "prethreaded", "user"];

/// Path of a built example binary (`cargo test` builds examples before running
/// tests; `cargo test --test NAME` does not, so a binary older than its sources fails
/// here, saying what to run, instead of testing old code).
pub fn example_path(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    fresh::assert_fresh(&path);
    path
}

/// An example server running in its own process; stopped (SIGTERM, then SIGKILL) on drop.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ServerProcess {
    /// Starts `example` with `args` plus `--addr 127.0.0.1:0` and reads its address.
    pub fn start(example: &str, args: &[&str]) -> ServerProcess {
        ServerProcess::start_with_stderr(example, args, Stdio::inherit())
    }

    /// Like [`start`](Self::start), with the server's stderr read by the test; with
    /// `held`, the server blocks at its first write to stderr (for the examples, right
    /// after printing its address) until [`StderrLog::release`](stderr::StderrLog::release).
    pub fn start_logged(
        example: &str,
        args: &[&str],
        held: bool,
    ) -> (ServerProcess, stderr::StderrLog) {
        let (stderr, log) = stderr::StderrLog::pipe(held);
        (ServerProcess::start_with_stderr(example, args, stderr), log)
    }

    fn start_with_stderr(example: &str, args: &[&str], stderr: Stdio) -> ServerProcess {
        let path = example_path(example);
        // Its own process group, so `interrupt` reaches the server and its workers as
        // a terminal's Ctrl-C does, and nothing of the test harness.
        let mut child = Command::new(&path)
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let addr = listening_addr(&mut stdout, example);
        ServerProcess {
            child,
            addr,
            stdout,
        }
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, signal: i32) {
        // Safe wrapper not needed in tests: use the kill command.
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Ctrl-C: SIGINT to the server's whole process group (master and workers).
    pub fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-2", "--", &format!("-{}", self.child.id())])
            .status();
    }

    /// Waits (bounded by `limit`) for the server to exit; returns its status.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(15);
        self.exited_within(Duration::from_secs(20))
    }

    /// Waits (bounded) for a server already draining (a SIGTERM sent) to exit by itself;
    /// returns the exit status. Not [`stop`](Self::stop): a second SIGTERM that lands
    /// after `serve_forever` returned meets the program's own disposition again, and
    /// ends it by the signal instead of a clean exit.
    pub fn drained(&mut self) -> Option<std::process::ExitStatus> {
        self.exited_within(Duration::from_secs(20))
    }

    /// The rest of the server's stdout (after it exited).
    pub fn rest_of_stdout(&mut self) -> String {
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        rest
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Connects with timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response with a Content-Length body (or up to EOF without one).
pub fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').expect("header colon");
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().expect("content-length"));
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).expect("body");
        }
        None => {
            reader.read_to_end(&mut body).expect("body to EOF");
        }
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// One `GET` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_reply(&mut BufReader::new(stream))
}

/// Polls `GET /` until the comet server reports `n` waiters (bounded).
pub fn wait_for_waiters(addr: SocketAddr, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = get(addr, "/").text();
        if count == n.to_string() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waiters stuck at {count}, wanted {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens `n` connections that each sent `GET /wait`.
pub fn start_waiters(addr: SocketAddr, n: usize) -> Vec<BufReader<TcpStream>> {
    (0..n)
        .map(|_| {
            let mut stream = connect(addr);
            stream
                .write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
                .unwrap();
            BufReader::new(stream)
        })
        .collect()
}

/// Like [`start_waiters`], but each asks the server to close after its answer.
pub fn start_closing_waiters(addr: SocketAddr, n: usize) -> Vec<BufReader<TcpStream>> {
    (0..n)
        .map(|_| {
            let mut stream = connect(addr);
            stream
                .write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .unwrap();
            BufReader::new(stream)
        })
        .collect()
}

/// Waits (bounded) until `check` holds, polling every 20 ms; panics with `what`.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The full comet contract with `n` waiters: all wait, one notify releases all, each
/// waiter and the notifier get `n`, then nobody waits.
pub fn comet_contract(addr: SocketAddr, n: usize) {
    let mut waiters = start_waiters(addr, n);
    wait_for_waiters(addr, n);
    let notify = get(addr, "/notify");
    assert_eq!((notify.status, notify.text()), (200, n.to_string()));
    for waiter in &mut waiters {
        let reply = read_reply(waiter);
        assert_eq!((reply.status, reply.text()), (200, n.to_string()));
    }
    assert_eq!(get(addr, "/").text(), "0");
}

/// The address an example prints on its first line (`listening on http://ADDR`).
pub fn listening_addr(stdout: &mut impl BufRead, example: &str) -> SocketAddr {
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    line.trim()
        .rsplit("://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{example}: bad first line {line:?}"))
}
