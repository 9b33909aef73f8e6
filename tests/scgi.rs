//! SCGI: netstring headers in, `Status:` answers out, onto the same `HttpHandler`.

mod http_util;

use http_util::{Client, echo, start};
use mixserve::http::{HttpConfig, Request, Response};
use mixserve::scgi::Scgi;

/// A netstring of `CONTENT_LENGTH`, `SCGI` and `variables`, then `body`.
fn scgi_request(variables: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut block = format!("CONTENT_LENGTH\0{}\0SCGI\x001\0", body.len()).into_bytes();
    for (name, value) in variables {
        block.extend_from_slice(format!("{name}\0{value}\0").as_bytes());
    }
    let mut request = format!("{}:", block.len()).into_bytes();
    request.extend_from_slice(&block);
    request.push(b',');
    request.extend_from_slice(body);
    request
}

/// Reads the whole answer (the server closes) and splits it into head lines and body.
fn answer(client: &mut Client) -> (Vec<String>, String) {
    let raw = String::from_utf8(client.read_to_end()).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.split("\r\n").map(String::from).collect(),
        body.to_string(),
    )
}

fn exchange(make: Scgi<impl mixserve::http::HttpHandler>, request: &[u8]) -> (Vec<String>, String) {
    let mut client = start(make);
    client.send(request);
    let result = answer(&mut client);
    client.join().expect("handler ends cleanly");
    result
}

#[test]
fn serves_a_request_with_a_status_line() {
    let request = scgi_request(
        &[("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/a?b=1")],
        b"data",
    );
    let (head, body) = exchange(Scgi::new(echo), &request);
    assert_eq!(head[0], "Status: 200 OK");
    assert!(head.contains(&"Content-Length: 16".to_string()), "{head:?}");
    assert!(
        !head
            .iter()
            .any(|line| line.starts_with("HTTP/") || line.starts_with("Connection"))
    );
    assert_eq!(body, "POST /a?b=1 data");
}

#[test]
fn maps_cgi_variables_onto_the_request() {
    let app = |req: &mut Request| {
        let text = format!(
            "{} {} {:?} {} {} {} {}",
            req.method(),
            req.target(),
            req.version(),
            req.header("user-agent").unwrap_or("-"),
            req.header("content-type").unwrap_or("-"),
            req.header("content-length").unwrap_or("-"),
            req.peer_addr().map(ToString::to_string).unwrap_or_default(),
        );
        Response::text(200, text)
    };
    let request = scgi_request(
        &[
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", "/app"),
            ("PATH_INFO", "/x"),
            ("QUERY_STRING", "q=2"),
            ("SERVER_PROTOCOL", "HTTP/1.0"),
            ("HTTP_USER_AGENT", "curl/8"),
            ("CONTENT_TYPE", "text/plain"),
            ("REMOTE_ADDR", "192.0.2.7"),
            ("REMOTE_PORT", "4242"),
        ],
        b"",
    );
    let (_, body) = exchange(Scgi::new(app), &request);
    assert_eq!(
        body,
        "GET /app/x?q=2 Http10 curl/8 text/plain 0 192.0.2.7:4242"
    );
}

/// What nginx passes beside the request's own fields: each line of a repeated field as
/// its own variable (before 1.23), an empty `CONTENT_TYPE` when the client sent none,
/// and the client's framing fields, which it already undid.
#[test]
fn maps_what_nginx_passes_as_the_http_adapter_would_see_it() {
    let app = |req: &mut Request| {
        let accept: Vec<_> = req
            .headers()
            .get_all("accept")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let names: Vec<_> = req
            .headers()
            .iter()
            .map(|(name, _)| name.to_owned())
            .collect();
        Response::text(
            200,
            format!("{accept:?} {names:?} {}", req.form().is_some()),
        )
    };
    let request = scgi_request(
        &[
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/"),
            ("CONTENT_TYPE", ""),
            ("HTTP_ACCEPT", "text/html"),
            ("HTTP_ACCEPT", "text/plain"),
            ("HTTP_TRANSFER_ENCODING", "chunked"),
            ("HTTP_CONTENT_LENGTH", "3"),
        ],
        b"a=1",
    );
    let (head, body) = exchange(Scgi::new(app), &request);
    assert_eq!(head[0], "Status: 200 OK");
    assert_eq!(
        body,
        r#"["text/html", "text/plain"] ["content-length", "accept", "accept"] true"#
    );
}

#[test]
fn head_requests_get_no_body() {
    let request = scgi_request(&[("REQUEST_METHOD", "HEAD"), ("REQUEST_URI", "/")], b"");
    let (head, body) = exchange(Scgi::new(echo), &request);
    assert_eq!(head[0], "Status: 200 OK");
    assert!(head.contains(&"Content-Length: 7".to_string()));
    assert_eq!(body, "");
}

#[test]
fn errors_answering_head_have_no_body() {
    let head_of = |uri| [("REQUEST_METHOD", "HEAD"), ("REQUEST_URI", uri)];
    let mut small = HttpConfig::default();
    small.max_body = 3;
    let cases = [
        (
            Scgi::new(echo),
            scgi_request(&head_of("/panic"), b""),
            "500",
        ),
        (
            Scgi::with_config(echo, small),
            scgi_request(&head_of("/"), b"four"),
            "413",
        ),
    ];
    for (make, request, status) in cases {
        let (head, body) = exchange(make, &request);
        assert!(
            head[0].starts_with(&format!("Status: {status}")),
            "{head:?}"
        );
        assert_eq!(body, "", "a body after the head of {status}");
    }
}

#[test]
fn streams_until_close() {
    let app = |_: &mut Request| Response::chunks(200, vec![b"a".to_vec(), b"b".to_vec()]);
    let (head, body) = exchange(Scgi::new(app), &scgi_request(&[], b""));
    assert!(!head.iter().any(|line| line.contains("chunked")));
    assert_eq!(body, "ab");
}

#[test]
fn body_over_the_limit_is_413() {
    let mut config = HttpConfig::default();
    config.max_body = 3;
    let (head, _) = exchange(Scgi::with_config(echo, config), &scgi_request(&[], b"four"));
    assert_eq!(head[0], "Status: 413 Content Too Large");
}

#[test]
fn panicking_application_gets_500() {
    let request = scgi_request(&[("REQUEST_URI", "/panic")], b"");
    let (head, _) = exchange(Scgi::new(echo), &request);
    assert_eq!(head[0], "Status: 500 Internal Server Error");
}

/// An application whose choice of streaming panics.
struct PanicsChoosing;

impl mixserve::http::HttpHandler for PanicsChoosing {
    fn handle(&self, _: &mut Request) -> Response {
        Response::text(200, "not reached\n")
    }

    fn streams_body(&self, _: &Request) -> bool {
        panic!("streams_body fails")
    }
}

#[test]
fn a_panic_choosing_to_stream_gets_500() {
    let request = scgi_request(&[("REQUEST_URI", "/")], b"body");
    let (head, _) = exchange(Scgi::new(PanicsChoosing), &request);
    assert_eq!(head[0], "Status: 500 Internal Server Error");
}

/// Sends `input`, ends the stream, and returns the answer's status line.
fn status_for(input: &[u8]) -> String {
    let mut client = start(Scgi::new(echo));
    client.send(input);
    client.writer.shutdown(std::net::Shutdown::Write).unwrap();
    let (head, _) = answer(&mut client);
    client.join().expect("handler ends cleanly");
    head[0].clone()
}

#[test]
fn bad_netstrings_get_400_and_a_close() {
    let cases: &[&[u8]] = &[
        b"x:CONTENT_LENGTH\x000\x00SCGI\x001\x00,",
        b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00;",
        b"24:SCGI\x001\x00CONTENT_LENGTH\x000\x00,",
        b"19:CONTENT_LENGTH\x000\x00A\x00b\x00,",
        b"24:CONTENT_LENGTH\x00z\x00SCGI\x001\x00,",
        b"024:CONTENT_LENGTH\x000\x00SCGI\x001\x00,",
    ];
    for case in cases {
        let case_text = String::from_utf8_lossy(case);
        assert_eq!(status_for(case), "Status: 400 Bad Request", "{case_text:?}");
    }
}

#[test]
fn a_block_the_stream_ends_inside_closes_without_an_answer() {
    let mut client = start(Scgi::new(echo));
    client.send(b"24:CONTENT_LENGTH");
    client.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(client.closed());
    client.join().expect("handler ends cleanly");
}

#[test]
fn a_host_the_http_adapter_would_refuse_gets_400() {
    for host in ["a/../b", "evil host", "x@y", "a\\b"] {
        let request = scgi_request(&[("HTTP_HOST", host)], b"");
        let (head, body) = exchange(Scgi::new(echo), &request);
        assert_eq!(head[0], "Status: 400 Bad Request", "{host:?}");
        assert_eq!(body, "invalid Host field\n");
    }
    let request = scgi_request(&[("HTTP_HOST", "[::1]:8080")], b"");
    let (head, _) = exchange(Scgi::new(echo), &request);
    assert_eq!(head[0], "Status: 200 OK");
}

/// Another spelling of a header variable cannot slip past the checks: `HTTP_Host`
/// would have made a `host` field the `Host` check never saw (a review sent
/// `a/../b evil` this way and got it to the application).
#[test]
fn a_header_variable_spelled_otherwise_gets_400() {
    for name in ["HTTP_Host", "HTTP_TRANSFER-ENCODING", "HTTP_content_length"] {
        let request = scgi_request(&[(name, "a/../b evil")], b"");
        let (head, body) = exchange(Scgi::new(echo), &request);
        assert_eq!(head[0], "Status: 400 Bad Request", "{name}");
        assert_eq!(body, "malformed header variable name\n");
    }
}

#[test]
fn a_length_of_nine_digits_gets_431() {
    assert_eq!(
        status_for(b"999999999:"),
        "Status: 431 Request Header Fields Too Large"
    );
}

#[test]
fn netstring_over_the_head_limit_gets_431() {
    let mut config = HttpConfig::default();
    config.max_head_bytes = 64;
    let long = "v".repeat(100);
    let (head, _) = exchange(
        Scgi::with_config(echo, config),
        &scgi_request(&[("HTTP_X", &long)], b""),
    );
    assert_eq!(head[0], "Status: 431 Request Header Fields Too Large");
}

#[test]
fn a_wait_ends_when_the_front_end_drops_the_request() {
    use mixserve::sync::{Broadcast, WaitError};
    let news: Broadcast<usize> = Broadcast::new();
    let app = {
        let news = news.clone();
        move |_: &mut Request| match news.wait() {
            Ok(n) => Response::text(200, n.to_string()),
            Err(WaitError::ClientGone) => Response::status(499),
            Err(error) => Response::text(503, error.to_string()),
        }
    };
    let mut client = start(Scgi::new(app));
    client.send(&scgi_request(&[("REQUEST_URI", "/wait")], b""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while news.waiting() == 0 {
        assert!(std::time::Instant::now() < deadline, "never waited");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The front end (nginx, say) gives up on the request: it closes the connection.
    client
        .writer
        .shutdown(std::net::Shutdown::Both)
        .expect("shutdown");
    client.join().expect("handler ends cleanly");
    assert_eq!(news.waiting(), 0);
    assert_eq!(news.send_count(), Ok(0));
}
