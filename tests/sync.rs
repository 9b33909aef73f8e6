//! Shared objects between plain threads (processes are covered by the model tests).

use std::thread;
use std::time::{Duration, Instant};

use mixserve::sync::{Broadcast, Channel, TryRecvError, WaitError};

fn until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "condition never came true");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn broadcast_releases_every_current_waiter_with_the_count() {
    let news: Broadcast<usize> = Broadcast::new();
    let waiters: Vec<_> = (0..16)
        .map(|_| {
            let news = news.clone();
            thread::spawn(move || news.wait())
        })
        .collect();
    until(|| news.waiting() == 16);
    assert_eq!(news.send_count(), Ok(16));
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), Ok(16));
    }
    assert_eq!(news.waiting(), 0);
    assert_eq!(news.send(5), Ok(0), "nobody waits now");
}

#[test]
fn broadcast_wait_times_out_and_leaves_the_list() {
    let news: Broadcast<String> = Broadcast::new();
    assert_eq!(
        news.wait_timeout(Duration::from_millis(20)),
        Err(WaitError::TimedOut)
    );
    assert_eq!(news.waiting(), 0);
}

/// `Duration::MAX` means "no limit", not an overflow.
#[test]
fn waits_with_the_largest_timeout_wait_and_return() {
    let news: Broadcast<u32> = Broadcast::new();
    let jobs: Channel<u32> = Channel::new();
    let waiter = {
        let news = news.clone();
        thread::spawn(move || news.wait_timeout(Duration::MAX))
    };
    let receiver = {
        let jobs = jobs.clone();
        thread::spawn(move || jobs.recv_timeout(Duration::MAX))
    };
    until(|| news.waiting() == 1);
    assert_eq!(news.send(7), Ok(1));
    jobs.send(8).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(7));
    assert_eq!(receiver.join().unwrap(), Ok(8));
}

#[test]
fn channel_hands_each_value_to_one_receiver_in_order() {
    let jobs: Channel<u64> = Channel::new();
    for n in 0..3 {
        jobs.send(n).unwrap();
    }
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        (jobs.recv(), jobs.recv(), jobs.recv()),
        (Ok(0), Ok(1), Ok(2))
    );
    assert_eq!(jobs.try_recv(), Err(TryRecvError::Empty));

    let receivers: Vec<_> = (0..4)
        .map(|_| {
            let jobs = jobs.clone();
            thread::spawn(move || jobs.recv())
        })
        .collect();
    for n in 10..14 {
        jobs.send(n).unwrap();
    }
    let mut got: Vec<u64> = receivers
        .into_iter()
        .map(|r| r.join().unwrap().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, vec![10, 11, 12, 13]);
    assert!(jobs.is_empty());
}

#[test]
fn channel_recv_timeout() {
    let jobs: Channel<Vec<u8>> = Channel::new();
    assert_eq!(
        jobs.recv_timeout(Duration::from_millis(20)),
        Err(WaitError::TimedOut)
    );
    jobs.send(b"late".to_vec()).unwrap();
    assert_eq!(
        jobs.recv_timeout(Duration::from_secs(5)),
        Ok(b"late".to_vec())
    );
}

/// A waiter watching a connection (`Conn::watch`), on a thread.
fn watched_wait_on_a_thread(
    news: &Broadcast<usize>,
) -> (
    std::os::unix::net::UnixStream,
    thread::JoinHandle<Result<usize, WaitError>>,
) {
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    let conn = mixserve::Conn::from_unix(server).unwrap();
    let news = news.clone();
    let waiter = thread::spawn(move || conn.watch(|| news.wait()));
    (client, waiter)
}

#[test]
fn a_watched_wait_ends_when_the_client_leaves() {
    let news: Broadcast<usize> = Broadcast::new();
    let (client, waiter) = watched_wait_on_a_thread(&news);
    until(|| news.waiting() == 1);
    drop(client);
    assert_eq!(waiter.join().unwrap(), Err(WaitError::ClientGone));
    assert_eq!(news.waiting(), 0);
    assert_eq!(news.send_count(), Ok(0));
}

#[test]
fn a_watched_wait_ignores_bytes_the_client_sends_and_takes_the_value() {
    use std::io::Write;
    let news: Broadcast<usize> = Broadcast::new();
    let (mut client, waiter) = watched_wait_on_a_thread(&news);
    until(|| news.waiting() == 1);
    client.write_all(b"GET /next HTTP/1.1\r\n\r\n").unwrap();
    thread::sleep(Duration::from_millis(50));
    assert_eq!(news.waiting(), 1, "pipelined bytes are no hang-up");
    assert_eq!(news.send_count(), Ok(1));
    assert_eq!(waiter.join().unwrap(), Ok(1));
}

#[test]
fn a_watched_channel_recv_on_a_coroutine_ends_when_the_client_leaves() {
    use mixserve::rt::{Runtime, RuntimeConfig};
    let jobs: Channel<u64> = Channel::new();
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    let outcome = std::sync::Arc::new(std::sync::Mutex::new(None));
    let runner = {
        let (jobs, outcome) = (jobs.clone(), std::sync::Arc::clone(&outcome));
        thread::spawn(move || {
            let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
            runtime
                .spawn(move || {
                    let conn = mixserve::Conn::from_unix(server).unwrap();
                    let got = conn.watch(|| jobs.recv());
                    *outcome.lock().unwrap() = Some(got);
                })
                .unwrap();
            runtime.run().unwrap();
        })
    };
    // No waiter count on a channel: give the coroutine time to block, then leave.
    thread::sleep(Duration::from_millis(100));
    drop(client);
    runner.join().unwrap();
    assert_eq!(*outcome.lock().unwrap(), Some(Err(WaitError::ClientGone)));
    jobs.send(5).unwrap();
    assert_eq!(jobs.try_recv(), Ok(5), "the receiver left its list");
}

/// A receiver whose coroutine is unwound while it waits (its runtime dropped) leaves
/// the channel's list: the next value is queued, not handed to nobody.
#[test]
fn a_receiver_unwound_while_waiting_leaves_its_channel() {
    use mixserve::rt::{Runtime, RuntimeConfig};
    let jobs: Channel<u64> = Channel::new();
    let news: Broadcast<u64> = Broadcast::new();
    {
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let (receiver, waiter) = (jobs.clone(), news.clone());
        runtime.spawn(move || drop(receiver.recv())).unwrap();
        runtime.spawn(move || drop(waiter.wait())).unwrap();
        let handle = runtime.handle();
        // Spawned last, runs last: both others are parked by then.
        runtime.spawn(move || handle.stop()).unwrap();
        runtime.run().unwrap();
        assert_eq!(news.waiting(), 1);
    }
    assert_eq!(news.waiting(), 0, "the unwound waiter left");
    jobs.send(7).unwrap();
    assert_eq!(jobs.try_recv(), Ok(7), "the value was handed to nobody");
}

/// A value whose `Clone` panics part-way through a send: the waiters it had not reached
/// are answered with an error, not left waiting for ever.
#[test]
fn a_send_whose_copy_panics_answers_every_waiter() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COPIES: AtomicUsize = AtomicUsize::new(0);

    #[derive(Debug, PartialEq)]
    struct Brittle(u32);
    impl Clone for Brittle {
        fn clone(&self) -> Brittle {
            assert!(COPIES.fetch_add(1, Ordering::SeqCst) < 1, "a brittle copy");
            Brittle(self.0)
        }
    }
    impl mixserve::sync::Wire for Brittle {
        fn encode(&self, out: &mut Vec<u8>) {
            self.0.encode(out);
        }
        fn decode(bytes: &[u8]) -> Result<Self, mixserve::sync::WireError> {
            u32::decode(bytes).map(Brittle)
        }
    }

    let news: Broadcast<Brittle> = Broadcast::new();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let news = news.clone();
            // Bounded, so a stranded waiter fails the test instead of hanging it.
            thread::spawn(move || news.wait_timeout(Duration::from_secs(30)))
        })
        .collect();
    while news.waiting() < 3 {
        thread::sleep(Duration::from_millis(5));
    }
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| news.send(Brittle(7))));
    assert!(sent.is_err(), "the second copy panics");
    let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        !results.contains(&Err(WaitError::TimedOut)),
        "a waiter was left waiting: {results:?}"
    );
    assert_eq!(news.waiting(), 0);
}
