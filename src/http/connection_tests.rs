//! Tests of [`HttpConnection`](super::HttpConnection): drains, the storage an idle
//! connection keeps.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use super::*;
use crate::conn::Drain;

#[test]
fn draining_answers_with_close_and_stops() {
    let (mut client, server) = UnixStream::pair().unwrap();
    client
        .write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut conn = Conn::from_unix(server).unwrap();
    let drain = Arc::new(Drain::new());
    drain.begin();
    conn.set_drain_flag(drain);
    let app = |req: &mut Request| Response::text(200, req.target().to_owned());
    let mut handler = HttpConnection::new(Arc::new(app), Arc::new(HttpConfig::default()));
    client.shutdown(Shutdown::Write).unwrap();
    handler.handle(&mut conn).unwrap();
    drop(conn);
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n/1"),
        "only the request in hand: {answer}"
    );
}

#[test]
fn an_idle_connection_keeps_little_of_a_large_head() {
    let (mut client, server) = UnixStream::pair().unwrap();
    let mut large = format!(
        "{} /{} HTTP/1.1\r\nHost: x\r\n",
        "M".repeat(100),
        "t".repeat(4096)
    );
    large += &format!("Cookie: {}\r\n", "c".repeat(64 * 1024));
    for field in 0..40 {
        large += &format!("X-{field}: {field}\r\n");
    }
    large += "\r\n";
    let small = "GET /small HTTP/1.1\r\nHost: x\r\n\r\n";
    let input = large.clone() + small + small + small;
    let writing = std::thread::spawn(move || {
        client.write_all(input.as_bytes()).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut answers = String::new();
        client.read_to_string(&mut answers).unwrap();
        answers
    });
    let config = HttpConfig {
        max_request_line: 8 * 1024,
        max_header_line: 128 * 1024,
        max_headers: 64,
        max_head_bytes: 256 * 1024,
        ..HttpConfig::default()
    };
    let app = |req: &mut Request| Response::text(200, req.headers().len().to_string());
    let mut handler = HttpConnection::new(Arc::new(app), Arc::new(config));
    let mut conn = Conn::from_unix(server).unwrap();
    handler.setup(&mut conn).unwrap();
    for request in 0..4 {
        let next = handler.serve_one(&mut conn, false, false).unwrap();
        assert!(matches!(next, Next::KeepAlive), "request {request}");
        let spare = handler.request.head();
        let kept = (
            spare.method.capacity(),
            spare.target.capacity(),
            spare.headers.capacity_bytes(),
            handler.raw_head.capacity(),
        );
        assert!(
            kept.0 <= 16 && kept.1 <= 256 && kept.2 <= 1024 + 24 * 12 && kept.3 <= 1024,
            "after request {request}: {kept:?}"
        );
        assert!(spare.method.is_empty() && spare.target.is_empty() && spare.headers.is_empty());
        assert!(handler.request.body().is_empty());
    }
    conn.flush().unwrap();
    drop(conn);
    let answers = writing.join().unwrap();
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 4, "{answers}");
    assert!(
        answers.contains("\r\n\r\n42"),
        "the large head was read whole: {answers}"
    );
}
