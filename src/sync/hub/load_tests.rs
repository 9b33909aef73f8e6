//! The hub under load, driven in-process as in `tests`: how much one peer may make it
//! hold, read or refuse — big notifies, floods, and the room left for a notify.

use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixStream;

use super::protocol::{self, op, status};
use super::tests::{Rig, encoded, request};
use crate::sync::wire::Wire;
use crate::sync::{Broadcast, Channel};

#[test]
fn calls_past_the_cap_of_one_connection_get_a_clear_error() {
    let mut rig = Rig::trusting_self();
    rig.hub.set_max_outstanding(3);
    let news: Broadcast<u64> = Broadcast::new();
    let mut worker = rig.connect();
    for id in 1..=4 {
        worker
            .write_all(&request(op::BROADCAST_WAIT, news.hub_id(), id, &[]))
            .unwrap();
    }
    let refused = rig.replies(&mut worker, 1);
    assert_eq!(refused[0].0, status::ERROR);
    assert_eq!(refused[0].1, 4);
    let why = String::from_utf8_lossy(&refused[0].2).into_owned();
    assert!(why.contains("at most 3"), "{why}");
    // The connection stays: the three waits are still served.
    assert_eq!(news.waiting(), 3);
    assert_eq!(news.send(1), Ok(3));
    assert_eq!(rig.replies(&mut worker, 3).len(), 3);
}

#[test]
fn a_value_too_large_for_a_reply_frame_is_refused_not_sent() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<String> = Channel::new();
    // Sent inside the master, where the hub's limit does not apply: 4 bytes short of a
    // frame, so with the reply's head it would not fit in one.
    jobs.send("x".repeat(protocol::MAX_FRAME - 4)).unwrap();
    let mut worker = rig.connect();
    worker
        .write_all(&request(op::CHANNEL_RECV, jobs.hub_id(), 1, &[]))
        .unwrap();
    let (status, why) = rig
        .reply(&mut worker)
        .expect("an answer on a connection that stays");
    assert_eq!(status, status::ERROR);
    let why = String::from_utf8_lossy(&why).into_owned();
    assert!(why.contains("exceeds the hub's limit"), "{why}");
}

#[test]
fn a_notify_larger_than_the_old_output_cap_reaches_every_wait_of_one_peer() {
    // A scheduled worker's waits share one connection: a notify releases them all at
    // once, so the hub owes that peer one reply per wait together (here 48 MiB).
    let mut rig = Rig::trusting_self();
    let news: Broadcast<Vec<u8>> = Broadcast::new();
    let mut worker = rig.connect();
    for id in 1..=4 {
        worker
            .write_all(&request(op::BROADCAST_WAIT, news.hub_id(), id, &[]))
            .unwrap();
    }
    rig.until("four remote waits", |_| news.waiting() == 4);
    let value = vec![7u8; 12 << 20];
    assert_eq!(news.send(value.clone()), Ok(4));
    let mut wire = Vec::new();
    value.encode(&mut wire);
    let replies = rig.replies(&mut worker, 4);
    let mut ids: Vec<u64> = replies.iter().map(|(_, id, _)| *id).collect();
    ids.sort();
    assert_eq!(ids, [1, 2, 3, 4]);
    for (status, id, payload) in replies {
        assert_eq!(status, status::OK, "call {id}");
        assert!(payload == wire, "call {id}: the value differs");
    }
}

#[test]
fn a_worker_that_writes_without_pause_gets_a_bounded_turn() {
    let mut rig = Rig::trusting_self();
    let jobs: Channel<u64> = Channel::new();
    let mut worker = rig.connect();
    rig.until("the connection accepted", |rig| rig.hub.peer_count() == 1);
    // As many sends as the socket holds (about 5,600, some 230 KB), written before the
    // hub reads any: one turn of the hub's loop (two 64 KiB reads here) must not serve
    // them all.
    let send = |id| request(op::CHANNEL_SEND, jobs.hub_id(), id, &encoded(id));
    let frame_len = send(0).len();
    let all: Vec<u8> = (1..=20_000).flat_map(send).collect();
    let mut sent = 0;
    loop {
        match worker.write(&all[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let whole = sent / frame_len;
    rig.turn();
    let served = jobs.len();
    assert!(served > 0, "the hub served nothing");
    assert!(served < whole, "one turn served all {whole} sends");
}

#[test]
fn waits_leave_the_master_connections_for_a_notify() {
    use super::peer::NOTIFY_HEADROOM;
    let mut rig = Rig::trusting_self();
    // Room for two waiting connections besides the headroom kept for notifies.
    rig.hub.set_room(NOTIFY_HEADROOM + 2);
    let news: Broadcast<u64> = Broadcast::new();
    let mut waiters: Vec<UnixStream> = (0..2).map(|_| rig.connect()).collect();
    for (id, waiter) in waiters.iter_mut().enumerate() {
        waiter
            .write_all(&request(op::BROADCAST_WAIT, news.hub_id(), id as u64, &[]))
            .unwrap();
    }
    rig.until("two remote waits", |_| news.waiting() == 2);
    let mut third = rig.connect();
    third
        .write_all(&request(op::BROADCAST_WAIT, news.hub_id(), 9, &[]))
        .unwrap();
    let (code, why) = rig.reply(&mut third).expect("an answer");
    assert_eq!(code, status::NO_WORKER, "{}", String::from_utf8_lossy(&why));
    // A notify still connects, and releases the two.
    let mut notifier = rig.connect();
    notifier
        .write_all(&request(op::BROADCAST_SEND, news.hub_id(), 10, &encoded(5)))
        .unwrap();
    assert_eq!(
        rig.reply(&mut notifier).map(|(code, _)| code),
        Some(status::OK)
    );
    for waiter in &mut waiters {
        assert_eq!(rig.reply(waiter), Some((status::OK, encoded(5))));
    }
}

#[test]
fn the_workers_control_sockets_come_out_of_the_hub_room() {
    use super::peer::NOTIFY_HEADROOM;
    let mut rig = Rig::trusting_self();
    rig.hub.set_room(1000);
    rig.hub.reserve_for_workers(100);
    assert_eq!(rig.hub.room(), 900, "a control socket per worker slot");
    rig.hub.reserve_for_workers(usize::MAX);
    assert_eq!(
        rig.hub.room(),
        2 * NOTIFY_HEADROOM,
        "never below the headroom itself"
    );
}
