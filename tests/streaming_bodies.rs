//! Request bodies read as they arrive (`HttpHandler::handle_streaming`, `Streaming`):
//! the handler runs before the body is complete, `chunked` is decoded chunk by chunk,
//! the body limit and the whole-body deadline hold while it streams, and a body left
//! partly unread is drained so the connection serves the next request.

mod http_util;

use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use http_util::start;
use mixserve::http::{BodyReader, Http, HttpConfig, Request, Response, Streaming};
use mixserve::scgi::Scgi;

/// A safety net against a hang; never asserted on as a time.
const PATIENCE: Duration = Duration::from_secs(20);

const MIB: usize = 1024 * 1024;

/// An app that reads the body in 8 KiB steps, reporting its progress after each step
/// on `progress`, and answers `<bytes> <sum of bytes>` (or the read error's kind).
fn counting_app(
    progress: Sender<u64>,
) -> Streaming<impl Fn(&mut Request, &mut BodyReader<'_>) -> Response> {
    let progress = Mutex::new(progress);
    Streaming(move |_req: &mut Request, body: &mut BodyReader<'_>| {
        let mut step = [0u8; 8192];
        let (mut total, mut sum) = (0u64, 0u64);
        loop {
            match body.read(&mut step) {
                Ok(0) => break,
                Ok(n) => {
                    total += n as u64;
                    sum += step[..n].iter().map(|&b| u64::from(b)).sum::<u64>();
                    let _ = progress.lock().unwrap().send(total);
                }
                Err(error) => return Response::text(200, format!("error {:?}", error.kind())),
            }
        }
        let trailer = body.trailers().get("x-check").unwrap_or("-").to_owned();
        Response::text(200, format!("{total} {sum} {trailer}"))
    })
}

/// Waits (bounded) until the app reports having read at least `bytes`.
fn wait_progress(progress: &Receiver<u64>, bytes: u64) {
    loop {
        let read = progress
            .recv_timeout(PATIENCE)
            .expect("the handler reads the body before it is complete");
        if read >= bytes {
            return;
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

fn config(max_body: usize) -> HttpConfig {
    let mut config = HttpConfig::default();
    config.max_body = max_body;
    config
}

#[test]
fn ten_mib_upload_is_read_while_it_arrives() {
    let (tx, progress) = mpsc::channel();
    let mut client = start(Http::with_config(counting_app(tx), config(16 * MIB)));
    let body = pattern(10 * MIB);
    client.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    // Only the first MiB is sent until the handler has read it: a server that
    // buffered the body first would never call the handler, and this would fail.
    client.send(&body[..MIB]);
    wait_progress(&progress, MIB as u64);
    let sender = {
        let mut writer = client.writer.try_clone().unwrap();
        let rest = body[MIB..].to_vec();
        std::thread::spawn(move || writer.write_all(&rest))
    };
    let answer = client.response();
    sender.join().unwrap().unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), format!("{} {} -", body.len(), sum(&body)));
    client.join().unwrap();
}

#[test]
fn chunked_is_decoded_chunk_by_chunk_with_trailers() {
    let (tx, progress) = mpsc::channel();
    let mut client = start(Http::with_config(counting_app(tx), config(MIB)));
    client.send(
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n",
    );
    // The first chunk reaches the handler before the second is even sent.
    wait_progress(&progress, 5);
    client.send(b"6\r\n world\r\n0\r\nX-Check: ok\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.text(), format!("11 {} ok", sum(b"hello world")));
    assert!(!answer.closes());
    client.join().unwrap();
}

#[test]
fn chunked_body_over_the_limit_is_413_while_streaming() {
    let (tx, _progress) = mpsc::channel();
    let mut client = start(Http::with_config(counting_app(tx), config(10)));
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.closes());
    client.join().unwrap();
}

#[test]
fn bad_chunk_framing_is_400_while_streaming() {
    let (tx, _progress) = mpsc::channel();
    let mut client = start(Http::with_config(counting_app(tx), config(MIB)));
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_eq!(client.response().status, 400);
    client.join().unwrap();
}

#[test]
fn whole_body_deadline_holds_while_streaming() {
    let (tx, progress) = mpsc::channel();
    let mut config = config(MIB);
    config.body_deadline = Duration::from_millis(300);
    let mut client = start(Http::with_config(counting_app(tx), config));
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc");
    wait_progress(&progress, 3);
    // The rest never comes: the server answers 408 itself and closes.
    let answer = client.response();
    assert_eq!(answer.status, 408, "{}", answer.text());
    assert!(answer.closes());
    client.join().unwrap();
}

/// Reads `n` bytes of the body (or all when `n` is 0), answers how many it read.
fn partial_reader(n: usize) -> Streaming<impl Fn(&mut Request, &mut BodyReader<'_>) -> Response> {
    Streaming(move |req: &mut Request, body: &mut BodyReader<'_>| {
        let mut taken = Vec::new();
        let limit = if n == 0 { u64::MAX } else { n as u64 };
        let _ = body.by_ref().take(limit).read_to_end(&mut taken);
        Response::text(200, format!("{} {}", req.target(), taken.len()))
    })
}

#[test]
fn keep_alive_after_a_partly_read_body() {
    let mut client = start(Http::with_config(partial_reader(3), config(MIB)));
    client.send(b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
    client.send(b"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n");
    client.send(b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    for expected in ["/1 3", "/2 3", "/3 0"] {
        let answer = client.response();
        assert_eq!((answer.status, answer.text()), (200, expected.to_string()));
        assert!(!answer.closes(), "{expected}");
    }
    client.join().unwrap();
}

#[test]
fn a_large_unread_body_closes_the_connection() {
    let mut client = start(Http::with_config(partial_reader(1), config(16 * MIB)));
    let body = pattern(4 * MIB);
    client.send(
        format!(
            "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let sender = {
        let mut writer = client.writer.try_clone().unwrap();
        // The server stops reading, so this write may fail once it closes.
        std::thread::spawn(move || {
            let _ = writer.write_all(&body);
        })
    };
    let answer = client.response();
    assert_eq!((answer.status, answer.text()), (200, "/big 1".to_string()));
    assert!(answer.closes());
    sender.join().unwrap();
    let _ = client.join();
}

#[test]
fn buffered_apps_still_get_the_whole_body() {
    let app = |req: &mut Request| Response::text(200, format!("{}", req.body().len()));
    let mut client = start(Http::new(app));
    client.send(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(client.response().text(), "3");
    client.join().unwrap();
}

#[test]
fn scgi_streams_a_content_length_body() {
    let (tx, progress) = mpsc::channel();
    let mut client = start(Scgi::with_config(counting_app(tx), config(MIB)));
    let body = pattern(64 * 1024);
    let block = format!(
        "CONTENT_LENGTH\0{}\0SCGI\x001\0REQUEST_METHOD\0POST\0",
        body.len()
    );
    client.send(format!("{}:{block},", block.len()).as_bytes());
    client.send(&body[..1000]);
    wait_progress(&progress, 1000);
    client.send(&body[1000..]);
    let raw = String::from_utf8(client.read_to_end()).unwrap();
    assert!(raw.starts_with("Status: 200"), "{raw}");
    assert!(
        raw.ends_with(&format!("{} {} -", body.len(), sum(&body))),
        "{raw}"
    );
    client.join().unwrap();
}
