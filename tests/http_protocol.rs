//! Keep-alive, pipelining, bodies both ways, `100-continue`, `HEAD` and panics, driven
//! through the real `Http` handler over a socketpair.

mod http_util;

use std::io::Read;

use http_util::{Client, echo, start};
use mixserve::http::{Http, HttpConfig, Request, Response};
use mixserve::scgi::Scgi;

fn client() -> Client {
    start(Http::new(echo))
}

#[test]
fn keeps_http11_connections_alive() {
    let mut client = client();
    for i in 0..3 {
        client.send(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let answer = client.response();
        assert_eq!(answer.text(), format!("GET /{i} "));
        assert!(!answer.closes());
    }
    client.join().unwrap();
}

#[test]
fn answers_pipelined_requests_in_order() {
    let mut client = client();
    client.send(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody\
          POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
    assert_eq!(client.response().text(), "GET /1 ");
    assert_eq!(client.response().text(), "POST /2 body");
    assert_eq!(client.response().text(), "POST /3 ok");
    client.join().unwrap();
}

#[test]
fn pipelined_request_after_close_is_not_served() {
    let mut client = client();
    client.send(b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.text(), "GET /1 ");
    assert!(answer.closes());
    assert!(client.closed());
}

#[test]
fn http10_closes_by_default() {
    let mut client = client();
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.status, 200);
    assert!(answer.closes());
    assert!(client.closed());
    client.join().unwrap();
}

#[test]
fn http10_gets_its_own_version_and_no_chunks() {
    let mut client = start(Http::new(streaming));
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let raw = String::from_utf8(client.read_to_end()).unwrap();
    assert!(raw.starts_with("HTTP/1.0 200 OK\r\n"), "{raw}");
    assert!(raw.contains("Connection: close\r\n"), "{raw}");
    assert!(!raw.contains("chunked"), "{raw}");
    assert!(
        raw.ends_with("\r\n\r\nhello world"),
        "close-delimited: {raw}"
    );
}

#[test]
fn http10_keeps_alive_when_asked() {
    let mut client = client();
    client.send(b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    client.send(b"GET /b HTTP/1.0\r\n\r\n");
    assert_eq!(client.response().text(), "GET /b ");
    assert!(client.closed());
}

#[test]
fn http11_connection_close_closes() {
    let mut client = client();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(client.response().closes());
    assert!(client.closed());
}

#[test]
fn application_can_close_the_connection() {
    let mut client = start(Http::new(|_: &mut Request| {
        Response::text(200, "bye").with_header("Connection", "close")
    }));
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(client.response().closes());
    assert!(client.closed());
}

#[test]
fn expect_100_continue_before_the_body() {
    let mut client = client();
    client
        .send(b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let interim = client.response();
    assert_eq!(interim.status, 100);
    client.send(b"hello");
    assert_eq!(client.response().text(), "PUT /up hello");
    client.join().unwrap();
}

#[test]
fn expect_100_continue_refused_when_too_large() {
    let mut client = client();
    client.send(
        b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n",
    );
    let answer = client.response();
    assert_eq!(
        answer.status, 413,
        "no 100 Continue for a body we will not take"
    );
    assert!(answer.closes());
    assert!(client.closed());
}

#[test]
fn decodes_chunked_bodies_with_extensions_and_trailers() {
    let mut client = client();
    client.send(
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n1 ; a=\"b\"\r\n \r\n5\r\nworld\r\n0\r\nX-Check: 42\r\n\r\n",
    );
    let answer = client.response();
    assert_eq!(answer.text(), "POST /c hello world");
    assert_eq!(answer.header("x-trailer-x-check"), Some("42"));
    client.join().unwrap();
}

fn streaming(_: &mut Request) -> Response {
    Response::chunks(200, vec![b"hello ".to_vec(), Vec::new(), b"world".to_vec()])
}

#[test]
fn streams_chunked_responses() {
    let mut client = start(Http::new(streaming));
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
    assert_eq!(answer.header("content-length"), None);
    assert_eq!(answer.text(), "hello world");
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        client.response().text(),
        "hello world",
        "still alive after a stream"
    );
}

#[test]
fn streams_to_http10_until_close() {
    let mut client = start(Http::new(streaming));
    client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.header("transfer-encoding"), None);
    assert!(answer.closes());
    assert_eq!(answer.text(), "hello world");
}

#[test]
fn head_gets_headers_without_body() {
    let mut client = client();
    client.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = client.head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("8"), "as GET would say");
    // Had a body been sent, it would be read here as the next status line.
    assert_eq!(client.response().text(), "GET /g ");
    client.join().unwrap();
}

/// A `HEAD` (or a 304) answered without a body says the length a `GET` would get only
/// if the application gives it; a 204 never has one; a made-up length is dropped.
#[test]
fn a_bodiless_answer_to_head_carries_only_the_length_the_application_gives() {
    let mut client = start(Http::new(|req: &mut Request| {
        let answer = match req.path() {
            "/given" => Response::status(200).with_header("Content-Length", "1234"),
            "/304" => Response::status(304).with_header("Content-Length", "1234"),
            "/204" => Response::status(204).with_header("Content-Length", "1234"),
            "/bad" => Response::status(200).with_header("Content-Length", "12, 12"),
            _ => Response::status(200),
        };
        answer.with_header("X-Path", req.path().to_string())
    }));
    let cases = [
        ("HEAD", "/given", Some("1234")),
        ("HEAD", "/none", None),
        ("HEAD", "/bad", None),
        ("HEAD", "/204", None),
        ("GET", "/304", Some("1234")),
        ("GET", "/204", None),
        ("GET", "/none", Some("0")),
        ("GET", "/given", Some("0")),
    ];
    for (method, path, length) in cases {
        client.send(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let answer = match method {
            "HEAD" => client.head_response(),
            _ => client.response(),
        };
        assert_eq!(answer.header("x-path"), Some(path), "answers stay in step");
        assert_eq!(answer.header("content-length"), length, "{method} {path}");
        assert!(!answer.closes(), "{method} {path}");
    }
    client.join().unwrap();
}

/// Answers the server makes itself (a failure, a panic) end at their head for `HEAD`
/// too: a body there would be read as the next response.
#[test]
fn errors_answering_head_have_no_body() {
    let cases: &[(&[u8], u16)] = &[
        (b"HEAD /panic HTTP/1.1\r\nHost: x\r\n\r\n", 500),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\nExpect: nope\r\n\r\n", 417),
        (
            b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
            413,
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
    ];
    for &(request, status) in cases {
        let mut client = client();
        client.send(request);
        let head = client.head_response();
        assert_eq!(head.status, status, "{}", String::from_utf8_lossy(request));
        assert!(head.header("content-length").is_some(), "as GET would say");
        assert!(client.closed(), "a body after the head of {status}");
        client.join().unwrap();
    }
}

#[test]
fn no_body_for_204_and_304() {
    let mut client = start(Http::new(|req: &mut Request| {
        let status = if req.path() == "/204" { 204 } else { 304 };
        Response::text(status, "dropped")
    }));
    client.send(b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\n");
    let first = client.response();
    assert_eq!((first.status, first.header("content-length")), (204, None));
    assert_eq!(client.response().status, 304);
    client.join().unwrap();
}

#[test]
fn panicking_application_gets_500_and_a_close() {
    let mut client = client();
    client.send(b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.status, 500);
    assert!(answer.closes());
    assert!(client.closed());
    client
        .join()
        .expect("the handler returns normally after a panic");
}

/// An application whose choice of streaming panics for `/panic`.
struct PanicsChoosing;

impl mixserve::http::HttpHandler for PanicsChoosing {
    fn handle(&self, req: &mut Request) -> Response {
        echo(req)
    }

    fn streams_body(&self, req: &Request) -> bool {
        assert_ne!(req.path(), "/panic", "streams_body fails");
        false
    }
}

/// The answers to requests pipelined before it, still buffered, go out before the 500.
#[test]
fn a_panic_choosing_to_stream_gets_500_after_the_answers_before_it() {
    let mut client = start(Http::new(PanicsChoosing));
    client.send(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /panic HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok",
    );
    assert_eq!(client.response().text(), "GET /1 ");
    let answer = client.response();
    assert_eq!(answer.status, 500);
    assert!(answer.closes());
    assert!(client.closed());
    client.join().expect("the handler returns normally");
}

/// A streamed answer whose third item panics.
fn failing_stream(_: &mut Request) -> Response {
    let items = (0..3).map(|i| {
        if i < 2 {
            b"ok".to_vec()
        } else {
            panic!("stream fails")
        }
    });
    Response::chunks(200, items)
}

#[test]
fn panicking_stream_cuts_the_body_short() {
    let mut client = start(Http::new(failing_stream));
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut raw = Vec::new();
    client.reader.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(
        raw.ends_with("\r\n\r\n2\r\nok\r\n2\r\nok\r\n"),
        "no final chunk: {raw:?}"
    );
}

/// The head of a streamed answer goes out before the stream's first read, which may
/// wait long (server-sent events, a long poll).
#[test]
fn a_streamed_answer_sends_its_head_before_the_first_read_returns() {
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(Some(wait));
    let mut client = start(Http::new(move |_: &mut Request| {
        let wait = wait.lock().unwrap().take().expect("one request");
        let first = std::iter::once_with(move || {
            // Bounded, so a broken server fails the test rather than hanging it.
            let _ = wait.recv_timeout(std::time::Duration::from_secs(30));
            b"event".to_vec()
        });
        Response::chunks(200, first)
    }));
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = client.head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    go.send(()).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut client.reader, &mut line).unwrap();
    assert_eq!(line, "5\r\n");
}

/// A stream that fails midway with no framing of its own (HTTP/1.0) would look complete
/// at an orderly close: over TCP the connection is reset instead.
#[test]
fn a_failed_unframed_stream_resets_the_connection() {
    use mixserve::{Conn, Handler, MakeHandler};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut conn = Conn::from_tcp(stream).unwrap();
        let mut handler = Http::new(failing_stream).make_handler();
        handler.setup(&mut conn).unwrap();
        let _ = handler.handle(&mut conn);
        let _ = handler.finish(&mut conn);
    });
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    std::io::Write::write_all(&mut client, b"GET / HTTP/1.0\r\n\r\n").unwrap();
    server.join().unwrap();
    let mut raw = Vec::new();
    let read = client.read_to_end(&mut raw);
    assert_eq!(
        read.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "an orderly close after {:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
#[should_panic(expected = "server_name")]
fn a_server_name_that_would_split_every_head_is_refused_at_construction() {
    let mut config = HttpConfig::default();
    config.server_name = Some("mixserve\r\nX-Injected: yes".into());
    let _ = Http::with_config(|_: &mut Request| Response::status(204), config);
}

#[test]
fn try_with_config_returns_the_refusal_instead() {
    let mut config = HttpConfig::default();
    config.server_name = Some("mixserve\r\nX-Injected: yes".into());
    let app = |_: &mut Request| Response::status(204);
    let refusal = Http::try_with_config(app, config.clone()).expect_err("refused");
    assert_eq!((refusal.part, refusal.setting), ("http", "server_name"));
    let refusal = Scgi::try_with_config(app, config).expect_err("refused");
    assert_eq!((refusal.part, refusal.setting), ("http", "server_name"));
}

#[test]
fn adds_date_and_server_and_passes_request_parts() {
    let mut client = start(Http::new(|req: &mut Request| {
        let peer = req.peer_addr().map(ToString::to_string).unwrap_or_default();
        let text = format!(
            "{}|{:?}|{}|{}|{}",
            req.path(),
            req.query(),
            req.version(),
            req.header("X-CASE").unwrap_or("-"),
            peer
        );
        Response::text(200, text)
            .with_header("Content-Length", "999")
            .with_header("X-Bad", "a\r\nInjected: yes")
    }));
    client.send(b"\r\nGET /p?q=1 HTTP/1.1\r\nHost: x\r\nx-case: Mixed\r\n\r\n");
    let answer = client.response();
    assert_eq!(
        answer.text(),
        "/p|Some(\"q=1\")|HTTP/1.1|Mixed|unix:(unnamed)"
    );
    assert_eq!(answer.header("server"), Some("mixserve"));
    let date = answer.header("date").expect("Date header");
    assert!(
        date.ends_with(" GMT") && date.len() == 29,
        "IMF-fixdate: {date}"
    );
    assert_eq!(answer.header("injected"), None);
    assert_eq!(answer.header("x-bad"), None);
    client.join().unwrap();
}

/// Two requests in one write: the first's answer goes out before the second's handler
/// runs, which may hold it long (a long poll).
#[test]
fn a_pipelined_answer_is_not_held_behind_the_next_handler() {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let mut client = start(Http::new(move |req: &mut Request| {
        if req.path() == "/wait" {
            let _ = held
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(20));
        }
        Response::text(200, req.path().to_owned())
    }));
    client.send(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\nGET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    // Read before releasing the second handler: before the fix this waited for it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let first = client.response();
        done_tx.send(first.text()).unwrap();
        client
    });
    let first = done_rx.recv_timeout(std::time::Duration::from_secs(10));
    release.send(()).unwrap();
    assert_eq!(
        first.as_deref(),
        Ok("/fast"),
        "the first answer waited for the second handler"
    );
    let mut client = reader.join().unwrap();
    assert_eq!(client.response().text(), "/wait");
}

/// A 1xx is interim, never a final answer: a handler that returns one gets a 500.
#[test]
fn a_handler_answering_with_an_interim_status_gets_500() {
    let mut client = start(Http::new(|_: &mut Request| Response::status(103)));
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response().status, 500);
}
