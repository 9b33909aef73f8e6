//! Answers in the corners of the protocol: a `HEAD` refused at its head gets no
//! content, an HTTP/1.0 client's `close` wins over its `keep-alive`, and a response
//! stream that waits between chunks ends its wait when the client leaves.

mod http_util;

use std::io::Read;
use std::net::Shutdown;
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use http_util::{echo, start};
use mixserve::http::{Http, Request, Response};
use mixserve::sync::Broadcast;

/// Bounds only a failure.
const LONG: Duration = Duration::from_secs(20);

/// RFC 9110 §9.3.2: no content in an answer to `HEAD`, a refusal included. The refused
/// head's own message used to follow, where a client that pipelined would take it for
/// the start of its next answer.
#[test]
fn a_head_refused_at_its_head_gets_no_content() {
    for request in [
        &b"HEAD / HTTP/1.1\r\n\r\n"[..],
        b"HEAD / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: a b\r\n\r\n",
    ] {
        let mut client = start(Http::new(echo));
        client.send(request);
        assert_eq!(client.head_response().status, 400);
        let rest = client.read_to_end();
        assert!(
            rest.is_empty(),
            "{:?}: content after a HEAD answer's head: {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&rest)
        );
    }
}

/// RFC 9112 §9.3: `close` wins, in HTTP/1.0 as in 1.1.
#[test]
fn an_http10_close_wins_over_its_keep_alive() {
    let mut client = start(Http::new(echo));
    client.send(b"GET /1 HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    let answer = client.response();
    assert!(answer.closes(), "{:?}", answer.header("connection"));
    assert!(client.closed());
}

/// A response stream that waits on a `Broadcast` between chunks (an event stream).
struct Events {
    news: Broadcast<u64>,
    ended: mpsc::Sender<String>,
    greeted: bool,
}

impl Read for Events {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.greeted {
            self.greeted = true;
            buf[..6].copy_from_slice(b"hello\n");
            return Ok(6);
        }
        let outcome = self.news.wait();
        let _ = self.ended.send(format!("{outcome:?}"));
        match outcome {
            Ok(_) => {
                buf[0] = b'\n';
                Ok(1)
            }
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// The stream's wait is watched as a handler's is: it ends `ClientGone` when the client
/// leaves. It used to wait on until the next send found the socket gone, holding the
/// connection, its thread or coroutine, and a place among the waiters.
#[test]
fn a_response_stream_waiting_between_chunks_ends_when_the_client_leaves() {
    let news = Broadcast::new();
    let (ended, outcomes) = mpsc::channel();
    let (app_news, ended) = (news.clone(), Mutex::new(ended));
    let mut client = start(Http::new(move |_: &mut Request| {
        let events = Events {
            news: app_news.clone(),
            ended: ended.lock().unwrap().clone(),
            greeted: false,
        };
        Response::stream(200, events)
    }));
    client.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut first = [0u8; 1];
    client.reader.read_exact(&mut first).unwrap();
    let give_up = Instant::now() + LONG;
    while news.waiting() != 1 {
        assert!(Instant::now() < give_up, "the stream never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    client.writer.shutdown(Shutdown::Both).unwrap();
    let outcome = outcomes.recv_timeout(LONG);
    let waiting = news.waiting();
    let _ = news.send(1);
    assert_eq!(
        outcome.as_deref(),
        Ok("Err(ClientGone)"),
        "{waiting} still waiting"
    );
}
