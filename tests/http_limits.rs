//! Limits, timeouts and malformed input: each rule answers with its status and closes.

mod http_util;

use std::io::Write;
use std::thread;
use std::time::Duration;

use http_util::{Client, echo, start};
use mixserve::http::{Http, HttpConfig};

fn config(change: impl FnOnce(&mut HttpConfig)) -> HttpConfig {
    let mut config = HttpConfig::default();
    change(&mut config);
    config
}

fn client() -> Client {
    start(Http::new(echo))
}

fn client_with(config: HttpConfig) -> Client {
    start(Http::with_config(echo, config))
}

/// Sends `request`, expects an error answer with `status` and a closed connection.
fn rejects(request: &[u8], status: u16) {
    let mut client = client();
    client.send(request);
    expect_rejection(client, status);
}

fn expect_rejection(mut client: Client, status: u16) {
    let answer = client.response();
    assert_eq!(answer.status, status, "body: {}", answer.text());
    assert!(answer.closes(), "error answers say Connection: close");
    assert!(answer.header("content-length").is_some());
    assert!(!answer.body.is_empty(), "error answers carry a short text");
    assert!(client.closed(), "nothing after an error answer, then close");
    client.join().expect("handler ends cleanly");
}

#[test]
fn long_request_line_is_414() {
    let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9 * 1024));
    rejects(request.as_bytes(), 414);
}

#[test]
fn request_line_at_the_limit_is_served() {
    let path = format!("/{}", "a".repeat(8 * 1024 - "GET / HTTP/1.1".len()));
    let mut client = client();
    client.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    assert_eq!(client.response().status, 200);
}

#[test]
fn too_many_header_fields_is_431() {
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-{i}: v\r\n"));
    }
    request.push_str("\r\n");
    rejects(request.as_bytes(), 431);
}

#[test]
fn a_hundred_header_fields_are_served() {
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..99 {
        request.push_str(&format!("X-{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let mut client = client();
    client.send(request.as_bytes());
    assert_eq!(client.response().status, 200);
}

#[test]
fn long_header_field_is_431() {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(9 * 1024)
    );
    rejects(request.as_bytes(), 431);
}

#[test]
fn large_head_is_431() {
    // 70 fields of 1000 bytes: each within the field limit, count within 100, 68 KiB in all.
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..70 {
        request.push_str(&format!("X-{i:02}: {}\r\n", "v".repeat(993)));
    }
    request.push_str("\r\n");
    assert!(request.len() > 65 * 1024);
    rejects(request.as_bytes(), 431);
}

#[test]
fn head_larger_than_the_read_buffer_is_served() {
    // 60 KiB: within the 64 KiB head limit, well past the connection's 16 KiB buffer.
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..60 {
        request.push_str(&format!("X-{i:02}: {}\r\n", "v".repeat(1000)));
    }
    request.push_str("\r\n");
    let mut client = client();
    client.send(request.as_bytes());
    assert_eq!(client.response().status, 200);
}

#[test]
fn body_over_the_limit_is_413() {
    // Only the head is sent: the answer must come without reading the body.
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
        413,
    );
}

#[test]
fn body_at_the_limit_is_served() {
    let mut client = client();
    let mut request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    request.resize(request.len() + 1024 * 1024, b'b');
    let mut writer = client.writer.try_clone().unwrap();
    let sending = thread::spawn(move || writer.write_all(&request));
    let answer = client.response();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), "POST / ".len() + 1024 * 1024);
    sending.join().unwrap().unwrap();
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let config = config(|c| c.max_body = 10);
    let mut client = client_with(config);
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    client.send(b"8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n");
    expect_rejection(client, 413);
}

/// A chunked request whose body is `chunks` one-byte chunks, each size line carrying a
/// 1,000-byte extension (under the line limit, 8 KiB).
fn extension_laden(chunks: usize) -> Vec<u8> {
    let mut request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let extension = format!(";x={}", "e".repeat(997));
    for _ in 0..chunks {
        request.extend_from_slice(format!("1{extension}\r\nb\r\n").as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

#[test]
fn chunk_extensions_past_16_kib_in_one_body_are_400() {
    rejects(&extension_laden(17), 400);
}

#[test]
fn chunk_extensions_under_16_kib_are_served() {
    let mut client = client();
    client.send(&extension_laden(16));
    let answer = client.response();
    assert_eq!(
        (answer.status, answer.text()),
        (200, format!("POST / {}", "b".repeat(16)))
    );
}

#[test]
fn chunk_sizes_of_more_than_16_digits_are_400() {
    let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut client = client();
    client.send(format!("{chunked}{}1\r\nb\r\n0\r\n\r\n", "0".repeat(15)).as_bytes());
    assert_eq!(client.response().text(), "POST / b", "16 digits are served");
    rejects(
        format!("{chunked}{}1\r\nb\r\n0\r\n\r\n", "0".repeat(16)).as_bytes(),
        400,
    );
}

/// `Duration::MAX` as a timeout means "no limit", not an overflow.
#[test]
fn the_largest_timeouts_serve() {
    let mut client = client_with(config(|c| {
        c.header_timeout = Duration::MAX;
        c.body_deadline = Duration::MAX;
        c.body_timeout = Duration::MAX;
        c.idle_timeout = Duration::MAX;
    }));
    // Twice: the second head's deadline is armed after the idle wait.
    for _ in 0..2 {
        client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
        let answer = client.response();
        assert_eq!(
            (answer.status, answer.text()),
            (200, "POST / body".to_string())
        );
    }
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn repeated_content_length_is_400() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab",
        400,
    );
}

#[test]
fn differing_content_length_is_400() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    );
}

#[test]
fn non_digit_content_length_is_400() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\na",
        400,
    );
}

#[test]
fn overflowing_content_length_is_400() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n",
        400,
    );
}

#[test]
fn non_hex_chunk_size_is_400() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    );
}

#[test]
fn overflowing_chunk_size_is_400() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
        400,
    );
}

#[test]
fn chunk_without_crlf_is_400() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn unknown_transfer_coding_is_501() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    );
}

#[test]
fn unsupported_version_is_505() {
    rejects(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
}

#[test]
fn garbage_is_400() {
    rejects(b"\x00\x01 not http at all\r\n\r\n", 400);
}

#[test]
fn missing_host_is_400() {
    rejects(b"GET / HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn a_host_that_cannot_be_a_host_is_400() {
    for host in [
        "a b",
        "x/../y",
        "user@example.com",
        "a\\b",
        "h?q",
        "h#f",
        "café",
    ] {
        rejects(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            400,
        );
    }
    for host in [
        "example.com:8080",
        "[::1]:80",
        "127.0.0.1",
        "xn--caf-dma.example",
        "",
    ] {
        let mut client = client();
        client.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(client.response().status, 200, "{host:?}");
    }
}

#[test]
fn unknown_expectation_is_417() {
    rejects(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\n",
        417,
    );
}

#[test]
fn slow_head_is_408() {
    let config = config(|c| c.header_timeout = Duration::from_millis(200));
    let mut client = client_with(config);
    client.send(b"GET / HTTP/1.1\r\nHo");
    expect_rejection(client, 408);
}

#[test]
fn slow_second_head_is_408() {
    let config = config(|c| c.header_timeout = Duration::from_millis(200));
    let mut client = client_with(config);
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response().status, 200);
    client.send(b"GET / HTTP/1.1\r\n");
    expect_rejection(client, 408);
}

#[test]
fn slow_body_is_408() {
    let config = config(|c| c.body_timeout = Duration::from_millis(200));
    let mut client = client_with(config);
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    expect_rejection(client, 408);
}

#[test]
fn idle_connection_closes_silently() {
    let config = config(|c| c.idle_timeout = Duration::from_millis(100));
    let mut client = client_with(config);
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.status, 200);
    assert!(!answer.closes());
    assert!(
        client.closed(),
        "an idle keep-alive connection closes without a word"
    );
    client.join().unwrap();
}

#[test]
fn a_trickling_body_is_cut_at_the_body_deadline() {
    // Every read gets a byte well within `body_timeout`; only the whole-body deadline
    // can end this.
    let config = config(|c| {
        c.body_timeout = Duration::from_secs(10);
        c.body_deadline = Duration::from_millis(300);
    });
    let mut client = client_with(config);
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    let mut writer = client.writer.try_clone().unwrap();
    let trickle = thread::spawn(move || {
        for _ in 0..1000 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    expect_rejection(client, 408);
    trickle.join().unwrap();
}

#[test]
fn a_keep_alive_connection_serves_at_most_the_request_cap() {
    let config = config(|c| c.max_requests_per_connection = 3);
    let mut client = client_with(config);
    client.send(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: x\r\n\r\nGET /4 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    for _ in 0..2 {
        let answer = client.response();
        assert_eq!(answer.status, 200);
        assert!(!answer.closes());
    }
    let third = client.response();
    assert_eq!(third.status, 200);
    assert!(third.closes(), "the capped request says Connection: close");
    assert!(client.closed(), "the fourth request is not served");
    client.join().unwrap();
}

#[test]
fn a_silent_connection_closes_without_an_answer() {
    let config = config(|c| c.header_timeout = Duration::from_millis(100));
    let mut client = client_with(config);
    assert!(client.closed(), "no 408 to a client that never spoke");
    client.join().unwrap();
}

#[test]
fn a_malformed_method_is_400_and_only_a_real_version_is_505() {
    rejects(b"G ET / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    rejects(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400);
    rejects(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505);
}

#[test]
fn the_first_head_deadline_counts_time_spent_in_the_listen_queue() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let queued = Duration::from_millis(300);
    thread::sleep(queued);
    let (stream, _) = listener.accept().unwrap();
    let conn = mixserve::Conn::from_tcp(stream).unwrap();
    // Only a lower bound: a loaded machine makes the connection older, never younger.
    assert!(
        conn.established_at().elapsed() >= queued - Duration::from_millis(50),
        "established {:?} ago",
        conn.established_at().elapsed()
    );
}

#[test]
fn empty_lines_before_a_request_line_count_against_the_head_limit() {
    let small = || config(|c| c.max_head_bytes = 64);
    let mut client = client_with(small());
    client.send(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(
        client.response().status,
        200,
        "a few empty lines are ignored"
    );
    let mut client = client_with(small());
    client.send(&b"\r\n".repeat(40));
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_rejection(client, 400);
}
