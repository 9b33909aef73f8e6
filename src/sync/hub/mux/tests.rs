//! The multiplexer against a real hub on its own thread: many waits of one loop share
//! one connection, and a broken connection fails every one of them.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::rt::{self, Runtime, RuntimeConfig};
use crate::sync::hub::client::{self, TEST_HUB};
use crate::sync::hub::peer::Trust;
use crate::sync::hub::protocol::op;
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
            hub.register(poll.registry(), 1).expect("register");
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
    assert_eq!(results.len(), WAITS);
    assert!(
        results.iter().all(Result::is_err),
        "a wait survived its broken connection: {results:?}"
    );
}
