//! [`Channel`]: a queue of values; each value goes to exactly one receiver.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::sync::broadcast::{decode_count, decode_wait};
use crate::sync::hub::RemoteReply;
use crate::sync::hub::protocol::{op, status};
use crate::sync::lock;
use crate::sync::redis::objects::ChannelLink;
use crate::sync::registry::{self, Home, HubObject};
use crate::sync::waiters::{Slot, WaitList, Waiter};
use crate::sync::watch;
use crate::sync::wire::Wire;
use crate::sync::{SendError, TryRecvError, WaitError, scope};

/// An unbounded multi-producer, multi-consumer queue: [`send`](Channel::send) never
/// blocks; [`recv`](Channel::recv) blocks until a value arrives, and each value goes to
/// exactly one receiver, oldest waiter first.
///
/// Like [`Broadcast`](crate::sync::Broadcast) it works between threads, coroutines and
/// the processes of a process-based model (through the master's hub). Across processes
/// a value reaches exactly one receiver: one that dies before it has the value gives it
/// back to the head of the queue. A value sent from a worker is at most
/// [`MAX_VALUE_BYTES`](crate::sync::hub::MAX_VALUE_BYTES) in its wire form (larger:
/// [`SendError::TooLarge`]).
///
/// ```
/// use mixserve::sync::Channel;
///
/// let jobs: Channel<u64> = Channel::new();
/// jobs.send(7).unwrap();
/// assert_eq!(jobs.recv(), Ok(7));
/// assert!(jobs.try_recv().is_err());
/// ```
#[derive(Debug)]
pub struct Channel<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
struct Inner<T> {
    /// Where the object lives (elsewhere it is reached through the hub).
    home: Home,
    state: Mutex<State<T>>,
    /// Set when the object lives on Redis (see [`crate::sync::Redis`]).
    redis: OnceLock<ChannelLink>,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    receivers: WaitList<T>,
}

impl<T: Wire + Clone + Send + 'static> Default for Channel<T> {
    fn default() -> Self {
        Channel::new()
    }
}

impl<T: Wire + Clone + Send + 'static> Channel<T> {
    /// A new, empty channel living in this process.
    pub fn new() -> Channel<T> {
        let inner = registry::new_object(|home| Inner {
            home,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                receivers: WaitList::new(),
            }),
            redis: OnceLock::new(),
        });
        Channel { inner }
    }

    /// A channel called `name` on Redis (see [`Redis::channel`](crate::sync::Redis::channel)).
    pub(crate) fn on_redis(redis: &Arc<crate::sync::redis::Shared>, name: &str) -> Channel<T> {
        let channel = Channel::new();
        let receivers: Arc<dyn crate::sync::redis::queue::Receivers> = channel.inner.clone();
        let link = ChannelLink::attach(redis, name, Arc::downgrade(&receivers));
        let _ = channel.inner.redis.set(link);
        channel
    }

    /// Queues `value`, or hands it straight to the oldest waiting receiver.
    pub fn send(&self, value: T) -> Result<(), SendError> {
        if !self.inner.home.is_here() {
            let mut payload = Vec::new();
            value.encode(&mut payload);
            let (code, reply) = self.inner.home.send(op::CHANNEL_SEND, &payload)?;
            return decode_count(code, &reply).map(drop);
        }
        if let Some(link) = self.inner.redis.get() {
            let mut bytes = Vec::new();
            value.encode(&mut bytes);
            crate::sync::registry::check_size(&bytes)?;
            return link.send(bytes);
        }
        self.lock().push(value);
        Ok(())
    }

    /// Waits for a value.
    pub fn recv(&self) -> Result<T, WaitError> {
        self.recv_until(None)
    }

    /// Waits for a value, at most `timeout`.
    ///
    /// With nothing queued, a wait that would take the last free worker fails at once
    /// with [`WaitError::NoOtherWorker`], as [`recv`](Self::recv) does: the timeout
    /// does not lift the rule, since the request that could send would wait for that
    /// worker until the timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, WaitError> {
        self.recv_until(Some(crate::deadline::from_now(timeout)))
    }

    /// Takes a value if one is queued, without waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        if !self.inner.home.is_here() {
            let (code, payload) = self
                .inner
                .home
                .call(op::CHANNEL_TRY_RECV, None, &[])
                .map_err(TryRecvError::Hub)?;
            return match code {
                status::EMPTY => Err(TryRecvError::Empty),
                status::CLOSED => Err(TryRecvError::Closed),
                _ => decode_wait(code, &payload).map_err(|e| TryRecvError::Hub(e.to_string())),
            };
        }
        if let Some(link) = self.inner.redis.get() {
            let bytes = link.try_recv()?;
            return T::decode(&bytes).map_err(|e| TryRecvError::Hub(e.to_string()));
        }
        self.lock().queue.pop_front().ok_or(TryRecvError::Empty)
    }

    /// Values queued now.
    pub fn len(&self) -> usize {
        if !self.inner.home.is_here() {
            return self.inner.home.count(op::CHANNEL_LEN);
        }
        if let Some(link) = self.inner.redis.get() {
            return link.len();
        }
        self.lock().queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, WaitError> {
        if !self.inner.home.is_here() {
            // A draining worker answers at once; the hub applies the pool's cap, and
            // a worker with a queue of its own (SO_REUSEPORT) its own cap here. A refused
            // wait still takes a value already queued, as in one process: that is no wait.
            let _blocking = match scope::begin_wait() {
                Ok(blocking) => blocking,
                Err(refused) => return self.try_recv().map_err(|_| refused),
            };
            let _watched = watch::remote_wait();
            let (code, payload) = self
                .inner
                .home
                .call(op::CHANNEL_RECV, deadline, &[])
                .map_err(watch::hub_error)?;
            return decode_wait(code, &payload);
        }
        let slot = Slot::new();
        let (key, _blocking) = {
            let mut state = self.lock();
            if let Some(value) = state.queue.pop_front() {
                return Ok(value);
            }
            let blocking = scope::begin_wait()?;
            (
                state.receivers.push(Waiter::Local(Arc::clone(&slot))),
                blocking,
            )
        };
        if let Some(link) = self.inner.redis.get() {
            link.want();
        }
        let orphaned = |value: T| match self.inner.redis.get() {
            Some(link) => {
                let mut bytes = Vec::new();
                value.encode(&mut bytes);
                link.put_back(&bytes);
            }
            None => self.lock().put_back(value),
        };
        slot.wait_or_leave(deadline, || self.lock().receivers.remove(key), orphaned)
    }

    /// The id the hub knows this object by.
    #[cfg(test)]
    pub(crate) fn hub_id(&self) -> u64 {
        self.inner.home.id()
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.inner.state)
    }
}

impl<T: Wire + Clone> State<T> {
    fn push(&mut self, value: T) {
        if let Err(value) = self.receivers.release_one(value) {
            self.queue.push_back(value);
        }
    }

    /// A value whose receiver never got it: first in line again.
    fn put_back(&mut self, value: T) {
        if let Err(value) = self.receivers.release_one(value) {
            self.queue.push_front(value);
        }
    }
}

impl<T: Wire + Clone + Send + 'static> HubObject for Inner<T> {
    fn serve(
        &self,
        code: u8,
        payload: &[u8],
        reply: RemoteReply,
        refuse: Option<WaitError>,
    ) -> Option<u64> {
        if let Some(link) = self.redis.get() {
            return serve_on_redis(self, link, code, payload, reply, refuse);
        }
        let mut state = lock(&self.state);
        match code {
            op::CHANNEL_SEND => match crate::sync::wire::decode_foreign::<T>(payload) {
                Ok(value) => {
                    state.push(value);
                    reply.complete(Ok(1usize));
                }
                Err(e) => reply.send(status::ERROR, e.to_string().as_bytes()),
            },
            op::CHANNEL_RECV => match state.queue.pop_front() {
                Some(value) => reply.complete(Ok(value)),
                None if refuse.is_some() => {
                    reply.complete::<T>(Err(refuse.unwrap_or(WaitError::Closed)))
                }
                None => return Some(state.receivers.push(Waiter::Remote(reply))),
            },
            op::CHANNEL_TRY_RECV => match state.queue.pop_front() {
                Some(value) => reply.complete(Ok(value)),
                None => reply.send(status::EMPTY, b"empty"),
            },
            op::CHANNEL_LEN => reply.complete(Ok(state.queue.len())),
            _ => reply.send(status::ERROR, b"not a channel operation"),
        }
        None
    }

    fn cancel(&self, key: u64) -> bool {
        lock(&self.state).receivers.remove(key)
    }

    fn close_scope(&self, scope: usize) {
        lock(&self.state).receivers.close_scope(scope);
    }

    fn put_back(&self, payload: &[u8]) {
        let value = match crate::sync::wire::decode_foreign::<T>(payload) {
            Ok(value) => value,
            // It was encoded from a T here: only a broken Wire impl gets here.
            Err(e) => return log::error!("hub: a channel value put back does not decode: {e}"),
        };
        let mut state = lock(&self.state);
        let Some(link) = self.redis.get() else {
            return state.put_back(value);
        };
        // On Redis the queue is the list there, which remote receivers pop from: the
        // value goes back to its head unless a receiver here waits for it now.
        if state.receivers.release_one(value).is_err() {
            drop(state);
            link.put_back(payload);
        }
    }
}

/// A worker's request for a channel on Redis: a receive joins the local list and starts
/// a pop; the rest go to Redis.
fn serve_on_redis<T: Wire + Clone + Send + 'static>(
    inner: &Inner<T>,
    link: &ChannelLink,
    code: u8,
    payload: &[u8],
    reply: RemoteReply,
    refuse: Option<WaitError>,
) -> Option<u64> {
    if code != op::CHANNEL_RECV {
        link.serve(code, payload, reply);
        return None;
    }
    if let Some(error) = refuse {
        reply.complete::<T>(Err(error));
        return None;
    }
    let key = lock(&inner.state).receivers.push(Waiter::Remote(reply));
    link.want();
    Some(key)
}

impl<T: Wire + Clone + Send + 'static> crate::sync::redis::queue::Receivers for Inner<T> {
    fn waiting(&self) -> usize {
        lock(&self.state).receivers.len()
    }

    fn hand(&self, bytes: &[u8]) -> Result<bool, crate::sync::WireError> {
        let value = crate::sync::wire::decode_foreign::<T>(bytes)?;
        Ok(lock(&self.state).receivers.release_one(value).is_ok())
    }
}
