//! Wake-up moderation through the runtime's public API: a loop naps when many peers are
//! all slow to come back, and never when they are few or when the nap is off.
//!
//! Only lower bounds of time are relied on: a peer that sleeps 2 ms before its next
//! byte comes back no sooner than that, whatever the machine's load.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use mixserve::rt::{Interest, IoSource, Runtime, RuntimeConfig};

/// The nap under test, and how long each peer thinks between two rounds: well over
/// ten naps, so every turnaround is slow.
const NAP: Duration = Duration::from_micros(100);
const THINK: Duration = Duration::from_millis(2);

/// Echoes one byte at a time until the peer closes, parking on `WouldBlock`.
fn echo(mut stream: UnixStream) {
    let source = IoSource::new(stream.as_raw_fd()).expect("register");
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return,
            Ok(_) => stream.write_all(&byte).expect("echo"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                source.wait(Interest::Readable, None).expect("wait")
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Runs `peers` echo coroutines against one client thread that sends a byte to every
/// peer, reads every echo, thinks `THINK`, `rounds` times; returns the loop's naps.
fn naps_with(nap: Option<Duration>, peers: usize, rounds: usize) -> u64 {
    let config = RuntimeConfig {
        moderation_nap: nap,
        ..RuntimeConfig::default()
    };
    let mut runtime = Runtime::new(config).expect("runtime");
    let mut clients = Vec::new();
    for _ in 0..peers {
        let (server, client) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        runtime.spawn(move || echo(server)).expect("spawn");
        clients.push(client);
    }
    let client = thread::spawn(move || {
        for _ in 0..rounds {
            for stream in &mut clients {
                stream.write_all(b"x").unwrap();
            }
            for stream in &mut clients {
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).unwrap();
            }
            thread::sleep(THINK);
        }
    });
    runtime.run().expect("run");
    client.join().expect("client");
    runtime.nap_count()
}

#[test]
fn many_slow_peers_make_the_loop_nap() {
    // 100 samples a round, at least one round per 2 ms: a 10 ms window holds well over
    // the 64 samples it needs, and every one is slow.
    let naps = naps_with(Some(NAP), 100, 40);
    assert!(naps > 0, "the loop never napped");
}

#[test]
fn a_few_slow_peers_are_too_quiet_to_nap_for() {
    // 5 samples a round and rounds at least 2 ms apart: a window (10 ms, closed at the
    // first dry run after) sees about 30, under the 64 that make it nap.
    assert_eq!(naps_with(Some(NAP), 5, 40), 0);
}

#[test]
fn no_nap_configured_means_none_taken() {
    assert_eq!(naps_with(None, 100, 20), 0);
}
