//! Shared objects named for the live status: [`watch_broadcast`] and [`watch_channel`]
//! put a `Broadcast`'s waiters or a `Channel`'s queue into every snapshot. The list is
//! per process; register before the server starts, so forked workers inherit it (a
//! forked process reads the figures from the hub, like any use of the object).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::sync::{Broadcast, Channel, Wire};

/// One named shared object, as a snapshot reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectFigures {
    /// The name it was registered under.
    pub name: String,
    /// `"broadcast"` or `"channel"`.
    pub kind: &'static str,
    /// Handlers waiting on it now (a `Broadcast`'s `waiting()`; 0 for a `Channel`).
    pub waiting: u64,
    /// Values queued in it now (a `Channel`'s `len()`; 0 for a `Broadcast`).
    pub queued: u64,
}

/// Reads one object's figures (shared, so a snapshot calls it without the list's lock).
type Reader = Arc<dyn Fn() -> ObjectFigures + Send + Sync>;

static WATCHED: Mutex<Vec<Reader>> = Mutex::new(Vec::new());

fn watched() -> MutexGuard<'static, Vec<Reader>> {
    WATCHED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reports `broadcast`'s waiters under `name` in every live-status snapshot.
pub fn watch_broadcast<T: Wire + Clone + Send + 'static>(
    name: impl Into<String>,
    broadcast: &Broadcast<T>,
) {
    let (name, broadcast) = (name.into(), broadcast.clone());
    watched().push(Arc::new(move || ObjectFigures {
        name: name.clone(),
        kind: "broadcast",
        waiting: broadcast.waiting() as u64,
        queued: 0,
    }));
}

/// Reports `channel`'s queue length under `name` in every live-status snapshot.
pub fn watch_channel<T: Wire + Clone + Send + 'static>(
    name: impl Into<String>,
    channel: &Channel<T>,
) {
    let (name, channel) = (name.into(), channel.clone());
    watched().push(Arc::new(move || ObjectFigures {
        name: name.clone(),
        kind: "channel",
        waiting: 0,
        queued: channel.len() as u64,
    }));
}

/// The figures of every watched object, read now. The readers run after the list's
/// lock is given back: one may wait (a hub call from a worker, a Redis call), and on a
/// coroutine a second snapshot of the same loop thread blocking on the lock would
/// keep the first from ever resuming.
pub(crate) fn read_all() -> Vec<ObjectFigures> {
    let readers: Vec<Reader> = watched().iter().map(Arc::clone).collect();
    readers.iter().map(|read| read()).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::{ObjectFigures, read_all, watched};
    use crate::rt::{Runtime, RuntimeConfig};

    /// Two snapshots on one coroutine loop, with a reader that parks (as a hub or Redis
    /// call does): the second does not block the thread on the list's lock while the
    /// first is parked holding it, which deadlocked the loop.
    #[test]
    fn a_reader_that_parks_does_not_hold_the_other_snapshots() {
        watched().push(Arc::new(|| {
            crate::rt::sleep(Duration::from_millis(20));
            ObjectFigures {
                name: String::from("parks"),
                kind: "channel",
                waiting: 0,
                queued: 0,
            }
        }));
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
            for _ in 0..2 {
                runtime.spawn(|| drop(read_all())).unwrap();
            }
            runtime.run().unwrap();
            let _ = done.send(());
        });
        let ended = finished.recv_timeout(Duration::from_secs(20));
        assert!(ended.is_ok(), "two snapshots on one loop deadlocked");
    }
}
