//! `Iterative` runs each handler on the loop's thread, which reads no stop while the
//! handler runs: a watcher does. A stop drains the connection in hand, then ends it at
//! the shutdown timeout, as under every other model. It used to wait for as long as a
//! client stayed connected, and Ctrl-C did nothing.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mixserve::handler::from_fn;
use mixserve::http::{Http, Request, Response};
use mixserve::{Conn, Iterative, MakeHandler, Server, ShutdownHandle};

/// Bounds only a failure.
const LONG: Duration = Duration::from_secs(20);

/// Serves `make` under `Iterative` on a thread; its address, its stop, and word of its
/// end.
fn serve(
    make: impl MakeHandler + 'static,
) -> (std::net::SocketAddr, ShutdownHandle, mpsc::Receiver<()>) {
    let (addr, handle, serving) = util::in_thread::serve_on_thread(move || {
        Server::builder(Iterative::new())
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .shutdown_timeout(Duration::from_millis(500))
            .build(make)
            .unwrap()
    });
    let (ended, end) = mpsc::channel();
    thread::spawn(move || {
        if serving.join().is_ok() {
            let _ = ended.send(());
        }
    });
    (addr, handle, end)
}

/// A handler waiting on a client that sends nothing is ended at the shutdown timeout.
#[test]
fn a_stop_ends_a_handler_waiting_on_a_silent_client() {
    let (addr, handle, end) = serve(|| {
        from_fn(|conn: &mut Conn| {
            conn.write_all(b"hello\n")?;
            conn.flush()?;
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).map(drop)
        })
    });
    let mut client = TcpStream::connect(addr).unwrap();
    client.read_exact(&mut [0u8; 6]).unwrap();
    handle.shutdown();
    assert!(
        end.recv_timeout(LONG).is_ok(),
        "still serving the silent client"
    );
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
}

/// A keep-alive client that keeps asking is closed: its next answer says `Connection:
/// close`, or, idle at the moment the drain began, its connection closes.
#[test]
fn a_stop_ends_a_busy_keep_alive_connection() {
    let (addr, handle, end) = serve(Http::new(|_: &mut Request| Response::text(200, "hi\n")));
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    // Whether the connection goes on: false once an answer closes it, or it closed.
    let mut ask = || -> bool {
        if writer
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let (mut closes, mut line) = (false, String::new());
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return false;
            }
            if line == "\r\n" {
                break;
            }
            closes |= line.eq_ignore_ascii_case("connection: close\r\n");
        }
        reader.read_exact(&mut [0u8; 3]).unwrap();
        !closes
    };
    assert!(ask());
    handle.shutdown();
    let mut asked = 0;
    while ask() {
        asked += 1;
        assert!(asked < 100, "100 answers after the stop, none closing");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        end.recv_timeout(LONG).is_ok(),
        "still serving after the close"
    );
}

/// Ctrl-C stops an iterative server whose client stays connected (the `echo` example,
/// a client that said one line and waits).
#[test]
fn ctrl_c_stops_an_iterative_server_with_a_client_connected() {
    let mut server =
        util::ServerProcess::start("echo", &["--mixin", "iterative", "--shutdown-timeout", "1"]);
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer.write_all(b"ping\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(!line.is_empty());
    server.interrupt();
    assert!(
        server.exited_within(LONG).is_some(),
        "Ctrl-C did not stop the server"
    );
}
