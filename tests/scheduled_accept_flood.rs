//! A connect flood against a `scheduled` server at its connection cap: each refused
//! connection costs an accept and a close, and the backlog refills as fast as it is
//! taken. The accept coroutine must still let the loop serve the connections it has.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mixserve::{Conn, Scheduled, Server, handler::from_fn};

/// Answers each line in capitals.
fn shout(conn: &mut Conn) -> io::Result<()> {
    let mut line = String::new();
    while conn.read_line(&mut line)? > 0 {
        conn.write_all(line.to_uppercase().as_bytes())?;
        conn.flush()?;
        line.clear();
    }
    Ok(())
}

/// The accept coroutine used to take connections for as long as the backlog refilled,
/// holding the loop for hundreds of milliseconds at a time (seen: 177-595 ms stalls,
/// the established client's round trip up to 603 ms). It now lets the others run
/// after every 64, so no coroutine holds the loop past the stall threshold.
#[test]
fn a_connect_flood_does_not_starve_established_connections() {
    let (tx, rx) = mpsc::channel();
    let serving = thread::spawn(move || {
        let model = Scheduled::new()
            .max_connections(8)
            .stall_threshold(Some(Duration::from_millis(150)));
        let mut server = Server::builder(model)
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .shutdown_timeout(Duration::from_millis(200))
            .backlog(4096)
            .build(|| from_fn(shout))
            .unwrap();
        tx.send((server.local_addr().unwrap(), server.shutdown_handle()))
            .unwrap();
        server.serve_forever().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    let client = TcpStream::connect(addr).unwrap();
    client.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    let mut line = String::new();
    writer.write_all(b"first\n").unwrap();
    reader.read_line(&mut line).unwrap();
    let stalls_before = mixserve::rt::stall_count();
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = TcpStream::connect(addr);
                }
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let sent = Instant::now();
        line.clear();
        writer.write_all(b"ping\n").unwrap();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "PING\n");
        worst = worst.max(sent.elapsed());
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    flooders.into_iter().for_each(|f| f.join().unwrap());
    let stalls = mixserve::rt::stall_count() - stalls_before;
    drop((reader, writer));
    handle.shutdown();
    serving.join().unwrap();
    assert_eq!(
        stalls, 0,
        "a coroutine held the loop past 150 ms {stalls} time(s); worst round trip {worst:?}"
    );
}
