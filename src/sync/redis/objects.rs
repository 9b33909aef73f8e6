//! What a `Broadcast` or `Channel` on Redis holds: a link to the bridge and its name
//! there. The link turns each operation into bridge requests — blocking the caller in
//! its own model, or, for a worker's request served by the hub, completing the hub's
//! reply later without blocking the master's loop.

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::sync::hub::RemoteReply;
use crate::sync::hub::protocol::{op, status};
use crate::sync::lock;
use crate::sync::redis::batch::{Batch, Late, Then, Waiters};
use crate::sync::redis::block_on;
use crate::sync::redis::bridge::Shared;
use crate::sync::redis::pubsub::{self, Counted};
use crate::sync::redis::queue::{self, Receivers};
use crate::sync::waiters::WaitList;
use crate::sync::wire::Wire;
use crate::sync::{SendError, TryRecvError, WaitError};

/// A `Broadcast`'s place on Redis.
#[derive(Debug)]
pub(crate) struct BroadcastLink {
    shared: Arc<Shared>,
    channel: Vec<u8>,
}

/// Makes the value a send releases, from the cluster-wide count.
pub(crate) type MakeValue = Box<dyn FnOnce(usize) -> Vec<u8> + Send>;

impl BroadcastLink {
    pub(crate) fn attach(shared: &Arc<Shared>, name: &str, object: Weak<dyn Waiters>) -> Self {
        BroadcastLink {
            shared: Arc::clone(shared),
            channel: pubsub::attach(shared, name, object),
        }
    }

    fn deadline(&self) -> Instant {
        let config = &self.shared.config;
        crate::deadline::from_now(
            config
                .count_deadline
                .saturating_add(config.timeout.saturating_mul(3)),
        )
    }

    /// Makes sure the bridge is driven (a local waiter needs the subscription).
    pub(crate) fn start(&self) {
        crate::sync::redis::driver::kick(&self.shared);
    }

    /// Releases every waiter of the cluster; the cluster-wide count.
    pub(crate) fn send(&self, make: MakeValue) -> Result<usize, SendError> {
        let result = block_on(self.deadline(), |done| {
            pubsub::send(&self.shared, &self.channel, make, done)
        });
        match result {
            Some(Ok(counted)) => Ok(counted.count),
            Some(Err(e)) => Err(SendError::Hub(e)),
            None => Err(SendError::Hub("redis: no answer in time".into())),
        }
    }

    /// Answers this process's waiters of server `scope` that are in a release in
    /// progress with `Closed`; the object's own list is closed after this.
    pub(crate) fn close_scope(&self, scope: usize) {
        pubsub::close_scope(&self.shared, &self.channel, scope);
    }

    /// Waiters in the cluster; `local` (this process's count) if Redis cannot tell.
    pub(crate) fn waiting(&self, local: usize) -> usize {
        let result = block_on(self.deadline(), |done| {
            pubsub::count(&self.shared, &self.channel, done)
        });
        match result {
            Some(Ok(counted)) => counted.count,
            _ => local,
        }
    }

    /// Serves a worker's request through the hub without blocking; gives `reply` back
    /// if the operation is not Redis's to serve (a wait joins the local list). `local`
    /// is this process's count, the answer to `waiting` when Redis cannot tell.
    pub(crate) fn serve(
        &self,
        code: u8,
        payload: &[u8],
        reply: RemoteReply,
        local: usize,
    ) -> Result<(), RemoteReply> {
        let answer = |reply: RemoteReply| {
            move |result: Result<Counted, String>| match result {
                Ok(counted) => reply.complete(Ok(counted.count)),
                Err(e) => reply.send(status::ERROR, e.as_bytes()),
            }
        };
        match code {
            op::BROADCAST_SEND => {
                let value = payload.to_vec();
                let make: MakeValue = Box::new(move |_| value);
                pubsub::send(&self.shared, &self.channel, make, Box::new(answer(reply)));
            }
            op::BROADCAST_SEND_COUNT => {
                // Only callable where `T: From<usize>`, i.e. T is usize: its wire form
                // is the count's.
                let make: MakeValue = Box::new(|count| {
                    let mut bytes = Vec::new();
                    count.encode(&mut bytes);
                    bytes
                });
                pubsub::send(&self.shared, &self.channel, make, Box::new(answer(reply)));
            }
            op::BROADCAST_WAITING => {
                let answer = move |result: Result<Counted, String>| {
                    reply.complete(Ok(result.map_or(local, |counted| counted.count)))
                };
                pubsub::count(&self.shared, &self.channel, Box::new(answer));
            }
            _ => return Err(reply),
        }
        Ok(())
    }
}

/// A `Channel`'s place on Redis.
#[derive(Debug)]
pub(crate) struct ChannelLink {
    shared: Arc<Shared>,
    list: String,
}

impl ChannelLink {
    pub(crate) fn attach(shared: &Arc<Shared>, name: &str, object: Weak<dyn Receivers>) -> Self {
        ChannelLink {
            shared: Arc::clone(shared),
            list: queue::attach(shared, name, object),
        }
    }

    fn deadline(&self) -> Instant {
        crate::deadline::from_now(self.shared.config.timeout.saturating_mul(2))
    }

    /// Queues a value in Redis.
    pub(crate) fn send(&self, bytes: Vec<u8>) -> Result<(), SendError> {
        let result = block_on(self.deadline(), |done| {
            queue::send(&self.shared, &self.list, &bytes, done)
        });
        match result {
            Some(result) => result.map_err(SendError::Hub),
            None => Err(SendError::Hub("redis: no answer in time".into())),
        }
    }

    /// Takes a queued value, if any.
    pub(crate) fn try_recv(&self) -> Result<Vec<u8>, TryRecvError> {
        let result = block_on(self.deadline(), |done| {
            queue::try_recv(&self.shared, &self.list, done)
        });
        match result {
            Some(Ok(Some(bytes))) => Ok(bytes),
            Some(Ok(None)) => Err(TryRecvError::Empty),
            Some(Err(e)) => Err(TryRecvError::Hub(e)),
            None => Err(TryRecvError::Hub("redis: no answer in time".into())),
        }
    }

    /// The length of the queue in Redis (0 if Redis cannot tell).
    pub(crate) fn len(&self) -> usize {
        let result = block_on(self.deadline(), |done| {
            queue::len(&self.shared, &self.list, done)
        });
        result.and_then(Result::ok).unwrap_or(0)
    }

    /// Gives back a value taken from Redis that no receiver got (never blocks).
    pub(crate) fn put_back(&self, bytes: &[u8]) {
        queue::put_back(&self.shared, &self.list, bytes);
    }

    /// A receiver here started waiting.
    pub(crate) fn want(&self) {
        queue::want(&self.shared, &self.list);
    }

    /// Serves a worker's send, try-receive or length through the hub, never blocking.
    pub(crate) fn serve(&self, code: u8, payload: &[u8], reply: RemoteReply) {
        match code {
            op::CHANNEL_SEND => queue::send(
                &self.shared,
                &self.list,
                payload,
                Box::new(move |result| match result {
                    Ok(()) => reply.complete(Ok(1usize)),
                    Err(e) => reply.send(status::ERROR, e.as_bytes()),
                }),
            ),
            op::CHANNEL_TRY_RECV => queue::try_recv(
                &self.shared,
                &self.list,
                Box::new(move |result| match result {
                    Ok(Some(bytes)) => reply.send(status::OK, &bytes),
                    Ok(None) => reply.send(status::EMPTY, b"empty"),
                    Err(e) => reply.send(status::ERROR, e.as_bytes()),
                }),
            ),
            op::CHANNEL_LEN => queue::len(
                &self.shared,
                &self.list,
                Box::new(move |result| match result {
                    Ok(len) => reply.complete(Ok(len)),
                    Err(e) => reply.send(status::ERROR, e.as_bytes()),
                }),
            ),
            _ => reply.send(status::ERROR, b"not a channel operation"),
        }
    }
}

/// A broadcast's waiters detached for one release, with the list they came from (to go
/// back to if the release never comes).
pub(crate) struct Detached<T> {
    list: WaitList<T>,
    home: Weak<Mutex<WaitList<T>>>,
}

impl<T: Wire + Clone + Send + 'static> Detached<T> {
    /// Takes every waiter now on `home`.
    pub(crate) fn take_all(home: &Arc<Mutex<WaitList<T>>>) -> Detached<T> {
        Detached {
            list: lock(home).detach(),
            home: Arc::downgrade(home),
        }
    }
}

impl<T: Wire + Clone + Send + 'static> Batch for Detached<T> {
    fn len(&self) -> usize {
        self.list.len()
    }

    fn release(mut self: Box<Self>, bytes: &[u8]) {
        release_with(&mut self.list, bytes);
    }

    fn fail(mut self: Box<Self>, error: WaitError) {
        self.list.fail_all(error);
    }

    fn take_scope(&mut self, scope: usize) -> Box<dyn Batch> {
        Box::new(Detached {
            list: self.list.take_scope(scope),
            home: Weak::clone(&self.home),
        })
    }

    fn restore(self: Box<Self>, now: Instant) -> (Then, Box<dyn Late>) {
        let Detached { list, home } = *self;
        // An object dropped meanwhile: its waiters are answered `Closed` (the list's
        // drop), outside the bridge's lock.
        let Some(live) = home.upgrade() else {
            return (
                Box::new(move || drop(list)),
                Box::new(Restored {
                    keys: Vec::new(),
                    home,
                }),
            );
        };
        let (keys, mut expired) = lock(&live).restore(list, now);
        let then: Then = Box::new(move || expired.fail_all(WaitError::TimedOut));
        (then, Box::new(Restored { keys, home }))
    }
}

/// Waiters put back on their list, by key, for a release that comes late.
struct Restored<T> {
    keys: Vec<u64>,
    home: Weak<Mutex<WaitList<T>>>,
}

impl<T: Wire + Clone + Send + 'static> Late for Restored<T> {
    fn release(self: Box<Self>, bytes: &[u8]) {
        let Some(home) = self.home.upgrade() else {
            return;
        };
        let mut still_waiting = lock(&home).take_keys(&self.keys);
        release_with(&mut still_waiting, bytes);
    }
}

/// Releases `list` with the value in `bytes`, or answers it with the decoding error.
fn release_with<T: Wire + Clone>(list: &mut WaitList<T>, bytes: &[u8]) {
    match crate::sync::wire::decode_foreign::<T>(bytes) {
        Ok(value) => {
            list.release_all(&value);
        }
        Err(e) => list.fail_all(WaitError::from(e)),
    }
}
