//! Who drives a bridge, per model.
//!
//! - **Hosted**: a process-based model's master serves its hub from one mio loop; the
//!   hub hands that loop's events and turns to every bridge of the process
//!   ([`host`], [`on_event`], [`pump`], [`next_deadline`]). The master never starts a
//!   thread, and its children close the inherited Redis sockets (a plain `close`, no
//!   `shutdown`, which would cut the master's connection too).
//! - **Thread**: anywhere else (thread and coroutine models) the first use starts one
//!   helper thread per bridge running its own mio loop; callers — threads or
//!   coroutines — park until a reply wakes them (a coroutine through the runtime's
//!   cross-thread waker), so a scheduler's loop thread never blocks on Redis.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token};

use crate::sync::lock;
use crate::sync::redis::bridge::{self, Shared};
use crate::sync::redis::turn;

/// The helper thread's wake-up token.
const WAKE: Token = Token(0);

/// How a bridge is driven now.
#[derive(Debug, Default)]
pub(crate) enum Driver {
    /// Not yet: the first use decides.
    #[default]
    None,
    /// By the loop of this process's hub.
    Hosted,
    /// By a helper thread.
    Thread(Helper),
}

/// A bridge's helper thread.
#[derive(Debug)]
pub(crate) struct Helper {
    waker: Arc<mio::Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Every bridge of this process.
static BRIDGES: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Adds a bridge (or returns the live one for the same URL and settings).
pub(crate) fn bridge_for(config: crate::sync::redis::config::Config) -> Arc<Shared> {
    let mut bridges = lock(&BRIDGES);
    bridges.retain(|weak| weak.strong_count() > 0);
    let same = bridges.iter().filter_map(Weak::upgrade).find(|shared| {
        let c = &shared.config;
        (&c.url, c.timeout, c.count_deadline, c.lease)
            == (
                &config.url,
                config.timeout,
                config.count_deadline,
                config.lease,
            )
    });
    if let Some(shared) = same {
        return shared;
    }
    let shared = Shared::new(config);
    bridges.push(Arc::downgrade(&shared));
    shared
}

fn live() -> Vec<Arc<Shared>> {
    lock(&BRIDGES).iter().filter_map(Weak::upgrade).collect()
}

fn hosted() -> Vec<Arc<Shared>> {
    live()
        .into_iter()
        .filter(|shared| matches!(*lock(&shared.driver), Driver::Hosted))
        .collect()
}

/// Work for the bridge was queued: make sure someone will do it.
pub(crate) fn kick(shared: &Arc<Shared>) {
    let mut driver = lock(&shared.driver);
    match &*driver {
        Driver::Hosted => {}
        Driver::Thread(helper) => {
            let _ = helper.waker.wake();
        }
        Driver::None => match spawn(shared) {
            Ok(helper) => *driver = Driver::Thread(helper),
            Err(e) => log::error!("redis: cannot start the helper thread: {e}"),
        },
    }
}

/// Wakes the driver if there is one (a new object needs no thread by itself).
pub(crate) fn wake(shared: &Arc<Shared>) {
    if let Driver::Thread(helper) = &*lock(&shared.driver) {
        let _ = helper.waker.wake();
    }
}

/// The hub's loop takes over every bridge not driven yet (process-based models).
pub(crate) fn host(registry: &Registry) {
    for shared in live() {
        let mut driver = lock(&shared.driver);
        if matches!(*driver, Driver::None) {
            *driver = Driver::Hosted;
            drop(driver);
            turn::pump(&shared, registry);
        }
    }
}

/// The hub's loop is ending: its bridges close their sockets and wait for a driver.
pub(crate) fn unhost(registry: Option<&Registry>) {
    for shared in hosted() {
        bridge::stop(&shared, registry);
        *lock(&shared.driver) = Driver::None;
    }
}

/// True if `token` is one of a bridge's sockets.
pub(crate) fn owns(token: Token) -> bool {
    token.0 >= bridge::TOKEN_BASE && hosted().iter().any(|s| bridge::owns(s, token))
}

/// A readiness event for a bridge socket of the hosting loop.
pub(crate) fn on_event(registry: &Registry, token: Token) {
    for shared in hosted() {
        if bridge::owns(&shared, token) {
            bridge::on_event(&shared, registry, token);
            turn::pump(&shared, registry);
        }
    }
}

/// One turn of the hosting loop: writes, timers, reconnects.
pub(crate) fn pump(registry: &Registry) {
    for shared in hosted() {
        turn::pump(&shared, registry);
    }
}

/// When the hosting loop must turn next.
pub(crate) fn next_deadline() -> Option<Instant> {
    hosted().iter().filter_map(|s| turn::next_deadline(s)).min()
}

/// In a forked child: the master's Redis sockets were closed by the fork hook; forget
/// them, and drive nothing here. A `Redis::connect` in the child makes a bridge of its
/// own (its own node id), never the master's.
pub(crate) fn after_fork_in_child() {
    for shared in live() {
        bridge::abandon(&shared);
        *lock(&shared.driver) = Driver::None;
    }
    lock(&BRIDGES).clear();
}

fn spawn(shared: &Arc<Shared>) -> std::io::Result<Helper> {
    let poll = Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE)?);
    let stop = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(shared);
    let thread = std::thread::Builder::new()
        .name("mixserve-redis".into())
        .spawn({
            let stop = Arc::clone(&stop);
            move || run(poll, &weak, &stop)
        })?;
    Ok(Helper {
        waker,
        stop,
        thread: Some(thread),
    })
}

/// The helper thread's loop; ends when the bridge is dropped.
fn run(mut poll: Poll, weak: &Weak<Shared>, stop: &AtomicBool) {
    let mut events = Events::with_capacity(64);
    while !stop.load(Ordering::SeqCst) {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        turn::pump(&shared, poll.registry());
        let timeout = turn::next_deadline(&shared)
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        drop(shared);
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("redis helper: poll: {e}");
                return;
            }
        }
        let Some(shared) = weak.upgrade() else {
            return;
        };
        for event in events.iter() {
            if event.token() != WAKE {
                bridge::on_event(&shared, poll.registry(), event.token());
            }
        }
    }
    if let Some(shared) = weak.upgrade() {
        bridge::stop(&shared, Some(poll.registry()));
    }
}

impl Drop for Helper {
    /// Stops the thread and joins it (unless the last reference died on it).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}
