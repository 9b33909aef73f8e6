//! The access log: with `HttpConfig::access_log` on, one common-log-format record per
//! request reaches the `log` facade under `mixserve::access`; off, none does.

mod http_util;

use std::sync::Mutex;

use http_util::{echo, start};
use log::{LevelFilter, Log, Metadata, Record};
use mixserve::http::{ACCESS_LOG_TARGET, Http, HttpConfig};
use mixserve::scgi::Scgi;

/// Keeps the access-log records it sees.
struct Capture(Mutex<Vec<String>>);

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == ACCESS_LOG_TARGET
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn install() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// The captured lines that mention `marker`.
fn lines_with(marker: &str) -> Vec<String> {
    let lines = CAPTURE.0.lock().unwrap();
    lines
        .iter()
        .filter(|l| l.contains(marker))
        .cloned()
        .collect()
}

fn logging_config() -> HttpConfig {
    let mut config = HttpConfig::default();
    config.access_log = true;
    config
}

#[test]
fn logs_one_line_per_http_request() {
    install();
    let mut client = start(Http::with_config(echo, logging_config()));
    client.send(b"GET /logged-1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response().status, 200);
    client.send(b"POST /logged-2?q HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(client.response().status, 200);
    client.join().unwrap();
    let first = lines_with("/logged-1");
    assert_eq!(first.len(), 1, "{first:?}");
    // A socketpair has no IP address: the host is "-".
    assert!(first[0].starts_with("- - - ["), "{}", first[0]);
    assert!(
        first[0].ends_with("] \"GET /logged-1 HTTP/1.1\" 200 14"),
        "{}",
        first[0]
    );
    let second = lines_with("/logged-2");
    assert_eq!(second.len(), 1, "{second:?}");
    assert!(
        second[0].ends_with("\"POST /logged-2?q HTTP/1.0\" 200 20"),
        "{}",
        second[0]
    );
}

#[test]
fn logs_scgi_requests_with_the_remote_address() {
    install();
    let mut client = start(Scgi::with_config(echo, logging_config()));
    let variables: &[(&str, &str)] = &[
        ("CONTENT_LENGTH", "0"),
        ("SCGI", "1"),
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/logged-scgi"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "192.0.2.7"),
        ("REMOTE_PORT", "5555"),
    ];
    let mut block = Vec::new();
    for (name, value) in variables {
        block.extend_from_slice(name.as_bytes());
        block.push(0);
        block.extend_from_slice(value.as_bytes());
        block.push(0);
    }
    let mut request = format!("{}:", block.len()).into_bytes();
    request.extend_from_slice(&block);
    request.push(b',');
    client.send(&request);
    let answer = String::from_utf8(client.read_to_end()).unwrap();
    assert!(answer.starts_with("Status: 200 OK\r\n"), "{answer}");
    let lines = lines_with("/logged-scgi");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("192.0.2.7 - - ["), "{}", lines[0]);
}

#[test]
fn silent_when_off() {
    install();
    let mut client = start(Http::new(echo));
    client.send(b"GET /not-logged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(client.response().status, 200);
    client.join().unwrap();
    assert!(lines_with("/not-logged").is_empty());
}
