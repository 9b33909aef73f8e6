//! A graceful stop that has to wait says so: which work it waits for, and how long it
//! will wait at most. (Before, a drain held by one slow request said nothing at all.)

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use log::{LevelFilter, Log, Metadata, Record};
use mixserve::handler::from_fn;
use mixserve::{Conn, Server, Threading};

/// Keeps the crate's log records.
struct Capture(Mutex<Vec<String>>);

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("mixserve")
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static IN_HANDLER: AtomicBool = AtomicBool::new(false);

/// Reads one byte, then takes its time before answering.
fn slow(conn: &mut Conn) -> io::Result<()> {
    let mut byte = [0u8; 1];
    conn.read_exact(&mut byte)?;
    IN_HANDLER.store(true, Ordering::SeqCst);
    thread::sleep(Duration::from_secs(6));
    conn.write_all(b"done")
}

#[test]
fn a_drain_held_by_a_slow_request_says_what_it_waits_for() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
    let mut server = Server::builder(Threading::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(|| from_fn(slow as fn(&mut Conn) -> io::Result<()>))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"x").unwrap();
    let give_up = Instant::now() + Duration::from_secs(30);
    while !IN_HANDLER.load(Ordering::SeqCst) {
        assert!(Instant::now() < give_up, "the handler never started");
        thread::sleep(Duration::from_millis(10));
    }
    handle.shutdown();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "done", "the request in flight finishes");
    serving.join().unwrap().unwrap();
    let lines = CAPTURE.0.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("draining: 1 connection(s) in flight")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("draining: still waiting for 1 connection(s)")),
        "{lines:#?}"
    );
}
