//! A `Channel` value received through the multiplexer whose acknowledgement cannot go
//! out in time: the receive fails, so the value must go back to the hub, never be
//! forgotten there by an ack written later.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::rt::{self, Runtime, RuntimeConfig};
use crate::sync::hub::client::{self, TEST_HUB};
use crate::sync::hub::peer::Trust;
use crate::sync::hub::protocol::{op, status};
use crate::sync::hub::server::HubServer;
use crate::sync::wire::Wire;
use crate::sync::{Channel, ServerScope};

/// The hub (on its own thread) pauses while one coroutine's receive gets its value and
/// another's 8 MiB send fills the shared link, so the ack waits behind the send until
/// the exchange timeout (10 s). The ack stayed queued on the link, and the next call
/// on it wrote it: the hub forgot the value the receive had given up, and it was lost.
#[test]
fn an_ack_that_timed_out_is_not_sent_later() {
    super::forget();
    let (jobs, sink): (Channel<u64>, Channel<Vec<u8>>) = (Channel::new(), Channel::new());
    let (jobs_id, sink_id) = (jobs.hub_id(), sink.hub_id());
    let flag = || Arc::new(AtomicBool::new(false));
    let (stop, pause, paused) = (flag(), flag(), flag());
    // Set to 1 by the test for one turn of the paused hub; the hub sets it back to 0.
    let step = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let hub_thread = {
        let (stop, pause, paused, step) =
            (stop.clone(), pause.clone(), paused.clone(), step.clone());
        std::thread::spawn(move || {
            let scope = ServerScope::new(Arc::new(crate::conn::Drain::new()));
            scope.set_max_blocked(Some(1000));
            let trust = Trust(|pid, _| pid == std::process::id());
            let mut hub = HubServer::bind_trusting(scope, trust).unwrap();
            let mut poll = Poll::new().unwrap();
            let hosting = crate::sync::lock(&crate::sync::hub::tests::HOSTING);
            hub.register(poll.registry(), 1).unwrap();
            drop(hosting);
            tx.send((hub.name().to_owned(), hub.status())).unwrap();
            let mut events = Events::with_capacity(64);
            let give_up = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::SeqCst) && Instant::now() < give_up {
                paused.store(pause.load(Ordering::SeqCst), Ordering::SeqCst);
                if pause.load(Ordering::SeqCst) && step.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let _ = poll.poll(&mut events, Some(Duration::from_millis(5)));
                for event in events.iter() {
                    hub.on_event(poll.registry(), event.token(), event);
                }
                hub.expire_timeouts(poll.registry());
                step.store(0, Ordering::SeqCst);
            }
        })
    };
    let (name, status) = rx.recv().unwrap();
    TEST_HUB.with(|hub| *hub.borrow_mut() = Some(name));
    let received = Rc::new(RefCell::new(None));
    let fill_now = Rc::new(Cell::new(false));
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    // A receive whose value arrives while the link's output is full.
    let got = received.clone();
    runtime
        .spawn(move || {
            *got.borrow_mut() = Some(client::call(op::CHANNEL_RECV, jobs_id, None, &[]));
        })
        .unwrap();
    // A large send on the same link.
    let fill = fill_now.clone();
    runtime
        .spawn(move || {
            while !fill.get() {
                rt::sleep(Duration::from_millis(1));
            }
            let mut big = Vec::new();
            vec![7u8; 8 << 20].encode(&mut big);
            let _ = client::call(op::CHANNEL_SEND, sink_id, None, &big);
        })
        .unwrap();
    let (got, sender) = (received.clone(), jobs.clone());
    runtime
        .spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(40);
            while status.blocked_clients() < 1 && Instant::now() < give_up {
                rt::sleep(Duration::from_millis(2));
            }
            pause.store(true, Ordering::SeqCst);
            while !paused.load(Ordering::SeqCst) {
                rt::sleep(Duration::from_millis(1));
            }
            fill_now.set(true);
            rt::sleep(Duration::from_millis(100));
            sender.send(42).unwrap();
            // One turn of the hub: it writes 42 to the receive.
            step.store(1, Ordering::SeqCst);
            while step.load(Ordering::SeqCst) != 0 {
                rt::sleep(Duration::from_millis(1));
            }
            while got.borrow().is_none() && Instant::now() < give_up {
                rt::sleep(Duration::from_millis(20));
            }
            pause.store(false, Ordering::SeqCst);
            // A later call on the link, which would write what it still holds.
            let by = Some(Instant::now() + Duration::from_secs(10));
            let _ = client::call(op::CHANNEL_LEN, jobs_id, by, &[]);
        })
        .unwrap();
    let mut runtime = runtime;
    runtime.run().unwrap();
    // The link closes: a value the hub still holds comes back.
    super::forget();
    TEST_HUB.with(|hub| *hub.borrow_mut() = None);
    let settle = Instant::now() + Duration::from_secs(20);
    let received = received.borrow().clone().unwrap();
    let mut back = jobs.try_recv();
    while back.is_err() && !matches!(received, Ok((status::OK, _))) && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(20));
        back = jobs.try_recv();
    }
    stop.store(true, Ordering::SeqCst);
    hub_thread.join().unwrap();
    assert!(
        matches!(received, Ok((status::OK, _))) || back == Ok(42),
        "value 42 lost: the receive failed ({received:?}) and the channel has {back:?}"
    );
}
