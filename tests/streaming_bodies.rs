//! Request bodies read as they arrive (`HttpHandler::handle_streaming`, `Streaming`):
//! the handler runs before the body is complete, `chunked` is decoded chunk by chunk,
//! the body limit and the whole-body deadline hold while it streams, and a body left
//! partly unread is drained so the connection serves the next request. A streaming
//! handler is watched as a buffered one is: a shared-object wait in it ends with
//! `ClientGone` when the client leaves, while unread body bytes are no hang-up.

mod http_util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use http_util::start;
use mixserve::MakeHandler;
use mixserve::http::{BodyReader, Http, HttpConfig, Request, Response, Streaming};
use mixserve::rt::{Runtime, RuntimeConfig};
use mixserve::scgi::Scgi;
use mixserve::sync::{Broadcast, WaitError};

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
fn chunk_extensions_are_bounded_per_body_while_streaming() {
    let (tx, _progress) = mpsc::channel();
    let mut client = start(Http::with_config(counting_app(tx), config(MIB)));
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let extension = format!(";x={}", "e".repeat(997));
    for _ in 0..17 {
        client.send(format!("1{extension}\r\nb\r\n").as_bytes());
    }
    client.send(b"0\r\n\r\n");
    let answer = client.response();
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer.text().contains("chunk extensions"),
        "{}",
        answer.text()
    );
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

/// A streaming application that refuses by the head alone answers before the body is
/// invited: no `100 Continue`, and the answer closes the connection (the client may
/// never send the body). One that reads gets the `100` at its first read.
#[test]
fn the_100_continue_goes_out_at_the_first_read_of_a_streamed_body() {
    let app = Streaming(|req: &mut Request, body: &mut BodyReader<'_>| {
        if req.path() == "/refused" {
            return Response::text(401, "no");
        }
        let mut taken = Vec::new();
        let _ = body.read_to_end(&mut taken);
        Response::text(200, format!("{}", taken.len()))
    });
    let head = |path: &str| {
        format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n"
        )
    };
    let mut client = start(Http::with_config(app, config(MIB)));
    client.send(head("/refused").as_bytes());
    let answer = client.response();
    assert_eq!(answer.status, 401, "the answer, not a 100 first");
    assert!(answer.closes());
    let _ = client.join();

    let mut client = start(Http::with_config(partial_reader(0), config(MIB)));
    client.send(head("/taken").as_bytes());
    assert_eq!(client.response().status, 100);
    client.send(&pattern(1_000_000));
    let answer = client.response();
    assert_eq!(
        (answer.status, answer.text()),
        (200, "/taken 1000000".to_string())
    );
    client.join().unwrap();
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

/// An app that reads its whole body, reports its length on `body_read`, then waits for
/// `news` and reports how the wait ended on `ended`.
fn read_then_wait(
    news: Broadcast<u64>,
    body_read: Sender<usize>,
    ended: Sender<Result<u64, WaitError>>,
) -> Streaming<impl Fn(&mut Request, &mut BodyReader<'_>) -> Response> {
    let (body_read, ended) = (Mutex::new(body_read), Mutex::new(ended));
    Streaming(move |_req: &mut Request, body: &mut BodyReader<'_>| {
        let mut bytes = Vec::new();
        if body.read_to_end(&mut bytes).is_err() {
            return Response::text(400, "bad body\n");
        }
        let _ = body_read.lock().unwrap().send(bytes.len());
        let outcome = news.wait();
        let _ = ended.lock().unwrap().send(outcome.clone());
        Response::text(200, format!("{outcome:?}"))
    })
}

/// Polls (bounded) until `news` has `count` waiters.
fn until_waiting(news: &Broadcast<u64>, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    while news.waiting() != count {
        assert!(Instant::now() < deadline, "{count} waiter(s) never came");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Serves one connection with a handler made by `make` on a coroutine of a runtime of
/// its own thread; the thread ends when the coroutine does.
fn serve_on_a_coroutine<M: MakeHandler>(make: M) -> (UnixStream, JoinHandle<()>)
where
    M::Handler: Send + 'static,
{
    let (client, server) = UnixStream::pair().unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let handler = make.make_handler();
    let runner = thread::spawn(move || {
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        runtime
            .spawn(move || {
                let _ = http_util::serve(handler, server);
            })
            .unwrap();
        runtime.run().unwrap();
    });
    (client, runner)
}

const READ_THEN_WAIT: &[u8] = b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn a_streaming_wait_ends_when_the_client_leaves_on_a_thread() {
    let news = Broadcast::new();
    let (read_tx, body_read) = mpsc::channel();
    let (ended_tx, ended) = mpsc::channel();
    let mut client = start(Http::new(read_then_wait(news.clone(), read_tx, ended_tx)));
    client.send(READ_THEN_WAIT);
    assert_eq!(body_read.recv_timeout(PATIENCE), Ok(5));
    until_waiting(&news, 1);
    client.writer.shutdown(Shutdown::Both).unwrap();
    let outcome = ended.recv_timeout(PATIENCE).expect("the wait ended");
    assert_eq!(outcome, Err(WaitError::ClientGone));
    assert_eq!(news.waiting(), 0);
    // The server's thread returns: nothing holds it any more.
    client.join().unwrap();
}

#[test]
fn a_streaming_wait_ends_when_the_client_leaves_on_a_coroutine() {
    let news = Broadcast::new();
    let (read_tx, body_read) = mpsc::channel();
    let (ended_tx, ended) = mpsc::channel();
    let app = Http::new(read_then_wait(news.clone(), read_tx, ended_tx));
    let (mut client, runner) = serve_on_a_coroutine(app);
    client.write_all(READ_THEN_WAIT).unwrap();
    assert_eq!(body_read.recv_timeout(PATIENCE), Ok(5));
    until_waiting(&news, 1);
    drop(client);
    let outcome = ended.recv_timeout(PATIENCE).expect("the wait ended");
    assert_eq!(outcome, Err(WaitError::ClientGone));
    assert_eq!(news.waiting(), 0);
    // The runtime's thread returns once its only coroutine is done.
    runner.join().unwrap();
}

/// A handler that waits before reading its body: the body bytes waiting in the socket
/// are no hang-up, on a thread or a coroutine; the notify releases it and it reads on.
#[test]
fn unread_body_bytes_are_no_hang_up_for_a_streaming_wait() {
    let wait_then_read = |news: Broadcast<u64>| {
        Http::new(Streaming(
            move |_req: &mut Request, body: &mut BodyReader<'_>| {
                let outcome = news.wait();
                let mut bytes = Vec::new();
                let read = body.read_to_end(&mut bytes).map_err(|e| e.kind());
                Response::text(200, format!("{outcome:?} {read:?}"))
            },
        ))
    };
    let request = READ_THEN_WAIT;
    let expected = "Ok(7) Ok(5)";

    let news = Broadcast::new();
    let mut client = start(wait_then_read(news.clone()));
    client.send(request);
    until_waiting(&news, 1);
    assert_eq!(news.send(7), Ok(1));
    assert_eq!(client.response().text(), expected);
    client.join().unwrap();

    let news = Broadcast::new();
    let (mut client, runner) = serve_on_a_coroutine(wait_then_read(news.clone()));
    client.write_all(request).unwrap();
    until_waiting(&news, 1);
    assert_eq!(news.send(7), Ok(1));
    let answer = http_util::read_answer(&mut std::io::BufReader::new(&client), false);
    assert_eq!(answer.text(), expected);
    drop(client);
    runner.join().unwrap();
}

#[test]
fn a_streaming_scgi_wait_ends_when_the_front_end_drops_the_request() {
    let news = Broadcast::new();
    let (read_tx, body_read) = mpsc::channel();
    let (ended_tx, ended) = mpsc::channel();
    let mut client = start(Scgi::new(read_then_wait(news.clone(), read_tx, ended_tx)));
    let block = "CONTENT_LENGTH\x005\0SCGI\x001\0REQUEST_METHOD\0POST\0";
    client.send(format!("{}:{block},hello", block.len()).as_bytes());
    assert_eq!(body_read.recv_timeout(PATIENCE), Ok(5));
    until_waiting(&news, 1);
    client.writer.shutdown(Shutdown::Both).unwrap();
    let outcome = ended.recv_timeout(PATIENCE).expect("the wait ended");
    assert_eq!(outcome, Err(WaitError::ClientGone));
    client.join().unwrap();
}
