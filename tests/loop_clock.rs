//! The loop clock (`rt::clock`) is behind the real one by the time the running coroutine
//! has kept the thread. A timeout that starts when a wait starts must still get its
//! whole length after a coroutine kept the thread longer than that timeout (a slow
//! handler): measured from the stale clock, its deadline would be over before the wait
//! began.

mod http_util;

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mixserve::http::{Http, HttpConfig, Request, Response};
use mixserve::rt::{Runtime, RuntimeConfig};
use mixserve::{Conn, MakeHandler};

/// The timeout under test; the coroutine keeps the thread longer than this first.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than `TIMEOUT`.
const SLOW_WORK: Duration = Duration::from_millis(2500);
/// More than a Unix socket buffers, so the writer has to wait for the reader.
const BIG: usize = 4 * 1024 * 1024;
/// How long the peer lets the other side wait before it reads or writes.
const PEER_DELAY: Duration = Duration::from_millis(200);

/// Runs `f` on a coroutine of a fresh runtime (stall detector as configured) after it
/// kept the thread for [`SLOW_WORK`]; `go` is sent between the two. Returns what `f`
/// returned.
fn after_slow_work<T: 'static>(
    stall_threshold: Option<Duration>,
    go: mpsc::Sender<()>,
    f: impl FnOnce() -> T + 'static,
) -> T {
    let mut runtime = Runtime::new(RuntimeConfig {
        stall_threshold,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let out = Rc::new(RefCell::new(None));
    let into = Rc::clone(&out);
    runtime
        .spawn(move || {
            // A handler that blocks the thread (what the stall detector reports).
            thread::sleep(SLOW_WORK);
            go.send(()).unwrap();
            *into.borrow_mut() = Some(f());
        })
        .unwrap();
    runtime.run().unwrap();
    out.take().expect("the coroutine finished")
}

/// A peer that reads everything once told to (after [`PEER_DELAY`]).
fn slow_reader(mut peer: UnixStream, go: mpsc::Receiver<()>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        if go.recv().is_err() {
            return 0;
        }
        thread::sleep(PEER_DELAY);
        let mut all = Vec::new();
        peer.read_to_end(&mut all).unwrap_or(0);
        all.len()
    })
}

fn write_after_slow_work(stall_threshold: Option<Duration>) {
    let (ours, peer) = UnixStream::pair().unwrap();
    let (go, told) = mpsc::channel();
    let reader = slow_reader(peer, told);
    let result = after_slow_work(stall_threshold, go, move || {
        let mut conn = Conn::from_unix(ours).unwrap();
        conn.set_write_timeout(Some(TIMEOUT));
        conn.write_all(&vec![b'x'; BIG]).and_then(|()| conn.flush())
    });
    assert!(result.is_ok(), "the write timed out early: {result:?}");
    assert_eq!(reader.join().unwrap(), BIG);
}

#[test]
fn a_write_timeout_runs_from_the_wait_after_a_slow_handler() {
    write_after_slow_work(Some(Duration::from_millis(100)));
}

#[test]
fn a_write_timeout_runs_from_the_wait_after_a_slow_handler_with_the_stall_detector_off() {
    write_after_slow_work(None);
}

#[test]
fn a_send_file_timeout_runs_from_the_wait_after_a_slow_handler() {
    let path = std::env::temp_dir().join(format!("mixserve-loop-clock-{}", std::process::id()));
    std::fs::write(&path, vec![b'f'; BIG]).unwrap();
    let file = File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (ours, peer) = UnixStream::pair().unwrap();
    let (go, told) = mpsc::channel();
    let reader = slow_reader(peer, told);
    let result = after_slow_work(Some(Duration::from_millis(100)), go, move || {
        let mut conn = Conn::from_unix(ours).unwrap();
        conn.set_write_timeout(Some(TIMEOUT));
        conn.send_file(&file, 0, BIG as u64)
    });
    assert_eq!(result.ok(), Some(BIG as u64), "send_file timed out early");
    assert_eq!(reader.join().unwrap(), BIG);
}

#[test]
fn a_read_timeout_runs_from_the_wait_after_a_slow_handler() {
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let (go, told) = mpsc::channel::<()>();
    let writer = thread::spawn(move || {
        if told.recv().is_ok() {
            thread::sleep(PEER_DELAY);
            peer.write_all(b"late").unwrap();
        }
    });
    let result = after_slow_work(Some(Duration::from_millis(100)), go, move || {
        let mut conn = Conn::from_unix(ours).unwrap();
        conn.set_read_timeout(Some(TIMEOUT));
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).map(|()| got)
    });
    assert_eq!(result.ok(), Some(*b"late"), "the read timed out early");
    writer.join().unwrap();
}

/// A handler that keeps its loop's thread longer than the idle timeout below.
fn slow_echo(req: &mut Request) -> Response {
    thread::sleep(Duration::from_millis(2500));
    http_util::echo(req)
}

/// Serves one connection with `handler` on a coroutine of a fresh runtime (stall
/// detector as configured), on a thread of its own; returns the client's halves.
fn serve_on_loop<H: MakeHandler + Send + 'static>(
    handler: H,
    stall_threshold: Option<Duration>,
) -> (UnixStream, BufReader<UnixStream>, thread::JoinHandle<()>) {
    let (client, server) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let loop_thread = thread::spawn(move || {
        let mut runtime = Runtime::new(RuntimeConfig {
            stall_threshold,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let handler = handler.make_handler();
        runtime
            .spawn(move || drop(http_util::serve(handler, server)))
            .unwrap();
        runtime.run().unwrap();
    });
    let writer = client.try_clone().unwrap();
    (writer, BufReader::new(client), loop_thread)
}

fn idle_timeout_after_a_slow_handler(stall_threshold: Option<Duration>) {
    let mut config = HttpConfig::default();
    config.idle_timeout = Duration::from_secs(2);
    let handler = Http::with_config(slow_echo, config);
    let (mut writer, mut reader, loop_thread) = serve_on_loop(handler, stall_threshold);
    writer
        .write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(http_util::read_answer(&mut reader, false).status, 200);
    // Well inside the idle timeout, counted from the answer; late enough for the loop to
    // have parked the connection (a stale deadline would have ended it by then).
    thread::sleep(Duration::from_millis(200));
    writer
        .write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        http_util::read_answer(&mut reader, false).status,
        200,
        "the connection closed at once: its idle deadline was over before the wait began"
    );
    drop(writer);
    drop(reader);
    loop_thread.join().unwrap();
}

#[test]
fn a_keep_alive_connection_waits_its_idle_timeout_after_a_slow_handler() {
    idle_timeout_after_a_slow_handler(Some(Duration::from_millis(100)));
}

#[test]
fn a_keep_alive_connection_waits_its_idle_timeout_after_a_slow_handler_with_the_stall_detector_off()
{
    idle_timeout_after_a_slow_handler(None);
}

/// The idle timeout the loop arms after the park ends an idle connection (the client
/// would otherwise wait out its 20 s read timeout and fail).
fn idle_connection_closes_on_a_coroutine(stall_threshold: Option<Duration>) {
    let mut config = HttpConfig::default();
    config.idle_timeout = Duration::from_millis(200);
    let handler = Http::with_config(http_util::echo, config);
    let (mut writer, mut reader, loop_thread) = serve_on_loop(handler, stall_threshold);
    for _ in 0..2 {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(http_util::read_answer(&mut reader, false).status, 200);
    }
    let mut rest = Vec::new();
    let end = reader.read_to_end(&mut rest);
    assert!(
        matches!(end, Ok(0)),
        "an idle connection closes without a word: {end:?}, {rest:?}"
    );
    loop_thread.join().unwrap();
}

#[test]
fn an_idle_connection_on_a_coroutine_closes_at_its_idle_timeout() {
    idle_connection_closes_on_a_coroutine(Some(Duration::from_millis(100)));
}

#[test]
fn an_idle_connection_on_a_coroutine_closes_at_its_idle_timeout_with_the_stall_detector_off() {
    idle_connection_closes_on_a_coroutine(None);
}
