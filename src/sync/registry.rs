//! Every shared object of this process, by id, so the hub can find the object a worker
//! names and a draining server can answer the waiters it owns.

use std::sync::{Arc, Mutex, Weak};

use crate::sync::SendError;
use crate::sync::hub::RemoteReply;
use crate::sync::lock;

/// What the hub needs of a shared object.
pub(crate) trait HubObject: Send + Sync {
    /// Serves one request from a worker process. Returns the waiter key when the
    /// request waits (its reply comes later through `reply`); a request that would wait
    /// while `refuse` says why it may not is answered with that error instead.
    fn serve(
        &self,
        op: u8,
        payload: &[u8],
        reply: RemoteReply,
        refuse: Option<crate::sync::WaitError>,
    ) -> Option<u64>;
    /// A remote waiter gave up (timed out, or its worker went away); false if it was
    /// already released.
    fn cancel(&self, key: u64) -> bool;
    /// Answers every waiter of server `scope` with `Closed`.
    fn close_scope(&self, scope: usize);
    /// A value this object handed to a worker that never acknowledged it (its
    /// connection failed): take it back, ahead of everything queued.
    fn put_back(&self, _payload: &[u8]) {}
}

/// One slot of the table: the object, and how often the slot was reused, so an id
/// held by a worker for an object that is gone never names its successor.
struct Entry {
    object: Weak<dyn HubObject>,
    generation: u32,
}

/// Every object by slot, and the slots free for reuse.
struct Table {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

static OBJECTS: Mutex<Table> = Mutex::new(Table {
    entries: Vec::new(),
    free: Vec::new(),
});

/// Registers an object; its id (slot in the low half, generation in the high half) is
/// what workers send to the hub. Slots of dropped objects are reused.
pub(crate) fn register(object: Weak<dyn HubObject>) -> u64 {
    let mut table = lock(&OBJECTS);
    match table.free.pop() {
        Some(slot) => {
            let entry = &mut table.entries[slot as usize];
            entry.generation = entry.generation.wrapping_add(1);
            entry.object = object;
            (u64::from(entry.generation) << 32) | u64::from(slot)
        }
        None => {
            table.entries.push(Entry {
                object,
                generation: 0,
            });
            (table.entries.len() - 1) as u64
        }
    }
}

/// Marks an object's slot free (its last handle was dropped).
pub(crate) fn unregister(id: u64) {
    let mut table = lock(&OBJECTS);
    let slot = id as u32;
    let current = table.entries.get(slot as usize).is_some_and(|entry| {
        u64::from(entry.generation) == id >> 32 && entry.object.strong_count() == 0
    });
    if current && !table.free.contains(&slot) {
        table.free.push(slot);
    }
}

/// The live object with this id.
pub(crate) fn get(id: u64) -> Option<Arc<dyn HubObject>> {
    let table = lock(&OBJECTS);
    let entry = table.entries.get(id as u32 as usize)?;
    if u64::from(entry.generation) != id >> 32 {
        return None;
    }
    entry.object.upgrade()
}

/// Answers every waiter of server `scope`, in every object, with `Closed`.
pub(crate) fn close_scope(scope: usize) {
    let live: Vec<Arc<dyn HubObject>> = {
        let table = lock(&OBJECTS);
        table
            .entries
            .iter()
            .filter_map(|entry| entry.object.upgrade())
            .collect()
    };
    for object in live {
        object.close_scope(scope);
    }
}

/// Where a shared object lives: the id workers name it by, and the process that owns
/// it. Anywhere else, operations go to that process's hub.
#[derive(Debug)]
pub(crate) struct Home {
    id: u64,
    pid: u32,
    /// Why this object cannot be used (it was made in a worker process).
    misplaced: Option<String>,
}

impl Home {
    /// The id workers name the object by.
    #[cfg(test)]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// True in the process that owns the object. False for a misplaced object, so
    /// every operation takes the remote path, which fails with the reason.
    pub(crate) fn is_here(&self) -> bool {
        crate::sys::process_id::process_id() == self.pid && self.misplaced.is_none()
    }

    /// Sends one operation to the owner's hub and waits for the reply.
    pub(crate) fn call(
        &self,
        op: u8,
        deadline: Option<std::time::Instant>,
        payload: &[u8],
    ) -> Result<(u8, Vec<u8>), String> {
        if let Some(why) = &self.misplaced {
            return Err(why.clone());
        }
        crate::sync::hub::client::call(op, self.id, deadline, payload)
    }

    /// Sends a value to the owner's hub: refused here, before anything is sent, when
    /// it is larger than the hub carries.
    pub(crate) fn send(&self, op: u8, payload: &[u8]) -> Result<(u8, Vec<u8>), SendError> {
        check_size(payload)?;
        self.call(op, None, payload).map_err(SendError::Hub)
    }

    /// Asks the owner's hub for a count (0 if it cannot be reached).
    pub(crate) fn count(&self, op: u8) -> usize {
        self.call(op, None, &[])
            .ok()
            .and_then(|(code, reply)| crate::sync::broadcast::decode_count(code, &reply).ok())
            .unwrap_or(0)
    }
}

impl Drop for Home {
    /// The object is gone: its slot may be reused (under a new generation).
    fn drop(&mut self) {
        if std::process::id() == self.pid {
            unregister(self.id);
        }
    }
}

/// Refuses a value larger than a shared object carries between processes (through the
/// hub or Redis), before anything is sent.
pub(crate) fn check_size(payload: &[u8]) -> Result<(), SendError> {
    let limit = crate::sync::hub::MAX_VALUE_BYTES;
    if payload.len() > limit {
        return Err(SendError::TooLarge {
            size: payload.len(),
            limit,
        });
    }
    Ok(())
}

/// Makes a shared object owned by this process and registers it with the hub.
///
/// In a worker process forked by a process-based model the object could never be
/// shared with the other workers (they were forked before it existed): it is made, an
/// error is logged, and every operation on it fails with a message saying to create
/// it before the server starts. Failing on use (rather than panicking here) keeps the
/// message on every use: a panic inside a `LazyLock` initializer would poison it, and
/// later uses would only say "poisoned".
pub(crate) fn new_object<I: HubObject + 'static>(make: impl FnOnce(Home) -> I) -> Arc<I> {
    let misplaced = crate::sys::fork::in_forked_child().then(|| {
        let why = format!(
            "a Broadcast or Channel created in worker process {} after the server started \
             is private to that process and cannot be shared: create it before the server \
             starts (not in a handler or a lazily initialised static) and move clones into \
             the handler factory",
            std::process::id()
        );
        log::error!("{why}");
        why
    });
    Arc::new_cyclic(|weak: &Weak<I>| {
        let object: Weak<dyn HubObject> = weak.clone();
        make(Home {
            id: register(object),
            pid: std::process::id(),
            misplaced,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Dummy(Home);

    impl HubObject for Dummy {
        fn serve(
            &self,
            _op: u8,
            _payload: &[u8],
            _reply: RemoteReply,
            _refuse: Option<crate::sync::WaitError>,
        ) -> Option<u64> {
            None
        }
        fn cancel(&self, _key: u64) -> bool {
            false
        }
        fn close_scope(&self, _scope: usize) {}
    }

    #[test]
    fn freed_ids_are_reused_under_a_new_generation() {
        let first = new_object(Dummy);
        let first_id = first.0.id;
        assert!(get(first_id).is_some());
        drop(first);
        assert!(get(first_id).is_none());
        for _ in 0..2000 {
            let object = new_object(Dummy);
            assert_ne!(object.0.id, first_id, "an old id reached a new object");
            assert!(get(object.0.id).is_some());
        }
        assert!(get(first_id).is_none());
        let slots = lock(&OBJECTS).entries.len();
        assert!(
            slots < 1000,
            "{slots} slots for objects made and dropped one by one"
        );
    }
}
