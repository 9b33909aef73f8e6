//! The hub server driven in-process by a test loop, with raw sockets as workers: what
//! a hostile or dying peer can and cannot do to the others.

use std::io::{ErrorKind, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::peer::Trust;
use super::protocol::{self, NO_TIMEOUT, Request, op, status};
use super::server::HubServer;
use crate::sync::wire::Wire;
use crate::sync::{Broadcast, Channel, ServerScope, TryRecvError};

/// Held while a rig's hub registers, since registering hosts every Redis bridge of
/// the process not driven yet (a master's loop drives them all). The test harness runs
/// tests in parallel in one process: a test that makes a bridge holds this until its
/// bridge has a driver, or another test's rig, turned only while that test waits,
/// would take the bridge over, and its requests would get no answer in time.
pub(super) static HOSTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) struct Rig {
    pub(super) hub: HubServer,
    poll: Poll,
    events: Events,
}

impl Rig {
    pub(super) fn new(trust: Trust) -> Rig {
        let scope = ServerScope::new(Arc::new(crate::conn::Drain::new()));
        scope.set_max_blocked(Some(100));
        let mut hub = HubServer::bind_trusting(scope, trust).unwrap();
        let poll = Poll::new().unwrap();
        let hosting = crate::sync::lock(&HOSTING);
        hub.register(poll.registry(), 1).unwrap();
        drop(hosting);
        Rig {
            hub,
            poll,
            events: Events::with_capacity(64),
        }
    }

    /// Trusts this test process as if it were a worker.
    pub(super) fn trusting_self() -> Rig {
        Rig::new(Trust(|pid, _| pid == std::process::id()))
    }

    pub(super) fn turn(&mut self) {
        self.poll
            .poll(&mut self.events, Some(Duration::from_millis(5)))
            .unwrap();
        for event in self.events.iter() {
            self.hub
                .on_event(self.poll.registry(), event.token(), event);
        }
        self.hub.expire_timeouts(self.poll.registry());
    }

    /// Turns the loop until `done`, failing after a generous deadline.
    pub(super) fn until(&mut self, what: &str, mut done: impl FnMut(&mut Rig) -> bool) {
        let give_up = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(Instant::now() < give_up, "never happened: {what}");
            self.turn();
        }
    }

    pub(super) fn connect(&mut self) -> UnixStream {
        let addr = SocketAddr::from_abstract_name(self.hub.name().as_bytes()).unwrap();
        let stream = UnixStream::connect_addr(&addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        stream
    }

    /// Reads one reply frame from `stream`, turning the loop meanwhile; `None` if the
    /// hub closed the connection.
    pub(super) fn reply(&mut self, stream: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
        let mut input = Vec::new();
        let mut buf = [0u8; 4096];
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(len)) = protocol::complete_frame(&input) {
                let (status, _, payload) = protocol::decode_reply(&input[4..4 + len]).unwrap();
                return Some((status, payload.to_vec()));
            }
            match stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < give_up, "no reply and no close");
                    self.turn();
                }
                Err(_) => return None,
            }
        }
    }
}

impl Rig {
    /// A connection with one wait (call `id`) pending on `news`.
    pub(super) fn remote_wait(&mut self, news: &Broadcast<u64>, id: u64) -> UnixStream {
        let mut waiter = self.connect();
        waiter
            .write_all(&request(op::BROADCAST_WAIT, news.hub_id(), id, &[]))
            .unwrap();
        self.until("the remote wait", |_| news.waiting() == 1);
        waiter
    }

    /// Reads `n` reply frames from `stream` (turning the loop meanwhile), as
    /// `(status, id, payload)` in arrival order.
    pub(super) fn replies(&mut self, stream: &mut UnixStream, n: usize) -> Vec<(u8, u64, Vec<u8>)> {
        let mut input = Vec::new();
        let mut replies = Vec::new();
        let mut buf = [0u8; 4096];
        let give_up = Instant::now() + Duration::from_secs(20);
        while replies.len() < n {
            if let Ok(Some(len)) = protocol::complete_frame(&input) {
                let (status, id, payload) = protocol::decode_reply(&input[4..4 + len]).unwrap();
                replies.push((status, id, payload.to_vec()));
                input.drain(..4 + len);
                continue;
            }
            match stream.read(&mut buf) {
                Ok(0) => panic!("the hub closed the connection"),
                Ok(k) => input.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < give_up, "{} of {n} replies", replies.len());
                    self.turn();
                }
                Err(e) => panic!("reading replies: {e}"),
            }
        }
        replies
    }
}

pub(super) fn request(op: u8, object: u64, id: u64, payload: &[u8]) -> Vec<u8> {
    protocol::encode_request(&Request {
        op,
        object,
        id,
        timeout_ms: NO_TIMEOUT,
        payload,
    })
}

pub(super) fn timed_request(op: u8, object: u64, id: u64, timeout_ms: u64) -> Vec<u8> {
    protocol::encode_request(&Request {
        op,
        object,
        id,
        timeout_ms,
        payload: &[],
    })
}

pub(super) fn encoded(value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    value.encode(&mut bytes);
    bytes
}

#[test]
fn an_untrusted_peer_is_closed_without_an_answer() {
    let mut rig = Rig::new(Trust(|_, _| false));
    let news: Broadcast<u64> = Broadcast::new();
    let mut stranger = rig.connect();
    let _ = stranger.write_all(&request(op::BROADCAST_WAITING, news.hub_id(), 1, &[]));
    assert_eq!(rig.reply(&mut stranger), None);
    assert_eq!(rig.hub.peer_count(), 0);
}

#[test]
fn hostile_frames_close_only_their_peer() {
    let mut rig = Rig::trusting_self();
    let news: Broadcast<u64> = Broadcast::new();
    let mut waiter = rig.remote_wait(&news, 1);
    let hostile: [&[u8]; 4] = [
        &u32::MAX.to_le_bytes(),              // oversized length
        &[3, 0, 0, 0, 1, 2, 3],               // shorter than a request header
        &request(200, news.hub_id(), 2, &[]), // no such operation
        &0u32.to_le_bytes(),                  // empty frame
    ];
    for frame in hostile {
        let mut peer = rig.connect();
        peer.write_all(frame).unwrap();
        assert_eq!(rig.reply(&mut peer), None, "{frame:?} was answered");
    }
    assert_eq!(news.waiting(), 1, "a hostile peer disturbed the waiter");
    assert_eq!(news.send(7), Ok(1));
    assert_eq!(rig.reply(&mut waiter), Some((status::OK, encoded(7))));
}

#[test]
fn connections_per_worker_are_bounded() {
    let mut rig = Rig::trusting_self();
    rig.hub.set_per_worker_limit(2);
    let _first = rig.connect();
    let _second = rig.connect();
    rig.until("two connections", |rig| rig.hub.peer_count() == 2);
    let mut third = rig.connect();
    assert_eq!(rig.reply(&mut third), None);
    assert_eq!(rig.hub.peer_count(), 2);
}

#[test]
fn a_value_never_acknowledged_is_put_back_first_in_line() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<u64> = Channel::new();
    let mut receiver = rig.connect();
    receiver
        .write_all(&request(op::CHANNEL_RECV, jobs.hub_id(), 1, &[]))
        .unwrap();
    rig.until("the remote receiver", |rig| {
        rig.hub.status().blocked_clients() == 1
    });
    jobs.send(5).unwrap();
    jobs.send(6).unwrap();
    assert_eq!(rig.reply(&mut receiver), Some((status::OK, encoded(5))));
    // The receiver dies before acknowledging: 5 comes back ahead of 6.
    drop(receiver);
    rig.until("the receiver's close", |rig| rig.hub.peer_count() == 0);
    assert_eq!(jobs.try_recv(), Ok(5));
    assert_eq!(jobs.try_recv(), Ok(6));

    // An acknowledged value is gone for good, even if the connection closes next.
    jobs.send(8).unwrap();
    let mut receiver = rig.connect();
    receiver
        .write_all(&request(op::CHANNEL_TRY_RECV, jobs.hub_id(), 2, &[]))
        .unwrap();
    assert_eq!(rig.reply(&mut receiver), Some((status::OK, encoded(8))));
    receiver
        .write_all(&request(op::CHANNEL_ACK, jobs.hub_id(), 2, &[]))
        .unwrap();
    drop(receiver);
    rig.until("the receiver's close", |rig| rig.hub.peer_count() == 0);
    assert_eq!(jobs.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn a_retried_send_is_not_sent_twice() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<u64> = Channel::new();
    for _ in 0..2 {
        let mut sender = rig.connect();
        sender
            .write_all(&request(op::CHANNEL_SEND, jobs.hub_id(), 42, &encoded(9)))
            .unwrap();
        assert_eq!(rig.reply(&mut sender).map(|r| r.0), Some(status::OK));
    }
    assert_eq!(jobs.len(), 1);
    let mut sender = rig.connect();
    sender
        .write_all(&request(op::CHANNEL_SEND, jobs.hub_id(), 43, &encoded(9)))
        .unwrap();
    assert_eq!(rig.reply(&mut sender).map(|r| r.0), Some(status::OK));
    assert_eq!(jobs.len(), 2);
}

#[test]
fn accepting_resumes_after_running_out_of_fds() {
    let mut rig = Rig::trusting_self();
    rig.hub.fail_accepts(1);
    let _worker = rig.connect();
    rig.until("the failed accept", |rig| rig.hub.next_deadline().is_some());
    assert_eq!(rig.hub.peer_count(), 0);
    // No new connection comes to raise another event: the hub must try again itself.
    rig.until("the connection accepted on the retry", |rig| {
        rig.hub.peer_count() == 1
    });
}

#[test]
fn many_waits_share_one_connection_and_one_is_cancelled_by_id() {
    let mut rig = Rig::trusting_self();
    let news: Broadcast<u64> = Broadcast::new();
    let mut worker = rig.connect();
    for id in 1..=100 {
        worker
            .write_all(&request(op::BROADCAST_WAIT, news.hub_id(), id, &[]))
            .unwrap();
    }
    rig.until("100 waits on one connection", |_| news.waiting() == 100);
    assert_eq!(rig.hub.peer_count(), 1);
    for id in 1..=10 {
        worker.write_all(&request(op::CANCEL, 0, id, &[])).unwrap();
    }
    rig.until("10 waits cancelled", |rig| {
        news.waiting() == 90 && rig.hub.status().blocked_clients() == 90
    });
    assert_eq!(news.send(7), Ok(90));
    let mut replies = rig.replies(&mut worker, 90);
    replies.sort_by_key(|&(_, id, _)| id);
    let expected: Vec<(u8, u64, Vec<u8>)> =
        (11..=100).map(|id| (status::OK, id, encoded(7))).collect();
    assert_eq!(replies, expected);
    assert_eq!(rig.hub.status().blocked_clients(), 0);
}

#[test]
fn closing_a_connection_withdraws_its_waits_and_puts_unacknowledged_values_back() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<u64> = Channel::new();
    let mut worker = rig.connect();
    for id in 1..=4 {
        worker
            .write_all(&request(op::CHANNEL_RECV, jobs.hub_id(), id, &[]))
            .unwrap();
    }
    rig.until("4 receivers on one connection", |rig| {
        rig.hub.status().blocked_clients() == 4
    });
    jobs.send(40).unwrap();
    jobs.send(41).unwrap();
    let first = rig.replies(&mut worker, 2);
    let value_of = |reply: &(u8, u64, Vec<u8>)| u64::decode(&reply.2).unwrap();
    // One value is acknowledged; the call of the other is withdrawn, which gives its
    // value back to the channel, and so to one of the two receivers still waiting.
    worker
        .write_all(&request(op::CHANNEL_ACK, jobs.hub_id(), first[0].1, &[]))
        .unwrap();
    worker
        .write_all(&request(op::CANCEL, 0, first[1].1, &[]))
        .unwrap();
    let again = rig.replies(&mut worker, 1);
    assert_eq!(value_of(&again[0]), value_of(&first[1]));
    assert_ne!(again[0].1, first[1].1, "handed to the withdrawn call again");
    // The worker dies before acknowledging it: the value comes back once more, and
    // the last wait is withdrawn.
    drop(worker);
    rig.until("the connection closed", |rig| rig.hub.peer_count() == 0);
    assert_eq!(rig.hub.status().blocked_clients(), 0);
    assert_eq!(jobs.try_recv(), Ok(value_of(&first[1])));
    assert_eq!(jobs.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn waits_withdrawn_long_before_their_deadline_leave_no_timer_behind() {
    let mut rig = Rig::trusting_self();
    let news: Broadcast<u64> = Broadcast::new();
    let mut worker = rig.connect();
    let an_hour = 3_600_000;
    for batch in 0..50u64 {
        let mut frames = Vec::new();
        for i in 1..=100 {
            let id = batch * 1000 + i;
            frames.extend(timed_request(
                op::BROADCAST_WAIT,
                news.hub_id(),
                id,
                an_hour,
            ));
            frames.extend(request(op::CANCEL, 0, id, &[]));
        }
        // An untimed wait last: once it is pending, the hub has read the whole batch.
        let marker = batch * 1000 + 999;
        frames.extend(request(op::BROADCAST_WAIT, news.hub_id(), marker, &[]));
        worker.write_all(&frames).unwrap();
        rig.until("the batch read", |_| news.waiting() == 1);
        worker
            .write_all(&request(op::CANCEL, 0, marker, &[]))
            .unwrap();
        rig.until("the marker withdrawn", |_| news.waiting() == 0);
    }
    let held = rig.hub.deadline_entries();
    assert!(held < 1000, "5000 withdrawn waits left {held} timers");
    // A live timed wait keeps its timer through the sweeps, and times out.
    worker
        .write_all(&timed_request(op::BROADCAST_WAIT, news.hub_id(), 1, 50))
        .unwrap();
    for id in 2..=1000 {
        let frames = [
            timed_request(op::BROADCAST_WAIT, news.hub_id(), id, an_hour),
            request(op::CANCEL, 0, id, &[]),
        ]
        .concat();
        worker.write_all(&frames).unwrap();
        rig.turn();
    }
    let timed_out = rig.replies(&mut worker, 1);
    assert_eq!((timed_out[0].0, timed_out[0].1), (status::TIMED_OUT, 1));
}

#[test]
fn a_count_is_sent_only_to_a_broadcast_of_counts() {
    let mut rig = Rig::trusting_self();
    let news: Broadcast<u64> = Broadcast::new();
    let _waiter = rig.remote_wait(&news, 1);
    let mut notifier = rig.connect();
    notifier
        .write_all(&request(op::BROADCAST_SEND_COUNT, news.hub_id(), 2, &[]))
        .unwrap();
    let (code, _) = rig.reply(&mut notifier).expect("an answer");
    assert_eq!(code, status::ERROR);
    assert_eq!(
        news.waiting(),
        1,
        "the waiter was released with a count as its value"
    );
}
