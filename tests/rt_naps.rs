//! A loop that runs dry naps before it blocks (`RuntimeConfig::idle_nap`): whether it
//! naps, blocks at once, or naps long, no wake is lost — from a socket, from another
//! thread, from a timer — and a nap longer than the bound is refused.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mixserve::rt::{self, Interest, IoSource, Runtime, RuntimeConfig};

/// Blocking at once, the default naps, and the longest naps allowed.
fn configs() -> Vec<RuntimeConfig> {
    let with = |nap, naps| RuntimeConfig {
        idle_nap: nap,
        idle_naps: naps,
        ..RuntimeConfig::default()
    };
    vec![
        with(Duration::ZERO, 3),
        RuntimeConfig::default(),
        with(RuntimeConfig::MAX_IDLE_NAP, 5),
    ]
}

/// Generous: it only tells a lost wake (the coroutine would wait the whole time) apart.
const LOST: Duration = Duration::from_secs(10);

#[test]
fn no_wake_is_lost_whether_the_loop_naps_or_blocks() {
    for config in configs() {
        let label = format!("nap {:?} x {}", config.idle_nap, config.idle_naps);
        let mut runtime = Runtime::new(config).expect("runtime");
        let (mine, theirs) = UnixStream::pair().unwrap();
        mine.set_nonblocking(true).unwrap();
        let (to_thread, from_coroutine) = mpsc::channel();
        let done = Rc::new(Cell::new(0));
        let (read_done, park_done, sleep_done) = (done.clone(), done.clone(), done.clone());
        runtime
            .spawn(move || {
                let source = IoSource::new(mine.as_raw_fd()).unwrap();
                let mut byte = [0u8; 1];
                let deadline = Instant::now() + LOST;
                loop {
                    match (&mine).read(&mut byte) {
                        Ok(1) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if source.wait(Interest::Readable, Some(deadline)).is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
                read_done.set(read_done.get() + 1);
            })
            .unwrap();
        runtime
            .spawn(move || {
                to_thread.send(rt::current_waker().unwrap()).unwrap();
                let deadline = Instant::now() + LOST;
                rt::park(Some(deadline));
                if Instant::now() < deadline {
                    park_done.set(park_done.get() + 1);
                }
            })
            .unwrap();
        runtime
            .spawn(move || {
                rt::sleep(Duration::from_millis(5));
                sleep_done.set(sleep_done.get() + 1);
            })
            .unwrap();
        // The loop has run dry (and napped or blocked) long before these arrive.
        let other = thread::spawn(move || {
            let waker = from_coroutine.recv().unwrap();
            thread::sleep(Duration::from_millis(30));
            waker.wake();
            thread::sleep(Duration::from_millis(30));
            (&theirs).write_all(b"x").unwrap();
            theirs
        });
        runtime.run().expect("run");
        drop(other.join().unwrap());
        assert_eq!(done.get(), 3, "{label}: a wake was lost");
    }
}

#[test]
fn a_nap_over_the_bound_is_refused() {
    let config = RuntimeConfig {
        idle_nap: RuntimeConfig::MAX_IDLE_NAP + Duration::from_micros(1),
        ..RuntimeConfig::default()
    };
    let error = Runtime::new(config)
        .err()
        .expect("a nap over the bound was accepted");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("idle_nap"), "{error}");
}
