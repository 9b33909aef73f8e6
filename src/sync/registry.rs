//! Every shared object of this process, by id, so the hub can find the object a worker
//! names and a draining server can answer the waiters it owns.

use std::sync::{Arc, Mutex, Weak};

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
}

static OBJECTS: Mutex<Vec<Weak<dyn HubObject>>> = Mutex::new(Vec::new());

/// Registers an object; its id is what workers send to the hub.
pub(crate) fn register(object: Weak<dyn HubObject>) -> u32 {
    let mut objects = lock(&OBJECTS);
    objects.push(object);
    (objects.len() - 1) as u32
}

/// The live object with this id.
pub(crate) fn get(id: u32) -> Option<Arc<dyn HubObject>> {
    let objects = lock(&OBJECTS);
    objects.get(id as usize).and_then(Weak::upgrade)
}

/// Answers every waiter of server `scope`, in every object, with `Closed`.
pub(crate) fn close_scope(scope: usize) {
    let live: Vec<Arc<dyn HubObject>> = {
        let objects = lock(&OBJECTS);
        objects.iter().filter_map(Weak::upgrade).collect()
    };
    for object in live {
        object.close_scope(scope);
    }
}

/// Where a shared object lives: the id workers name it by, and the process that owns
/// it. Anywhere else, operations go to that process's hub.
#[derive(Debug)]
pub(crate) struct Home {
    id: u32,
    pid: u32,
}

impl Home {
    /// True in the process that owns the object.
    pub(crate) fn is_here(&self) -> bool {
        std::process::id() == self.pid
    }

    /// Sends one operation to the owner's hub and waits for the reply.
    pub(crate) fn call(
        &self,
        op: u8,
        deadline: Option<std::time::Instant>,
        payload: &[u8],
    ) -> Result<(u8, Vec<u8>), String> {
        crate::sync::hub::client::call(op, self.id, deadline, payload)
    }

    /// Asks the owner's hub for a count (0 if it cannot be reached).
    pub(crate) fn count(&self, op: u8) -> usize {
        self.call(op, None, &[])
            .ok()
            .and_then(|(code, reply)| crate::sync::broadcast::decode_count(code, &reply).ok())
            .unwrap_or(0)
    }
}

/// Makes a shared object owned by this process and registers it with the hub.
pub(crate) fn new_object<I: HubObject + 'static>(make: impl FnOnce(Home) -> I) -> Arc<I> {
    Arc::new_cyclic(|weak: &Weak<I>| {
        let object: Weak<dyn HubObject> = weak.clone();
        make(Home {
            id: register(object),
            pid: std::process::id(),
        })
    })
}
