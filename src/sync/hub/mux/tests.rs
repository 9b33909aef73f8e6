//! The multiplexer against a real hub on its own thread: many waits of one loop share
//! one connection, and a broken connection fails every one of them. And against a
//! socket the test plays the hub on: calls unwound with their runtime are withdrawn.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::MUX;
use super::link::Link;
use crate::rt::{self, Runtime, RuntimeConfig};
use crate::sync::hub::client::{self, TEST_HUB};
use crate::sync::hub::peer::Trust;
use crate::sync::hub::protocol::{self, NO_TIMEOUT, Request, op, status};
use crate::sync::hub::server::HubServer;
use crate::sync::{Broadcast, ServerScope};

const WAITS: usize = 50;

#[test]
fn fifty_waits_share_one_connection_and_all_fail_when_it_breaks() {
    let news: Broadcast<u64> = Broadcast::new();
    let object = news.hub_id();
    let (stop, peers) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (name_tx, name_rx) = std::sync::mpsc::channel();
    let hub_thread = {
        let (stop, peers) = (Arc::clone(&stop), Arc::clone(&peers));
        std::thread::spawn(move || {
            let scope = ServerScope::new(Arc::new(crate::conn::Drain::new()));
            scope.set_max_blocked(Some(1000));
            let trust = Trust(|pid, _| pid == std::process::id());
            let mut hub = HubServer::bind_trusting(scope, trust).expect("bind");
            let mut poll = Poll::new().expect("poll");
            let hosting = crate::sync::lock(&crate::sync::hub::tests::HOSTING);
            hub.register(poll.registry(), 1).expect("register");
            drop(hosting);
            name_tx.send(hub.name().to_owned()).expect("name");
            let mut events = Events::with_capacity(64);
            let give_up = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < give_up {
                let _ = poll.poll(&mut events, Some(Duration::from_millis(5)));
                for event in events.iter() {
                    hub.on_event(poll.registry(), event.token(), event);
                }
                hub.expire_timeouts(poll.registry());
                peers.store(hub.peer_count(), Ordering::SeqCst);
            }
            // Dropped without answering anyone: every connection breaks.
        })
    };
    let name = name_rx.recv().expect("the hub's name");
    TEST_HUB.with(|hub| *hub.borrow_mut() = Some(name));
    let results = Rc::new(RefCell::new(Vec::new()));
    let mut runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    for _ in 0..WAITS {
        let results = Rc::clone(&results);
        runtime
            .spawn(move || {
                let result = client::call(op::BROADCAST_WAIT, object, None, &[]);
                results.borrow_mut().push(result);
            })
            .expect("spawn");
    }
    let (seen_peers, seen_waiting) = (Rc::new(AtomicUsize::new(0)), Rc::new(AtomicUsize::new(0)));
    {
        let (seen_peers, peers, stop) = (Rc::clone(&seen_peers), Arc::clone(&peers), stop);
        let seen_waiting = Rc::clone(&seen_waiting);
        // A clone: the test holds `news` until the hub is gone, since dropping its
        // last handle would answer the waits (`Closed`) while the hub still runs.
        let news = news.clone();
        runtime
            .spawn(move || {
                let give_up = Instant::now() + Duration::from_secs(30);
                while news.waiting() < WAITS && Instant::now() < give_up {
                    rt::sleep(Duration::from_millis(5));
                }
                // (A panic here would only be logged: the test asserts after the run.)
                seen_waiting.store(news.waiting(), Ordering::SeqCst);
                seen_peers.store(peers.load(Ordering::SeqCst), Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            })
            .expect("spawn");
    }
    runtime.run().expect("run");
    hub_thread.join().expect("hub thread");
    TEST_HUB.with(|hub| *hub.borrow_mut() = None);
    crate::sync::hub::mux::forget();
    assert_eq!(
        seen_peers.load(Ordering::SeqCst),
        1,
        "connections for {WAITS} waits"
    );
    let results = results.borrow();
    drop(news);
    assert_eq!(results.len(), WAITS);
    assert!(
        results.iter().all(Result::is_err),
        "a wait survived its broken connection: {results:?}"
    );
}

fn request(op: u8, id: u64) -> Request<'static> {
    Request {
        op,
        object: 7,
        id,
        timeout_ms: NO_TIMEOUT,
        payload: &[],
    }
}

/// Runs a runtime until `ready` holds on this thread's mux, then drops it with its
/// coroutines suspended, as a program does that stops a loop and drops it.
fn drop_runtime_when(mut runtime: Runtime, ready: fn(&super::Mux) -> bool) {
    let stop = runtime.handle();
    runtime
        .spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(10);
            while !MUX.with(|mux| ready(&mux.borrow())) && Instant::now() < give_up {
                rt::yield_now();
            }
            stop.stop();
        })
        .expect("spawn");
    runtime.run().expect("run");
    assert!(MUX.with(|mux| ready(&mux.borrow())), "never got ready");
    drop(runtime);
}

/// The `(op, id)` of each request frame the hub side can read now.
fn requests_read(hub: &mut UnixStream) -> Vec<(u8, u64)> {
    hub.set_nonblocking(true).unwrap();
    let mut bytes = Vec::new();
    let _ = hub.read_to_end(&mut bytes);
    let mut seen = Vec::new();
    while let Ok(Some(len)) = protocol::complete_frame(&bytes) {
        let request = protocol::decode_request(&bytes[4..4 + len]).expect("a request");
        seen.push((request.op, request.id));
        bytes.drain(..4 + len);
    }
    seen
}

#[test]
fn calls_unwound_with_their_runtime_leave_the_link_to_the_next_one() {
    super::forget();
    let (ours, mut hub) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    MUX.with(|mux| {
        let mut mux = mux.borrow_mut();
        mux.generations = 1;
        mux.link = Some(Link::new(ours.into(), 1));
    });
    // Call 1 becomes the link's driver, call 3 waits behind it; both are unwound.
    let first = Runtime::new(RuntimeConfig::default()).expect("runtime");
    for id in [1, 3] {
        first
            .spawn(move || {
                let _ = super::call(&request(op::BROADCAST_WAIT, id), None);
            })
            .expect("spawn");
    }
    drop_runtime_when(first, |mux| {
        mux.calls.len() == 2 && mux.link.as_ref().is_some_and(|l| l.driver.is_some())
    });
    let mut seen = requests_read(&mut hub);
    seen.sort();
    let (wait, cancel) = (op::BROADCAST_WAIT, op::CANCEL);
    assert_eq!(seen, [(wait, 1), (wait, 3), (cancel, 1), (cancel, 3)]);

    // A later runtime on this thread: its call is the link's driver and gets its reply.
    hub.set_nonblocking(false).unwrap();
    hub.write_all(&protocol::encode_reply(status::OK, 2, b"x"))
        .unwrap();
    let mut second = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let answer = Rc::new(RefCell::new(None));
    let got = Rc::clone(&answer);
    second
        .spawn(move || {
            let by = Instant::now() + Duration::from_secs(10);
            let reply = super::call(&request(op::BROADCAST_WAITING, 2), Some(by));
            *got.borrow_mut() = Some(reply);
        })
        .expect("spawn");
    second.run().expect("run");
    super::forget();
    assert_eq!(*answer.borrow(), Some(Ok((status::OK, b"x".to_vec()))));
}

#[test]
fn a_connect_unwound_with_its_runtime_lets_the_next_runtime_connect() {
    super::forget();
    let name = format!("mixserve-hub-{}-test-mux-backlog", std::process::id());
    let (listener, queued) = client::tests::full_backlog(&name);
    TEST_HUB.with(|hub| *hub.borrow_mut() = Some(name));
    let first = Runtime::new(RuntimeConfig::default()).expect("runtime");
    first
        .spawn(|| {
            let _ = super::call(&request(op::BROADCAST_WAIT, 1), None);
        })
        .expect("spawn");
    drop_runtime_when(first, |mux| mux.connecting);
    let connecting = MUX.with(|mux| mux.borrow().connecting);
    TEST_HUB.with(|hub| *hub.borrow_mut() = None);
    super::forget();
    drop((listener, queued));
    assert!(
        !connecting,
        "a connect nobody makes any more blocks every later call"
    );
}
