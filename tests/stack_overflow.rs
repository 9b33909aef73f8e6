//! A coroutine that overflows its stack ends the process (or the preforked worker) with
//! a message on stderr naming the connection, the stack size and how to raise it. The
//! server runs as a separate process: the `overflow` example, whose `/deep` recurses
//! with 1 KiB per frame.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use util::{example_path, wait_until};

const MESSAGE: &str =
    "mixserve: a coroutine overflowed its stack of 65536 bytes (connection from 127.0.0.1:";
const ADVICE: &str = "Scheduled::stack_size";

/// The overflow example with stdout and stderr captured; killed on drop.
struct Overflowing {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Overflowing {
    fn start(args: &[&str]) -> Overflowing {
        let mut child = Command::new(example_path("overflow"))
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the overflow example");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad first line {line:?}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut chunk = [0; 1024];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Overflowing {
            child,
            addr,
            stderr,
            reader: Some(reader),
        }
    }

    /// Sends `GET /deep` and returns what came back before the connection ended.
    fn overflow(&self) -> String {
        self.ask("/deep")
    }

    /// Sends `GET path` and returns what came back before the connection ended.
    fn ask(&self, path: &str) -> String {
        let mut stream = util::connect(self.addr);
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Overflowing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Overflowing {
    /// Waits (bounded) for the process to die; its status, and all it wrote to stderr.
    fn death(&mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the server did not die");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.stderr())
    }
}

#[test]
fn scheduled_overflow_says_why_and_still_crashes() {
    let mut server = Overflowing::start(&["--mixin", "scheduled"]);
    assert_eq!(server.overflow(), "", "the server must die, not answer");
    let (status, stderr) = server.death();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    assert!(stderr.contains(MESSAGE), "stderr: {stderr}");
    assert!(stderr.contains(ADVICE), "stderr: {stderr}");
}

#[test]
fn preforked_scheduled_worker_overflow_says_why_and_is_replaced() {
    let server = Overflowing::start(&[
        "--mixin",
        "preforked",
        "--inner",
        "scheduled",
        "--workers",
        "1",
    ]);
    assert_eq!(server.overflow(), "", "the worker must die, not answer");
    wait_until("the overflow message", Duration::from_secs(20), || {
        let stderr = server.stderr();
        stderr.contains(MESSAGE) && stderr.contains(ADVICE)
    });
    let reply = util::get(server.addr, "/");
    assert_eq!(reply.status, 200, "a replacement worker serves");
}

/// A fault that is not on a coroutine's guard page goes to the handler installed before
/// (std's, which reports a thread's overflow and aborts), with no coroutine message.
#[test]
fn other_faults_reach_the_previous_handler() {
    let mut server = Overflowing::start(&["--mixin", "scheduled"]);
    assert_eq!(server.ask("/thread"), "", "the server must die, not answer");
    let (status, stderr) = server.death();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}: {stderr}");
    assert!(
        stderr.contains("has overflowed its stack"),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("mixserve: a coroutine"),
        "stderr: {stderr}"
    );
}
