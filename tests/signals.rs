//! One stop signal reaches every server of a process: two servers serving in two
//! threads both return from `serve_forever` on a single SIGTERM. Its own test binary
//! (one test), since the signal goes to the whole process.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mixserve::handler::from_fn;
use mixserve::{Conn, Server, Threading};

fn echo(conn: &mut Conn) -> io::Result<()> {
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf)?;
    conn.write_all(&buf[..n])
}

/// Whether the server at `addr` echoes (its loop, and so its signal registration, runs).
fn echoes(addr: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut reply = Vec::new();
    stream.write_all(b"hi").is_ok() && stream.read_to_end(&mut reply).is_ok() && reply == b"hi"
}

#[test]
fn one_sigterm_stops_every_server_in_the_process() {
    let (done_tx, done_rx) = mpsc::channel();
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let mut server = Server::builder(Threading::new())
            .bind("127.0.0.1:0")
            .build(|| from_fn(echo))
            .expect("build");
        addrs.push(server.local_addr().expect("address"));
        let done = done_tx.clone();
        thread::spawn(move || done.send(server.serve_forever().map_err(|e| e.to_string())));
    }
    for &addr in &addrs {
        assert!(echoes(addr), "{addr} serves");
    }
    let pid = std::process::id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    for _ in 0..2 {
        let result = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("every server returns from serve_forever after one SIGTERM");
        assert_eq!(result, Ok(()));
    }
}
