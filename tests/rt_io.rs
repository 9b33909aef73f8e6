//! The coroutine runtime's I/O and timers through its public API: echo over sockets,
//! wait deadlines, stale timers, and thousands of coroutines parked on sockets.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mixserve::rt::{self, Interest, IoSource};

mod rt_util;

use rt_util::{checked, nonblocking_pair, read_exact, run, runtime, write_all};

#[test]
fn echo_between_coroutines_over_a_unix_pair() {
    let mut runtime = runtime();
    let (client, server) = nonblocking_pair();
    const ROUNDS: usize = 200;
    // Large enough to fill the socket buffer, so writes park too.
    const SIZE: usize = 256 * 1024;
    runtime
        .spawn(checked(move || {
            let mut server = server;
            let source = IoSource::new(server.as_raw_fd()).unwrap();
            let mut buf = vec![0u8; SIZE];
            for _ in 0..ROUNDS / 50 {
                read_exact(&mut server, &source, &mut buf).unwrap();
                write_all(&mut server, &source, &buf).unwrap();
            }
            let mut small = [0u8; 8];
            for _ in 0..ROUNDS {
                read_exact(&mut server, &source, &mut small).unwrap();
                write_all(&mut server, &source, &small).unwrap();
            }
            drop(source);
        }))
        .unwrap();
    let received = Rc::new(Cell::new(0));
    let inner = Rc::clone(&received);
    runtime
        .spawn(checked(move || {
            let mut client = client;
            let source = IoSource::new(client.as_raw_fd()).unwrap();
            let big: Vec<u8> = (0..SIZE).map(|i| i as u8).collect();
            let mut back = vec![0u8; SIZE];
            for _ in 0..ROUNDS / 50 {
                write_all(&mut client, &source, &big).unwrap();
                read_exact(&mut client, &source, &mut back).unwrap();
                assert_eq!(back, big);
            }
            for round in 0..ROUNDS as u64 {
                write_all(&mut client, &source, &round.to_le_bytes()).unwrap();
                let mut small = [0u8; 8];
                read_exact(&mut client, &source, &mut small).unwrap();
                assert_eq!(u64::from_le_bytes(small), round);
                inner.set(inner.get() + 1);
            }
        }))
        .unwrap();
    run(&mut runtime);
    assert_eq!(received.get(), ROUNDS);
}

#[test]
fn wait_past_deadline_times_out() {
    let mut runtime = runtime();
    let (quiet, _peer) = nonblocking_pair();
    let outcome = Rc::new(RefCell::new(Vec::new()));
    let inner = Rc::clone(&outcome);
    runtime
        .spawn(checked(move || {
            let source = IoSource::new(quiet.as_raw_fd()).unwrap();
            let start = Instant::now();
            let error = source
                .wait(Interest::Readable, Some(start + Duration::from_millis(30)))
                .unwrap_err();
            assert!(start.elapsed() >= Duration::from_millis(30));
            inner.borrow_mut().push(error.kind());
            let error = source
                .wait(Interest::Readable, Some(Instant::now()))
                .unwrap_err();
            inner.borrow_mut().push(error.kind());
        }))
        .unwrap();
    run(&mut runtime);
    assert_eq!(
        *outcome.borrow(),
        vec![io::ErrorKind::TimedOut, io::ErrorKind::TimedOut]
    );
}

#[test]
fn a_timer_left_by_an_earlier_wait_neither_ends_a_later_deadline_early_nor_delays_an_earlier_one() {
    let mut runtime = runtime();
    let (mut ours, mut peer) = nonblocking_pair();
    runtime
        .spawn(checked(move || {
            let source = IoSource::new(ours.as_raw_fd()).unwrap();
            let mut byte = [0u8; 1];
            // Ended by readiness: its timer entry stays in the heap, armed.
            peer.write_all(b"x").unwrap();
            let soon = Instant::now() + Duration::from_millis(200);
            source.wait(Interest::Readable, Some(soon)).unwrap();
            ours.read_exact(&mut byte).unwrap();
            // A later deadline: that entry expires first and must not end this wait.
            let later = Instant::now() + Duration::from_millis(500);
            let error = source.wait(Interest::Readable, Some(later)).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            assert!(Instant::now() >= later, "timed out before its deadline");
            // An earlier deadline than the armed entry's gets an entry of its own.
            peer.write_all(b"y").unwrap();
            let far = Instant::now() + Duration::from_secs(60);
            source.wait(Interest::Readable, Some(far)).unwrap();
            ours.read_exact(&mut byte).unwrap();
            let start = Instant::now();
            let error = source
                .wait(Interest::Readable, Some(start + Duration::from_millis(50)))
                .unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited for the far entry"
            );
        }))
        .unwrap();
    run(&mut runtime);
}

#[test]
fn thousands_parked_on_sockets_are_all_released() {
    const N: usize = 2_500;
    let mut runtime = runtime();
    let parked = Rc::new(Cell::new(0));
    let released = Rc::new(Cell::new(0));
    let mut writers = Vec::with_capacity(N);
    for _ in 0..N {
        let (reader, writer) = nonblocking_pair();
        writers.push(writer);
        let (parked, released) = (Rc::clone(&parked), Rc::clone(&released));
        runtime
            .spawn(checked(move || {
                let mut reader = reader;
                let source = IoSource::new(reader.as_raw_fd()).unwrap();
                let mut byte = [0u8; 1];
                parked.set(parked.get() + 1);
                read_exact(&mut reader, &source, &mut byte).unwrap();
                assert_eq!(byte, [7]);
                released.set(released.get() + 1);
            }))
            .unwrap();
    }
    let (parked_seen, released_seen) = (Rc::clone(&parked), Rc::clone(&released));
    runtime
        .spawn(checked(move || {
            // Give the readers a few loop turns; none can finish before the writes.
            rt::sleep(Duration::from_millis(20));
            assert_eq!(parked_seen.get(), N);
            assert_eq!(released_seen.get(), 0);
            assert_eq!(rt::coroutine_count(), N + 1);
            for writer in &mut writers {
                writer.write_all(&[7]).unwrap();
            }
        }))
        .unwrap();
    run(&mut runtime);
    assert_eq!(released.get(), N);
    assert_eq!(runtime.coroutine_count(), 0);
}
