//! The hub under load at its bounds, driven by the test loop of `tests.rs`: a retry
//! that meets its first try, the master's room for connections and idle ones, the
//! connections taken per turn, a reply found on a later read, a release past a
//! connection's output cap, and a value whose `decode` or `encode` panics.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::protocol::{op, status};
use super::tests::{Rig, encoded, request};
use crate::sync::{Broadcast, Channel};

/// A retry that arrives while the first try is still being served (here both copies
/// come in one read, as after a stall of the hub) is not sent again either: each copy
/// gets the one reply.
#[test]
fn a_retry_arriving_with_its_first_try_is_not_sent_twice() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<u64> = Channel::new();
    let mut sender = rig.connect();
    let mut twice = request(op::CHANNEL_SEND, jobs.hub_id(), 44, &encoded(9));
    twice.extend_from_slice(&twice.clone());
    sender.write_all(&twice).unwrap();
    let replies = rig.replies(&mut sender, 2);
    assert!(
        replies
            .iter()
            .all(|&(status, id, _)| (status, id) == (status::OK, 44))
    );
    assert_eq!(jobs.len(), 1);
}

/// The hub holds no more connections than the master has room for (an idle one makes
/// way for a new one), and closes the ones nothing is open on (a thread that called
/// once and never again), so their fds come back; a connection with a wait pending
/// stays.
#[test]
fn connections_are_bounded_by_the_masters_room_and_idle_ones_close() {
    let mut rig = Rig::trusting_self();
    rig.hub.set_room(20);
    rig.hub.set_per_worker_limit(100);
    let news: Broadcast<u64> = Broadcast::new();
    let jobs: Channel<u64> = Channel::new();
    let _waiter = rig.remote_wait(&news, 1);
    let mut callers: Vec<UnixStream> = (0..25).map(|_| rig.connect()).collect();
    rig.until("the room full", |rig| rig.hub.peer_count() == 20);
    for _ in 0..20 {
        rig.turn();
    }
    assert_eq!(rig.hub.peer_count(), 20, "no connection past the room");
    let mut answered = 0;
    for (id, caller) in callers.iter_mut().enumerate() {
        let call = request(op::CHANNEL_LEN, jobs.hub_id(), id as u64, &[]);
        if caller.write_all(&call).is_ok() && rig.reply(caller).is_some() {
            answered += 1;
        }
    }
    assert_eq!(answered, 19, "those admitted beside the waiter answer");
    // Used and idle now, they make way for new connections (the quietest first),
    // which are answered; a fresh one, whose first call may be unread, never does.
    for id in 100..103 {
        let mut late = rig.connect();
        let call = request(op::CHANNEL_LEN, jobs.hub_id(), id, &[]);
        late.write_all(&call).unwrap();
        assert_eq!(
            rig.reply(&mut late).map(|r| r.0),
            Some(status::OK),
            "call {id}"
        );
        callers.push(late);
    }
    assert_eq!(rig.hub.peer_count(), 20);
    rig.hub.set_peer_idle(Duration::ZERO);
    rig.until("the idle ones closed", |rig| rig.hub.peer_count() == 1);
    assert_eq!(news.waiting(), 1, "the waiter's connection stays");
}

/// Connections that keep coming are taken a bounded number per turn: any local process
/// can connect to the abstract name, and the master's loop has workers to reap and
/// signals to read between two batches. Those left in the backlog are taken on the
/// next turns, without a new event.
#[test]
fn the_hub_accepts_a_bounded_number_of_connections_per_turn() {
    let mut rig = Rig::trusting_self();
    rig.hub.set_per_worker_limit(1000);
    let callers: Vec<UnixStream> = (0..300).map(|_| rig.connect()).collect();
    rig.turn();
    let first = rig.hub.peer_count();
    assert!(
        (1..300).contains(&first),
        "one turn took {first} of 300 connections"
    );
    rig.until("every connection taken", |rig| rig.hub.peer_count() == 300);
    drop(callers);
}

/// A retried send answered from the log on a later turn's read (its connection used
/// its read budget) is written then, though no writable edge comes.
#[test]
fn a_logged_reply_found_on_a_later_read_is_written() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<u64> = Channel::new();
    let mut sender = rig.connect();
    let send = request(op::CHANNEL_SEND, jobs.hub_id(), 45, &encoded(9));
    sender.write_all(&send).unwrap();
    assert_eq!(rig.reply(&mut sender).map(|r| r.0), Some(status::OK));
    // Acknowledgements of nothing (no reply) fill more than one read (64 KiB); the
    // retry comes after them, in the next turn's read.
    let mut input = Vec::new();
    while input.len() < 64 * 1024 + 100 {
        input.extend_from_slice(&request(op::CHANNEL_ACK, jobs.hub_id(), 1, &[]));
    }
    input.extend_from_slice(&send);
    sender.write_all(&input).unwrap();
    assert_eq!(rig.reply(&mut sender).map(|r| r.0), Some(status::OK));
    assert_eq!(jobs.len(), 1);
}

/// A release that sends one connection more than its output cap (a large value to many
/// waits on one scheduled worker) answers the waits past the cap with an error, and the
/// connection stays: closing it made the worker wait again on a fresh one and miss the
/// release, silently.
#[test]
fn a_release_past_a_connections_output_cap_answers_every_wait() {
    let mut rig = Rig::trusting_self();
    let news: Broadcast<String> = Broadcast::new();
    let mut waiter = rig.connect();
    rig.until("the connection", |rig| rig.hub.peer_count() == 1);
    rig.hub.set_output_cap(256 * 1024);
    for id in 1..=40 {
        waiter
            .write_all(&request(op::BROADCAST_WAIT, news.hub_id(), id, &[]))
            .unwrap();
    }
    rig.until("forty waits", |_| news.waiting() == 40);
    // 40 × 64 KiB: more than the socket's buffer and the cap together.
    news.send("x".repeat(64 * 1024)).unwrap();
    let replies = rig.replies(&mut waiter, 40);
    let ok = replies.iter().filter(|r| r.0 == status::OK).count();
    let failed = replies.iter().filter(|r| r.0 == status::ERROR).count();
    assert!(
        ok > 0 && failed > 0 && ok + failed == 40,
        "{ok} ok, {failed} failed"
    );
    assert_eq!(rig.hub.peer_count(), 1, "the connection stays");
}

/// A value type whose `decode` panics on bytes it did not expect (it indexes before
/// checking the length).
#[derive(Clone, Debug)]
struct Careless(u32);

impl crate::sync::Wire for Careless {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, crate::sync::WireError> {
        Ok(Careless(u32::from_le_bytes(bytes[..4].try_into().unwrap())))
    }
}

/// A worker's bytes that make the application's `decode` panic are answered with an
/// error, and the master's loop goes on serving: the panic does not unwind out of it.
#[test]
fn a_decode_that_panics_on_a_workers_bytes_is_answered_as_an_error() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<Careless> = Channel::new();
    let news: Broadcast<Careless> = Broadcast::new();
    let mut worker = rig.connect();
    for (call, object) in [
        (op::CHANNEL_SEND, jobs.hub_id()),
        (op::BROADCAST_SEND, news.hub_id()),
    ] {
        worker.write_all(&request(call, object, 1, &[7])).unwrap();
        let (status, why) = rig.reply(&mut worker).expect("an answer");
        assert_eq!(status, status::ERROR, "{}", String::from_utf8_lossy(&why));
    }
    let good = request(op::CHANNEL_SEND, jobs.hub_id(), 2, &7u32.to_le_bytes());
    worker.write_all(&good).unwrap();
    assert_eq!(rig.reply(&mut worker).map(|r| r.0), Some(status::OK));
    assert_eq!(jobs.len(), 1);
}

/// A value type whose `encode` panics for 13.
#[derive(Clone, Debug)]
struct Unlucky(u32);

impl crate::sync::Wire for Unlucky {
    fn encode(&self, out: &mut Vec<u8>) {
        assert_ne!(self.0, 13, "unlucky");
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, crate::sync::WireError> {
        let bytes = bytes
            .try_into()
            .map_err(|_| crate::sync::WireError::new("not 4 bytes"))?;
        Ok(Unlucky(u32::from_le_bytes(bytes)))
    }
}

/// A send whose value's `encode` panics as the master releases a worker's wait with
/// it: the send and the wait are answered with an error, and the master's loop goes on
/// (the panic used to unwind out of it, taking the whole server down).
#[test]
fn an_encode_that_panics_in_the_masters_loop_fails_only_that_send() {
    let mut rig = Rig::trusting_self();
    let news: Broadcast<Unlucky> = Broadcast::new();
    let mut waiter = rig.connect();
    let wait = request(op::BROADCAST_WAIT, news.hub_id(), 1, &[]);
    waiter.write_all(&wait).unwrap();
    rig.until("the remote wait", |_| news.waiting() == 1);
    let mut sender = rig.connect();
    let unlucky = request(op::BROADCAST_SEND, news.hub_id(), 1, &13u32.to_le_bytes());
    sender.write_all(&unlucky).unwrap();
    assert_eq!(rig.reply(&mut sender).map(|r| r.0), Some(status::ERROR));
    assert_eq!(rig.reply(&mut waiter).map(|r| r.0), Some(status::ERROR));
    let wait = request(op::BROADCAST_WAIT, news.hub_id(), 2, &[]);
    waiter.write_all(&wait).unwrap();
    rig.until("the next wait", |_| news.waiting() == 1);
    let lucky = request(op::BROADCAST_SEND, news.hub_id(), 2, &7u32.to_le_bytes());
    sender.write_all(&lucky).unwrap();
    assert_eq!(rig.reply(&mut sender).map(|r| r.0), Some(status::OK));
    let (status, value) = rig.reply(&mut waiter).expect("the release");
    assert_eq!((status, value), (status::OK, 7u32.to_le_bytes().to_vec()));
}

/// A worker's wait on an object whose last handle the master drops is answered
/// `Closed`, and no longer counts as blocked.
#[test]
fn a_wait_on_an_object_the_master_drops_is_answered_closed() {
    let mut rig = Rig::trusting_self();
    let news: Broadcast<u64> = Broadcast::new();
    let mut waiter = rig.remote_wait(&news, 1);
    assert_eq!(rig.hub.status().blocked_clients(), 1);
    drop(news);
    assert_eq!(rig.reply(&mut waiter).map(|r| r.0), Some(status::CLOSED));
    assert_eq!(rig.hub.status().blocked_clients(), 0);
}

/// Two calls that take a value, with one id, in one read (a broken worker): the
/// connection is closed and both values go back to the channel, none is lost.
#[test]
fn one_id_used_twice_in_one_read_loses_no_value() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<u64> = Channel::new();
    jobs.send(1).unwrap();
    jobs.send(2).unwrap();
    let mut worker = rig.connect();
    let mut twice = request(op::CHANNEL_TRY_RECV, jobs.hub_id(), 5, &[]);
    twice.extend_from_slice(&twice.clone());
    worker.write_all(&twice).unwrap();
    // Until the hub closes the connection (or hands out both values); then the
    // worker goes, acknowledging none.
    let mut closed = || matches!(std::io::Read::read(&mut worker, &mut [0; 64]), Ok(0));
    rig.until("the connection closed", |_| jobs.is_empty() || closed());
    drop(worker);
    rig.until("the hub's side closed", |rig| rig.hub.peer_count() == 0);
    assert_eq!(jobs.len(), 2, "a value was lost");
}
