//! The coroutine runtime through its public API: spawning, timers, parking and waking
//! across threads, panics, caps, stop and drop (sockets: `rt_io.rs`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mixserve::rt::{self, IoSource, Runtime, RuntimeConfig, SpawnError};

mod rt_util;

use rt_util::{checked, run, runtime};

#[test]
fn wakers_and_handles_cross_threads() {
    fn send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    send_sync::<rt::Waker>();
    send_sync::<rt::RuntimeHandle>();
}

#[test]
fn plain_thread_has_no_coroutine() {
    assert!(!rt::in_coroutine());
    assert!(rt::current_waker().is_none());
    assert_eq!(rt::coroutine_count(), 0);
    assert!(matches!(rt::spawn(|| {}), Err(SpawnError::NoRuntime)));
    assert!(IoSource::new(0).is_err());
    rt::park(Some(Instant::now()));
    rt::sleep(Duration::from_millis(1));
}

#[test]
fn spawns_many_coroutines_that_spawn_more() {
    let mut runtime = runtime();
    let done = Rc::new(Cell::new(0));
    let inner = Rc::clone(&done);
    runtime
        .spawn(checked(move || {
            assert!(rt::in_coroutine());
            for _ in 0..5_000 {
                let done = Rc::clone(&inner);
                rt::spawn(checked(move || {
                    rt::yield_now();
                    done.set(done.get() + 1);
                }))
                .unwrap();
            }
            assert!(rt::coroutine_count() > 1);
        }))
        .unwrap();
    assert_eq!(runtime.coroutine_count(), 1);
    run(&mut runtime);
    assert_eq!(done.get(), 5_000);
    assert_eq!(runtime.coroutine_count(), 0);
}

#[test]
fn sleepers_wake_in_deadline_order() {
    let mut runtime = runtime();
    let order = Rc::new(RefCell::new(Vec::new()));
    for ms in [60u64, 20, 40, 0, 10] {
        let order = Rc::clone(&order);
        runtime
            .spawn(checked(move || {
                let start = Instant::now();
                rt::sleep(Duration::from_millis(ms));
                assert!(start.elapsed() >= Duration::from_millis(ms));
                order.borrow_mut().push(ms);
            }))
            .unwrap();
    }
    run(&mut runtime);
    assert_eq!(*order.borrow(), vec![0, 10, 20, 40, 60]);
}

#[test]
fn park_times_out_and_wake_before_park_is_kept() {
    let mut runtime = runtime();
    let checks = Rc::new(Cell::new(0));
    let inner = Rc::clone(&checks);
    runtime
        .spawn(checked(move || {
            let start = Instant::now();
            rt::park(Some(start + Duration::from_millis(20)));
            assert!(start.elapsed() >= Duration::from_millis(20));
            inner.set(inner.get() + 1);

            // A wake before the park: the park returns at once. (The deadline only turns a
            // lost permit into a failure instead of a hang.)
            rt::current_waker().unwrap().wake();
            let deadline = Instant::now() + Duration::from_secs(10);
            rt::park(Some(deadline));
            assert!(Instant::now() < deadline, "permit was lost");
            inner.set(inner.get() + 1);
        }))
        .unwrap();
    run(&mut runtime);
    assert_eq!(checks.get(), 2);
}

#[test]
fn wake_from_another_thread() {
    let mut runtime = runtime();
    let (to_thread, from_coroutine) = mpsc::channel();
    let woken = Rc::new(Cell::new(false));
    let inner = Rc::clone(&woken);
    runtime
        .spawn(checked(move || {
            to_thread.send(rt::current_waker().unwrap()).unwrap();
            // Spurious returns are allowed: a generous deadline tells a lost wake apart.
            let deadline = Instant::now() + Duration::from_secs(10);
            rt::park(Some(deadline));
            assert!(
                Instant::now() < deadline,
                "wake from another thread was lost"
            );
            inner.set(true);
        }))
        .unwrap();
    let waker_thread = thread::spawn(move || {
        let waker = from_coroutine.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        waker.wake();
        waker
    });
    run(&mut runtime);
    assert!(woken.get());
    // Waking a finished coroutine is harmless.
    waker_thread.join().unwrap().wake();
}

#[test]
fn remote_wake_before_park_is_kept() {
    let mut runtime = runtime();
    let (to_thread, from_coroutine) = mpsc::channel();
    let (woke_tx, woke_rx) = mpsc::channel::<()>();
    runtime
        .spawn(checked(move || {
            to_thread.send(rt::current_waker().unwrap()).unwrap();
            // Busy on the loop's thread (without parking) until the other thread has woken us.
            while woke_rx.try_recv().is_err() {
                rt::yield_now();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            rt::park(Some(deadline));
            assert!(
                Instant::now() < deadline,
                "permit from another thread was lost"
            );
        }))
        .unwrap();
    let waker_thread = thread::spawn(move || {
        from_coroutine.recv().unwrap().wake();
        woke_tx.send(()).unwrap();
    });
    run(&mut runtime);
    waker_thread.join().unwrap();
}

#[test]
fn a_stale_waker_does_not_wake_the_next_coroutine_in_its_slot() {
    let mut runtime = runtime();
    let stale = Rc::new(RefCell::new(None));
    let slept = Rc::new(Cell::new(false));
    let (stash, taken) = (Rc::clone(&stale), Rc::clone(&stale));
    let inner_slept = Rc::clone(&slept);
    runtime
        .spawn(checked(move || {
            // A finishes at once; its slot (and stack) are reused by B below.
            rt::spawn(checked(move || {
                *stash.borrow_mut() = rt::current_waker();
            }))
            .unwrap();
            rt::yield_now();
            rt::spawn(checked(move || {
                let start = Instant::now();
                rt::park(Some(start + Duration::from_millis(50)));
                assert!(
                    start.elapsed() >= Duration::from_millis(50),
                    "woken by a stale waker"
                );
                inner_slept.set(true);
            }))
            .unwrap();
            rt::yield_now();
            let waker: rt::Waker = taken.borrow_mut().take().unwrap();
            waker.wake();
            waker.wake();
        }))
        .unwrap();
    run(&mut runtime);
    assert!(slept.get());
}

#[test]
fn a_panicking_coroutine_does_not_stop_the_loop() {
    let mut runtime = runtime();
    let survivors = Rc::new(Cell::new(0));
    for i in 0..10 {
        let survivors = Rc::clone(&survivors);
        runtime
            .spawn(move || {
                rt::sleep(Duration::from_millis(1));
                if i % 2 == 0 {
                    panic!("coroutine {i} panics on purpose");
                }
                rt::sleep(Duration::from_millis(1));
                survivors.set(survivors.get() + 1);
            })
            .unwrap();
    }
    runtime.run().unwrap();
    assert_eq!(survivors.get(), 5);
    assert_eq!(runtime.coroutine_count(), 0);
}

#[test]
fn spawning_past_the_cap_is_an_error_not_a_crash() {
    let config = RuntimeConfig {
        max_coroutines: 3,
        ..RuntimeConfig::default()
    };
    let mut runtime = Runtime::new(config).unwrap();
    for _ in 0..3 {
        runtime
            .spawn(|| rt::sleep(Duration::from_millis(5)))
            .unwrap();
    }
    let error = runtime.spawn(|| {}).unwrap_err();
    assert!(
        matches!(error, SpawnError::AtCapacity { max: 3 }),
        "{error}"
    );
    run(&mut runtime);
    // Finished coroutines give their stacks back.
    runtime
        .spawn(checked(|| {
            rt::spawn(|| {}).unwrap();
            rt::spawn(|| {}).unwrap();
            assert!(matches!(
                rt::spawn(|| {}),
                Err(SpawnError::AtCapacity { .. })
            ));
        }))
        .unwrap();
    run(&mut runtime);
}

#[test]
fn stop_from_another_thread_and_drop_unwinds_parked_coroutines() {
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    let mut runtime = runtime();
    let dropped = Rc::new(Cell::new(false));
    let flag = Flag(Rc::clone(&dropped));
    runtime
        .spawn(checked(move || {
            let _flag = flag;
            rt::park(None);
            unreachable!("nobody wakes this coroutine");
        }))
        .unwrap();
    let handle = runtime.handle();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        handle.stop();
    });
    run(&mut runtime);
    stopper.join().unwrap();
    assert_eq!(runtime.coroutine_count(), 1);
    assert!(!dropped.get());
    drop(runtime);
    assert!(
        dropped.get(),
        "the suspended coroutine's stack was not unwound"
    );
}

#[test]
fn nested_run_is_refused() {
    let mut outer = runtime();
    outer
        .spawn(checked(|| {
            let mut inner = Runtime::new(RuntimeConfig::default()).unwrap();
            inner.spawn(|| {}).unwrap();
            assert!(inner.run().is_err());
        }))
        .unwrap();
    run(&mut outer);
}

/// Dropping a runtime tears its coroutines down on the thread's stack; done by a
/// coroutine of another runtime, it leaves that coroutine a coroutine of its own loop.
#[test]
fn a_runtime_dropped_on_another_runtimes_coroutine_leaves_it_as_it_was() {
    struct Mark(Rc<Cell<bool>>);
    impl Drop for Mark {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    // The inner runtime stops with a coroutine suspended in a long sleep.
    let mut inner = runtime();
    let unwound = Rc::new(Cell::new(false));
    let mark = Mark(Rc::clone(&unwound));
    inner
        .spawn(move || {
            let _mark = mark;
            rt::sleep(Duration::from_secs(600));
        })
        .unwrap();
    let handle = inner.handle();
    inner.spawn(move || handle.stop()).unwrap();
    inner.run().unwrap();
    assert!(!unwound.get(), "the sleeper is suspended, not finished");

    let seen = Rc::new(Cell::new(None));
    let report = Rc::clone(&seen);
    let mut outer = runtime();
    outer
        .spawn(checked(move || {
            drop(inner);
            let after_drop = rt::in_coroutine();
            rt::sleep(Duration::from_millis(1)); // parks on, and comes back from, its loop
            report.set(Some((after_drop, rt::in_coroutine())));
        }))
        .unwrap();
    run(&mut outer);
    assert!(
        unwound.get(),
        "the inner sleeper was unwound with its runtime"
    );
    assert_eq!(
        seen.get(),
        Some((true, true)),
        "(after the drop, after a park)"
    );
}
