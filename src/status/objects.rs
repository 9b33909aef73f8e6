//! Shared objects named for the live status: [`watch_broadcast`] and [`watch_channel`]
//! put a `Broadcast`'s waiters or a `Channel`'s queue into every snapshot. The list is
//! per process; register before the server starts, so forked workers inherit it (a
//! forked process reads the figures from the hub, like any use of the object).

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::sync::{Broadcast, Channel, Wire};

/// One named shared object, as a snapshot reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Reads one object's figures.
type Reader = Box<dyn Fn() -> ObjectFigures + Send>;

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
    watched().push(Box::new(move || ObjectFigures {
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
    watched().push(Box::new(move || ObjectFigures {
        name: name.clone(),
        kind: "channel",
        waiting: 0,
        queued: channel.len() as u64,
    }));
}

/// The figures of every watched object, read now.
pub(crate) fn read_all() -> Vec<ObjectFigures> {
    watched().iter().map(|read| read()).collect()
}
