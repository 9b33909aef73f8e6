//! Micro-benchmarks of the coroutine runtime: switch cost, spawn cost, and the CPU split
//! of waking 10,000 coroutines parked on sockets.
//!
//! Run with `cargo bench --bench rt` (optionally `-- 20000` for another waiter count).

use std::cell::Cell;
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mixserve::rt::{self, Interest, IoSource, Runtime, RuntimeConfig};

/// User and system CPU time of the whole process so far.
fn cpu_times() -> (Duration, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the valid pointer it is given.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let duration = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (duration(usage.ru_utime), duration(usage.ru_stime))
}

/// Wall, user and system time of `f`.
fn measure(f: impl FnOnce()) -> (Duration, Duration, Duration) {
    let (user, system) = cpu_times();
    let start = Instant::now();
    f();
    let wall = start.elapsed();
    let (user_after, system_after) = cpu_times();
    (wall, user_after - user, system_after - system)
}

/// Room for `max` coroutines, all of whose stacks are kept on exit (so the measured
/// phases do not include `munmap`s).
fn config(max: usize) -> RuntimeConfig {
    RuntimeConfig {
        max_coroutines: max,
        max_idle_stacks: max,
        ..RuntimeConfig::default()
    }
}

fn switch_cost() {
    const ROUNDS: u32 = 1_000_000;
    let mut runtime = Runtime::new(config(2)).unwrap();
    for _ in 0..2 {
        runtime
            .spawn(|| {
                for _ in 0..ROUNDS {
                    rt::yield_now();
                }
            })
            .unwrap();
    }
    let (wall, ..) = measure(|| runtime.run().unwrap());
    let per = wall / (2 * ROUNDS);
    println!("yield_now (suspend + queue + resume): {per:?} per switch");
}

fn spawn_cost() {
    const BATCH: usize = 1_000;
    const BATCHES: usize = 100;
    let mut runtime = Runtime::new(config(BATCH + 1)).unwrap();
    // Warm the stack pool.
    for _ in 0..BATCH {
        runtime.spawn(|| {}).unwrap();
    }
    runtime.run().unwrap();
    let (wall, ..) = measure(|| {
        for _ in 0..BATCHES {
            for _ in 0..BATCH {
                runtime.spawn(|| {}).unwrap();
            }
            runtime.run().unwrap();
        }
    });
    println!(
        "spawn + run + finish on a pooled stack: {:?} per coroutine",
        wall / (BATCH * BATCHES) as u32
    );
}

fn wake_parked_on_sockets(n: usize) {
    let mut runtime = Runtime::new(config(n + 1)).unwrap();
    let mut addresses = Vec::with_capacity(n);
    let released = Rc::new(Cell::new(0));
    for _ in 0..n {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        addresses.push(socket.local_addr().unwrap());
        let released = Rc::clone(&released);
        runtime
            .spawn(move || {
                let source = IoSource::new(socket.as_raw_fd()).unwrap();
                let mut buf = [0u8; 16];
                loop {
                    match socket.recv(&mut buf) {
                        Ok(_) => break,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            source.wait(Interest::Readable, None).unwrap()
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                released.set(released.get() + 1);
                drop(source);
            })
            .unwrap();
    }
    let started = Rc::new(Cell::new(None));
    let start_mark = Rc::clone(&started);
    runtime
        .spawn(move || {
            // Everyone has parked by the time this runs (spawned last, FIFO queue).
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            sender.set_nonblocking(true).unwrap();
            start_mark.set(Some((Instant::now(), cpu_times())));
            for address in &addresses {
                while let Err(e) = sender.send_to(b"x", address) {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                    rt::yield_now();
                }
            }
        })
        .unwrap();
    runtime.run().unwrap();
    let (start, (user, system)) = started.get().unwrap();
    let wall = start.elapsed();
    let (user_after, system_after) = cpu_times();
    assert_eq!(released.get(), n);
    println!(
        "{n} coroutines parked on UDP sockets, all released: wall {wall:?}, user {:?}, sys {:?}",
        user_after - user,
        system_after - system
    );
}

fn wake_parked_from_another_thread(n: usize) {
    let mut runtime = Runtime::new(config(n + 1)).unwrap();
    let (waker_tx, waker_rx) = mpsc::channel();
    for _ in 0..n {
        let waker_tx = waker_tx.clone();
        runtime
            .spawn(move || {
                waker_tx.send(rt::current_waker().unwrap()).unwrap();
                drop(waker_tx);
                rt::park(None);
            })
            .unwrap();
    }
    drop(waker_tx);
    let waker_thread = thread::spawn(move || {
        let wakers: Vec<rt::Waker> = waker_rx.iter().collect();
        // Let every coroutine park.
        thread::sleep(Duration::from_millis(50));
        let start = (Instant::now(), cpu_times());
        for waker in &wakers {
            waker.wake();
        }
        start
    });
    runtime.run().unwrap();
    let (start, (user, system)) = waker_thread.join().unwrap();
    let wall = start.elapsed();
    let (user_after, system_after) = cpu_times();
    println!(
        "{n} coroutines parked, woken by Waker from another thread: wall {wall:?}, \
         user {:?}, sys {:?} (both threads)",
        user_after - user,
        system_after - system
    );
}

fn main() {
    let n = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(10_000);
    switch_cost();
    spawn_cost();
    wake_parked_on_sockets(n);
    wake_parked_from_another_thread(n);
}
