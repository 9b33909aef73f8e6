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
