//! A keep-alive connection parses each request head into the storage the previous
//! request left: nothing of one request — method, target, version, a header field,
//! trailers, a body — may show in the next, whatever the handler did with it.
//!
//! The connection is served on the test's own thread; the client writes and reads on
//! two others, so neither side blocks on a full socket buffer.

mod http_util;

use std::io::{Read, Write};

use mixserve::http::{BodyReader, Http, HttpConfig, HttpHandler, Request, Response};
use mixserve::{Conn, Handler, MakeHandler};

use http_util::ThreadedClient;

/// Everything a request shows the application, one line per item.
fn describe(req: &Request, trailers: &mut dyn Iterator<Item = (&str, &[u8])>) -> String {
    let mut text = format!("{} {} {}\n", req.method(), req.target(), req.version());
    for (name, value) in req.headers().iter() {
        text += &format!("h {name}: {}\n", String::from_utf8_lossy(value));
    }
    for (name, value) in trailers {
        text += &format!("t {name}: {}\n", String::from_utf8_lossy(value));
    }
    text += &format!("b {}\n", String::from_utf8_lossy(req.body()));
    text
}

/// Echoes each request; `/replace` swaps in a request of the handler's own, `/take`
/// takes the body out.
fn echo(req: &mut Request) -> Response {
    match req.path() {
        "/replace" => {
            *req = Request::new("BREW", format!("/{}", "r".repeat(4096)))
                .with_header("X-Injected", "x".repeat(65536))
                .with_body("injected");
        }
        "/take" => {
            req.take_body();
        }
        _ => {}
    }
    let text = describe(req, &mut req.trailers().iter());
    Response::text(200, text)
}

/// Serves `input` on one connection; returns the bodies of the answers, in order.
fn serve(app: impl HttpHandler, input: &[u8]) -> Vec<String> {
    let (server, client) = ThreadedClient::start(input.to_vec());
    let mut config = HttpConfig::default();
    config.max_requests_per_connection = usize::MAX;
    let http = Http::with_config(app, config);
    let mut conn = Conn::from_unix(server).unwrap();
    let mut handler = http.make_handler();
    handler.setup(&mut conn).unwrap();
    handler.handle(&mut conn).unwrap();
    conn.flush().unwrap();
    drop(conn);
    let all = client.answers();
    let mut rest = all.as_str();
    let mut bodies = Vec::new();
    while !rest.is_empty() {
        let (head, after) = rest.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.") && head[8..].starts_with(" 200 OK\r\n"),
            "{head}"
        );
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        bodies.push(after[..length].to_owned());
        rest = &after[length..];
    }
    bodies
}

const FIRST: &[u8] = b"POST /first?q=secret HTTP/1.1\r\nHost: one\r\nX-Secret: s1\r\n\
Cookie: c=1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t1\r\n\r\n";

#[test]
fn nothing_of_a_request_shows_in_the_next() {
    let mut input = FIRST.to_vec();
    input.extend_from_slice(b"GET /second HTTP/1.1\r\nHost: two\r\n\r\n");
    input.extend_from_slice(b"GET /third HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    input.extend_from_slice(b"PUT /fourth HTTP/1.1\r\nHost: four\r\nContent-Length: 3\r\n\r\nabc");
    input.extend_from_slice(b"OPTIONS * HTTP/1.1\r\nHost: five\r\n\r\n");
    let answers = serve(echo, &input);
    assert_eq!(
        answers,
        [
            "POST /first?q=secret HTTP/1.1\nh Host: one\nh X-Secret: s1\nh Cookie: c=1\n\
             h Transfer-Encoding: chunked\nt X-Trailer: t1\nb hello\n",
            "GET /second HTTP/1.1\nh Host: two\nb \n",
            "GET /third HTTP/1.0\nh Connection: keep-alive\nb \n",
            "PUT /fourth HTTP/1.1\nh Host: four\nh Content-Length: 3\nb abc\n",
            "OPTIONS * HTTP/1.1\nh Host: five\nb \n",
        ]
    );
}

#[test]
fn a_request_the_handler_replaced_or_emptied_leaves_nothing_behind() {
    let mut input = b"POST /take HTTP/1.1\r\nHost: one\r\nContent-Length: 4\r\n\r\nbody".to_vec();
    input.extend_from_slice(b"GET /after-take HTTP/1.1\r\nHost: two\r\n\r\n");
    input.extend_from_slice(b"GET /replace HTTP/1.1\r\nHost: three\r\n\r\n");
    input.extend_from_slice(b"GET /after-replace HTTP/1.1\r\nHost: four\r\n\r\n");
    let answers = serve(echo, &input);
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert_eq!(
        answers[0],
        "POST /take HTTP/1.1\nh Host: one\nh Content-Length: 4\nb \n"
    );
    assert_eq!(answers[1], "GET /after-take HTTP/1.1\nh Host: two\nb \n");
    assert!(answers[2].starts_with("BREW /rrr"), "{}", &answers[2][..40]);
    assert_eq!(
        answers[3],
        "GET /after-replace HTTP/1.1\nh Host: four\nb \n"
    );
}

/// Reads only the first `n` bytes of a streamed body, then answers with what the
/// request and the reader show.
struct HalfReader(usize);

impl HttpHandler for HalfReader {
    fn handle(&self, req: &mut Request) -> Response {
        Response::text(200, describe(req, &mut std::iter::empty()))
    }

    fn streams_body(&self, _: &Request) -> bool {
        true
    }

    fn handle_streaming(&self, req: &mut Request, body: &mut BodyReader<'_>) -> Response {
        let mut part = Vec::new();
        body.take(self.0 as u64).read_to_end(&mut part).unwrap();
        let mut text = describe(req, &mut body.trailers().iter());
        text += &format!("read {}\n", String::from_utf8_lossy(&part));
        Response::text(200, text)
    }
}

#[test]
fn a_body_left_half_read_by_a_streaming_handler_is_not_the_next_request() {
    let mut input = FIRST.to_vec();
    input.extend_from_slice(
        b"POST /second HTTP/1.1\r\nHost: two\r\nContent-Length: 6\r\n\r\nGET /x",
    );
    input.extend_from_slice(b"GET /third HTTP/1.1\r\nHost: three\r\n\r\n");
    let answers = serve(HalfReader(2), &input);
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert!(answers[0].ends_with("b \nread he\n"), "{}", answers[0]);
    assert_eq!(
        answers[1],
        "POST /second HTTP/1.1\nh Host: two\nh Content-Length: 6\nb \nread GE\n"
    );
    assert_eq!(
        answers[2],
        "GET /third HTTP/1.1\nh Host: three\nb \nread \n"
    );
}
