//! `Conn::send_file` and file bodies: byte-exact over a socketpair, on a coroutine, and
//! through real Threading and Scheduled servers (HTTP and SCGI); a peer that leaves
//! mid-transfer is an error, never a crash (SIGPIPE) or a hang.

mod util;

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use mixserve::http::{Http, Request, Response};
use mixserve::rt::{self, Runtime, RuntimeConfig};
use mixserve::scgi::Scgi;
use mixserve::{Conn, Handler, MakeHandler, MixIn, Scheduled, Server, ShutdownHandle, Threading};
use util::{IO_TIMEOUT, connect, read_reply};

/// The size of the test file: well past any socket buffer, so every path waits.
const FILE_SIZE: usize = 5 * 1024 * 1024;

/// A temporary file of `FILE_SIZE` pseudo-random bytes, removed on drop.
struct TestFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TestFile {
    fn new(name: &str) -> TestFile {
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ name.len() as u64;
        let bytes: Vec<u8> = (0..FILE_SIZE)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "mixserve-sendfile-{}-{name}.bin",
            std::process::id()
        ));
        std::fs::write(&path, &bytes).expect("write test file");
        TestFile { path, bytes }
    }

    fn open(&self) -> File {
        File::open(&self.path).expect("open test file")
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A socketpair: the server side as a `Conn`, the client side with timeouts.
fn pair() -> (Conn, UnixStream) {
    let (client, server) = UnixStream::pair().unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    (Conn::from_unix(server).unwrap(), client)
}

/// Reads the client side to the end on another thread, after an optional delay.
fn drain(mut client: UnixStream, delay: Duration) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        thread::sleep(delay);
        let mut received = Vec::new();
        client.read_to_end(&mut received).expect("read to end");
        received
    })
}

/// Whether `O_NONBLOCK` is set on `conn`'s socket.
fn is_nonblocking(conn: &Conn) -> bool {
    let flags = nix::fcntl::fcntl(conn, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::OFlag::from_bits_retain(flags).contains(nix::fcntl::OFlag::O_NONBLOCK)
}

#[test]
fn sends_a_whole_file_after_buffered_output_on_a_thread() {
    let file = TestFile::new("thread");
    let (mut conn, client) = pair();
    let reader = drain(client, Duration::from_millis(50));
    conn.write_all(b"head:").unwrap();
    let sent = conn.send_file(&file.open(), 0, FILE_SIZE as u64).unwrap();
    assert_eq!(sent, FILE_SIZE as u64);
    drop(conn);
    let received = reader.join().unwrap();
    assert_eq!(&received[..5], b"head:");
    assert!(received[5..] == file.bytes[..], "byte-exact");
}

#[test]
fn a_write_timeout_waits_without_blocking_mode_and_restores_it() {
    let file = TestFile::new("timeout");
    let (mut conn, client) = pair();
    conn.set_write_timeout(Some(Duration::from_secs(5)));
    let reader = drain(client, Duration::from_millis(200));
    let sent = conn.send_file(&file.open(), 1000, 3_000_000).unwrap();
    assert_eq!(sent, 3_000_000);
    assert!(!is_nonblocking(&conn), "blocking mode restored");
    drop(conn);
    assert!(reader.join().unwrap() == file.bytes[1000..3_001_000]);
}

#[test]
fn a_short_file_sends_what_there_is() {
    let file = TestFile::new("short");
    let (mut conn, client) = pair();
    let reader = drain(client, Duration::ZERO);
    let sent = conn.send_file(&file.open(), 5_000_000, 1_000_000).unwrap();
    assert_eq!(sent, (FILE_SIZE - 5_000_000) as u64);
    assert_eq!(conn.send_file(&file.open(), 0, 0).unwrap(), 0);
    drop(conn);
    assert!(reader.join().unwrap() == file.bytes[5_000_000..]);
}

#[test]
fn a_write_timeout_fires_when_the_peer_never_reads() {
    let file = TestFile::new("stalled");
    let (mut conn, _client) = pair();
    conn.set_write_timeout(Some(Duration::from_millis(200)));
    let started = Instant::now();
    let error = conn
        .send_file(&file.open(), 0, FILE_SIZE as u64)
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!is_nonblocking(&conn));
}

#[test]
fn on_a_coroutine_the_loop_runs_others_while_the_peer_is_slow() {
    let file = TestFile::new("coroutine");
    let (conn, client) = pair();
    let reader = drain(client, Duration::from_millis(300));
    let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let done = Rc::new(Cell::new(false));
    let ticks = Rc::new(Cell::new(0u32));
    let outcome = Rc::new(Cell::new(None));
    let (sender_done, sender_outcome) = (Rc::clone(&done), Rc::clone(&outcome));
    let opened = file.open();
    runtime
        .spawn(move || {
            let mut conn = conn;
            let sent = conn.send_file(&opened, 0, FILE_SIZE as u64).ok();
            sender_outcome.set(Some((sent, is_nonblocking(&conn))));
            sender_done.set(true);
        })
        .unwrap();
    let (ticker_done, ticker_ticks) = (Rc::clone(&done), Rc::clone(&ticks));
    runtime
        .spawn(move || {
            while !ticker_done.get() {
                ticker_ticks.set(ticker_ticks.get() + 1);
                rt::sleep(Duration::from_millis(10));
            }
        })
        .unwrap();
    runtime.run().unwrap();
    let (sent, left_nonblocking) = outcome.take().expect("the sender ran");
    assert_eq!(sent, Some(FILE_SIZE as u64));
    assert!(!left_nonblocking, "blocking mode restored");
    assert!(ticks.get() >= 10, "the loop stalled: {} ticks", ticks.get());
    assert!(reader.join().unwrap() == file.bytes);
}

#[test]
fn a_peer_that_closes_mid_transfer_is_an_error() {
    for mode in ["blocking", "timeout", "coroutine"] {
        let file = TestFile::new(mode);
        let (mut conn, mut client) = pair();
        let closer = thread::spawn(move || {
            let mut some = vec![0u8; 64 * 1024];
            client.read_exact(&mut some).unwrap();
            drop(client);
        });
        let result = match mode {
            "blocking" => conn.send_file(&file.open(), 0, FILE_SIZE as u64),
            "timeout" => {
                conn.set_write_timeout(Some(IO_TIMEOUT));
                conn.send_file(&file.open(), 0, FILE_SIZE as u64)
            }
            _ => {
                let outcome = Rc::new(Cell::new(None));
                let inner = Rc::clone(&outcome);
                let opened = file.open();
                let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
                runtime
                    .spawn(move || {
                        let mut conn = conn;
                        let result = conn.send_file(&opened, 0, FILE_SIZE as u64);
                        inner.set(Some(result.map_err(|e| e.kind())));
                    })
                    .unwrap();
                runtime.run().unwrap();
                let kind = outcome.take().expect("the coroutine ran");
                kind.map_err(io::Error::from)
            }
        };
        closer.join().unwrap();
        let error = result.expect_err(mode);
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{mode}: {error:?}"
        );
    }
}

/// Re-runs `a_peer_that_closes_mid_transfer_is_an_error` in a child process whose
/// SIGPIPE is back at its default action (kill), as in a host process written in C:
/// the crate must not rely on Rust's `main` ignoring SIGPIPE.
#[test]
fn survives_sigpipe_at_its_default_action() {
    if std::env::var_os("MIXSERVE_SIGPIPE_CHILD").is_some() {
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigpipe_child",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env("MIXSERVE_SIGPIPE_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "child: {status:?}");
}

#[test]
#[ignore = "run by survives_sigpipe_at_its_default_action in a child process"]
fn sigpipe_child() {
    if std::env::var_os("MIXSERVE_SIGPIPE_CHILD").is_none() {
        return;
    }
    let default = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::SigDfl,
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: restoring the default action installs no handler; this process runs
    // this one test only.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGPIPE, &default) }.unwrap();
    a_peer_that_closes_mid_transfer_is_an_error();
}

/// An application that serves the test file at every path.
fn file_app(path: PathBuf) -> impl Fn(&mut Request) -> Response + Send + Sync + 'static {
    move |_req: &mut Request| match File::open(&path)
        .and_then(|f| Response::file(200, "application/octet-stream", f))
    {
        Ok(response) => response,
        Err(error) => Response::text(500, error.to_string()),
    }
}

/// Runs `make` under `model` on another thread; returns the address and a stopper.
fn start<M, H>(model: M, make: H) -> (SocketAddr, ShutdownHandle, thread::JoinHandle<()>)
where
    M: MixIn + Send + 'static,
    H: MakeHandler + Send + 'static,
{
    util::in_thread::serve_on_thread(move || {
        Server::builder(model)
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .shutdown_timeout(Duration::from_millis(500))
            .build(make)
            .unwrap()
    })
}

/// Two pipelined GETs and a HEAD, byte-exact; then a client that leaves mid-body; then
/// one more GET, to show the server is still there.
fn serves_files(addr: SocketAddr, file: &TestFile) {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nHEAD /b HTTP/1.1\r\nHost: t\r\n\r\nGET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_reply(&mut reader);
    assert_eq!(first.status, 200);
    assert!(first.body == file.bytes, "first body byte-exact");
    let mut head = String::new();
    loop {
        let mut line = String::new();
        io::BufRead::read_line(&mut reader, &mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(
        head.contains(&format!("Content-Length: {FILE_SIZE}\r\n")),
        "{head}"
    );
    let third = read_reply(&mut reader);
    assert!(
        third.body == file.bytes,
        "HEAD sent no body; third body byte-exact"
    );

    let mut leaver = connect(addr);
    leaver
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut some = vec![0u8; 100_000];
    leaver.read_exact(&mut some).unwrap();
    leaver.shutdown(Shutdown::Both).unwrap();
    drop(leaver);

    let again = util::get(addr, "/");
    assert!(again.body == file.bytes, "served after a client left");
}

#[test]
fn a_threading_server_sends_file_bodies() {
    let file = TestFile::new("threading");
    let (addr, handle, serving) = start(Threading::new(), Http::new(file_app(file.path.clone())));
    serves_files(addr, &file);
    handle.shutdown();
    serving.join().unwrap();
}

#[test]
fn a_scheduled_server_sends_file_bodies() {
    let file = TestFile::new("scheduled");
    let (addr, handle, serving) = start(Scheduled::new(), Http::new(file_app(file.path.clone())));
    serves_files(addr, &file);
    handle.shutdown();
    serving.join().unwrap();
}

/// One SCGI request over a socketpair; returns everything the server sent.
fn scgi_exchange(path: &Path, method: &str) -> Vec<u8> {
    let variables = format!(
        "CONTENT_LENGTH\x000\x00SCGI\x001\x00REQUEST_METHOD\x00{method}\x00REQUEST_URI\x00/f\x00"
    );
    let (mut conn, mut client) = pair();
    write!(client, "{}:{variables},", variables.len()).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let reader = drain(client, Duration::ZERO);
    let mut handler = Scgi::new(file_app(path.to_path_buf())).make_handler();
    handler.setup(&mut conn).unwrap();
    handler.handle(&mut conn).unwrap();
    drop(conn);
    reader.join().unwrap()
}

#[test]
fn scgi_sends_file_bodies_and_head_has_none() {
    let file = TestFile::new("scgi");
    let expected_head = format!(
        "Status: 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {FILE_SIZE}\r\n\r\n"
    );
    let answer = scgi_exchange(&file.path, "GET");
    let (head, body) = answer.split_at(expected_head.len());
    assert_eq!(String::from_utf8_lossy(head), expected_head);
    assert!(body == file.bytes, "byte-exact");
    assert_eq!(scgi_exchange(&file.path, "HEAD"), expected_head.as_bytes());
}

#[test]
fn only_regular_files_make_file_responses() {
    let error = Response::file(200, "text/plain", File::open("/dev/null").unwrap()).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

/// The write timeout runs between bytes going out, for bytes as for files: a large
/// answer to a client that reads slowly but steadily is not cut off when the whole
/// transfer takes longer than the timeout.
#[test]
fn a_large_write_to_a_slow_live_reader_is_not_cut_off() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    const TOTAL: usize = 4 << 20;
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let mut conn = mixserve::Conn::from_unix(ours).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(1)));
    // About 1.6 MB/s: the whole takes some 2.5 s, no wait more than about 10 ms.
    let reader = std::thread::spawn(move || {
        let mut got = 0;
        let mut chunk = vec![0u8; 16 << 10];
        while got < TOTAL {
            match theirs.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        got
    });
    let sent = conn
        .write_all(&vec![7u8; TOTAL])
        .and_then(|()| conn.flush());
    drop(conn);
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(reader.join().unwrap(), TOTAL);
}
