//! Slow and silent clients against capped servers (separate processes): connections
//! that never send a byte cannot starve the clients queued behind them, because the
//! first head's deadline counts from the connection's establishment, not from when a
//! worker finally takes it.

mod util;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Instant;

use util::{ServerProcess, connect, read_reply};

fn silent_sockets_do_not_starve_probes(args: &[&str]) {
    let mut server = ServerProcess::start("comet", args);
    let silent: Vec<TcpStream> = (0..232).map(|_| connect(server.addr)).collect();
    let started = Instant::now();
    let mut probes: Vec<BufReader<TcpStream>> = (0..100)
        .map(|_| {
            let mut probe = connect(server.addr);
            probe
                .write_all(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                .unwrap();
            BufReader::new(probe)
        })
        .collect();
    // Each probe has the client timeout (20 s, twice the default header deadline) to
    // be answered; before the fix the last ones waited for seven rounds of deadlines.
    for mut probe in probes.drain(..) {
        assert_eq!(read_reply(&mut probe).status, 200, "{args:?}");
        // Closed at once, as a real client does (a server lingers after `close`).
        drop(probe);
    }
    eprintln!(
        "{args:?}: 100 probes behind 232 silent sockets answered in {:?}",
        started.elapsed()
    );
    drop(silent);
    server.stop().expect("server stops");
}

#[test]
fn silent_sockets_do_not_starve_a_capped_threading_server() {
    silent_sockets_do_not_starve_probes(&["--mixin", "threading", "--max-workers", "32"]);
}

#[test]
fn silent_sockets_do_not_starve_a_capped_preforked_server() {
    silent_sockets_do_not_starve_probes(&[
        "--mixin",
        "preforked",
        "--accept",
        "passed",
        "--workers",
        "4",
        "--max-workers",
        "4",
    ]);
}

/// A body sent one byte at a time, each well within the per-read timeout, is cut at the
/// whole-body deadline (`--body-deadline`, 1 s here) with `408`.
fn a_trickled_body_is_cut(args: &[&str]) {
    let mut args = args.to_vec();
    args.extend(["--body-deadline", "1"]);
    let mut server = ServerProcess::start("comet", &args);
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /notify HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..1000 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    let reply = read_reply(&mut BufReader::new(stream));
    assert_eq!(reply.status, 408, "{args:?}");
    trickle.join().unwrap();
    server.stop().expect("server stops");
}

#[test]
fn a_trickled_body_is_cut_at_the_body_deadline() {
    a_trickled_body_is_cut(&["--mixin", "threading"]);
    a_trickled_body_is_cut(&["--mixin", "scheduled"]);
    a_trickled_body_is_cut(&["--mixin", "preforked", "--accept", "locked"]);
}
