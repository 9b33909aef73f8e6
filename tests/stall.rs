//! The loop-stall detector of the scheduled model: a handler that blocks its loop's
//! thread (`std::thread::sleep`, 500 ms against the 100 ms default threshold) is logged
//! by name (the peer, and for HTTP the request) and counted; with the detector off, it
//! is not.

mod util;

use std::io::{self, BufRead, BufReader, Write};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use log::{LevelFilter, Log, Metadata, Record};
use mixserve::handler::from_fn;
use mixserve::http::{Http, Request, Response};
use mixserve::rt;
use mixserve::{Conn, MakeHandler, Scheduled, Server};
use util::connect;

/// Keeps the stall warnings it sees.
struct Capture(Mutex<Vec<String>>);

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "mixserve::rt::stall"
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Reads one line, sleeps the *thread* (what a coroutine must never do), answers.
fn blocking_handler(conn: &mut Conn) -> io::Result<()> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    thread::sleep(Duration::from_millis(500));
    conn.write_all(b"done\n")?;
    conn.flush()
}

/// Serves one exchange (`request` sent, one line read back) with `model` and `make`,
/// then stops the server; returns the client's port.
fn serve_one<M>(model: Scheduled, make: M, request: &'static str) -> u16
where
    M: MakeHandler + Send + 'static,
{
    let (addr, handle, serving) = util::in_thread::serve_on_thread(move || {
        Server::builder(model)
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .shutdown_timeout(Duration::from_millis(500))
            .build(make)
            .unwrap()
    });
    let mut stream = BufReader::new(connect(addr));
    let port = stream.get_ref().local_addr().unwrap().port();
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_line(&mut reply).unwrap();
    assert!(
        reply == "done\n" || reply == "HTTP/1.1 200 OK\r\n",
        "{reply:?}"
    );
    handle.shutdown();
    serving.join().unwrap();
    port
}

/// Warnings that name the client at `port`.
fn warnings_for(port: u16) -> Vec<String> {
    let needle = format!("127.0.0.1:{port}");
    let lines = CAPTURE.0.lock().unwrap();
    lines
        .iter()
        .filter(|l| l.contains(&needle))
        .cloned()
        .collect()
}

fn install() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}

#[test]
fn a_thread_sleep_in_a_handler_is_reported_and_counted() {
    install();
    let before = rt::stall_count();
    let port = serve_one(Scheduled::new(), || from_fn(blocking_handler), "hello\n");
    assert!(rt::stall_count() > before, "the stall is counted");
    let warnings = warnings_for(port);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("kept its loop's thread for"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("threshold 100 ms"), "{}", warnings[0]);

    // Off: the same handler goes unreported.
    let model = Scheduled::new().stall_threshold(None);
    let port = serve_one(model, || from_fn(blocking_handler), "hello\n");
    assert!(warnings_for(port).is_empty());
}

#[test]
fn an_http_stall_names_the_request() {
    install();
    let app = Http::new(|_: &mut Request| {
        thread::sleep(Duration::from_millis(500));
        Response::text(200, "slept")
    });
    let port = serve_one(
        Scheduled::new(),
        app,
        "GET /slow/path?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let warnings = warnings_for(port);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("GET /slow/path"), "{}", warnings[0]);
}
