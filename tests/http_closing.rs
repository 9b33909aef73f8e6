//! How a connection closes: lingering after an error answer until the client has sent
//! what it was sending (a refused upload gets its `413`, not a reset), and not after a
//! whole request whose client asked to close, unless it pipelined more; and silently,
//! as an idle one, when all that came after the last answer was empty lines.

mod http_util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use http_util::{Client, echo, start};
use mixserve::http::{Http, HttpConfig};
use mixserve::{Server, Threading};

fn config(change: impl FnOnce(&mut HttpConfig)) -> HttpConfig {
    let mut config = HttpConfig::default();
    change(&mut config);
    config
}

fn client_with(config: HttpConfig) -> Client {
    start(Http::with_config(echo, config))
}

/// An upload refused with `413` is read and thrown away until the client has sent it
/// all and closed (within `linger`): the client reads the answer and an orderly end.
/// Lingering stopped after 256 KiB, and the close with the rest still arriving reset
/// the connection under the client's feet.
#[test]
fn an_upload_refused_with_413_ends_with_its_answer_not_a_reset() {
    // Generous: loopback carries the upload in far less; only a hang would use it.
    let config = config(|c| c.linger = Duration::from_secs(30));
    let mut server = Server::builder(Threading::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(Http::with_config(echo, config))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let body = vec![b'x'; 8 << 20];
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let sent = stream.write_all(&body);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(
        sent.is_ok() && read.is_ok(),
        "sent: {sent:?}, read: {read:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    handle.shutdown();
    serving.join().unwrap().unwrap();
}

/// A request read whole whose client asked to close is closed at once, though the
/// client keeps its end open: lingering is for input the client may still send. It
/// held the connection's thread (a whole iterative worker) for `linger` each time.
#[test]
fn a_whole_request_whose_client_closes_is_closed_at_once() {
    let hour = config(|c| c.linger = Duration::from_secs(3600));
    let mut client = client_with(hour);
    client.send(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(client.response().status, 200);
    assert!(
        client.server_ends_within(Duration::from_secs(20)),
        "it lingered"
    );
}

/// A request the client pipelined after one that asked to close, arriving while that
/// one is served, is read before the close (lingering), so the close sends no reset
/// that would cut the answer still in the socket's send queue (8 MiB here).
#[test]
fn a_request_pipelined_after_a_close_is_lingered_over() {
    let app = |req: &mut mixserve::http::Request| {
        if req.path() == "/a" {
            thread::sleep(Duration::from_millis(300));
            return mixserve::http::Response::text(200, "a".repeat(8 << 20));
        }
        mixserve::http::Response::text(200, req.path().to_string())
    };
    let mut server = Server::builder(Threading::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(Http::new(app))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Sent while /a is being served: it is in the socket, not yet read, at the close.
    thread::sleep(Duration::from_millis(100));
    stream
        .write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(read.is_ok(), "an orderly end, not a reset: {read:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{}", &answer[..60]);
    assert!(answer.ends_with(&"a".repeat(8 << 20)), "the whole body");
    handle.shutdown();
    serving.join().unwrap().unwrap();
}

/// Empty lines after a request (the CRLF some clients send after a body, RFC 9112
/// §2.2) do not start the next request: the connection idles, and closes without a
/// word at its idle timeout. It waited out the header timeout and then answered a
/// `408` that a client reusing the connection could take for its next answer.
#[test]
fn empty_lines_after_a_request_leave_the_connection_idle() {
    let quick_idle = config(|c| {
        c.idle_timeout = Duration::from_millis(100);
        c.header_timeout = Duration::from_secs(3600);
    });
    let mut client = client_with(quick_idle);
    client.send(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok\r\n");
    assert_eq!(client.response().status, 200);
    client.send(b"\r\n\n");
    assert!(
        client.server_ends_within(Duration::from_secs(20)),
        "it waited for a head"
    );
    assert!(client.closed(), "it answered the empty lines");
}

/// Empty lines trickled between requests do not restart the idle timeout: the
/// connection closes at the idle timeout of its first wait, though a line comes every
/// quarter of it.
#[test]
fn empty_lines_trickled_do_not_keep_an_idle_connection() {
    let quick_idle = config(|c| {
        c.idle_timeout = Duration::from_millis(200);
        c.header_timeout = Duration::from_secs(3600);
    });
    let mut client = client_with(quick_idle);
    client.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response().status, 200);
    // Ten seconds of a CRLF every 50 ms, unless the server closes first.
    for _ in 0..200 {
        if client.server_ended() || !client.try_send(b"\r\n") {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        client.server_ended(),
        "the trickle kept the connection for 10 s"
    );
    assert!(client.closed(), "it answered the empty lines");
}

/// A connection that sent only empty lines has not begun a request: at its header
/// timeout it is closed without an answer, like one that sent nothing.
#[test]
fn a_first_request_of_only_empty_lines_is_closed_without_an_answer() {
    let quick = config(|c| c.header_timeout = Duration::from_millis(100));
    let mut client = client_with(quick);
    client.send(b"\r\n");
    assert!(client.closed(), "it answered the empty line");
}
