//! [`Broadcast`]: wait for the next value; a send releases every current waiter.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sync::hub::RemoteReply;
use crate::sync::hub::protocol::{op, status};
use crate::sync::lock;
use crate::sync::redis::objects::BroadcastLink;
use crate::sync::registry::{self, Home, HubObject};
use crate::sync::waiters::{Slot, WaitList, Waiter};
use crate::sync::watch;
use crate::sync::wire::Wire;
use crate::sync::{SendError, WaitError, scope};

/// A one-to-many wake-up: [`wait`](Broadcast::wait) blocks until the next
/// [`send`](Broadcast::send), which hands a copy of its value to every current waiter
/// and says how many it released. This is the comet primitive.
///
/// It works between threads, between coroutines of the scheduler, and between the
/// processes of a process-based model: create it before the server starts, and the
/// master process serves it to its workers through the hub (values cross as [`Wire`],
/// at most [`MAX_VALUE_BYTES`](crate::sync::hub::MAX_VALUE_BYTES) each: a larger one is
/// refused at the sender with [`SendError::TooLarge`]). Created in a worker after the
/// server started, it is private to that worker: every operation then fails, saying so.
///
/// ```
/// use mixserve::sync::Broadcast;
///
/// let news: Broadcast<String> = Broadcast::new();
/// let reader = {
///     let news = news.clone();
///     std::thread::spawn(move || news.wait())
/// };
/// while news.waiting() == 0 {
///     std::thread::yield_now();
/// }
/// assert_eq!(news.send("hello".to_string()), Ok(1));
/// assert_eq!(reader.join().unwrap(), Ok("hello".to_string()));
/// ```
#[derive(Debug)]
pub struct Broadcast<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Broadcast {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
struct Inner<T> {
    /// Where the object lives (elsewhere it is reached through the hub).
    home: Home,
    /// Shared with a Redis release in progress, which may give its waiters back.
    waiters: Arc<Mutex<WaitList<T>>>,
    /// Set when the object lives on Redis (see [`crate::sync::Redis`]).
    redis: OnceLock<BroadcastLink>,
}

impl<T: Wire + Clone + Send + 'static> Default for Broadcast<T> {
    fn default() -> Self {
        Broadcast::new()
    }
}

impl<T: Wire + Clone + Send + 'static> Broadcast<T> {
    /// A new broadcast, living in this process.
    pub fn new() -> Broadcast<T> {
        let inner = registry::new_object(|home| Inner {
            home,
            waiters: Arc::new(Mutex::new(WaitList::new())),
            redis: OnceLock::new(),
        });
        Broadcast { inner }
    }

    /// A broadcast called `name` on Redis (see [`Redis::broadcast`](crate::sync::Redis::broadcast)).
    pub(crate) fn on_redis(redis: &Arc<crate::sync::redis::Shared>, name: &str) -> Broadcast<T> {
        let broadcast = Broadcast::new();
        let waiters: Arc<dyn crate::sync::redis::batch::Waiters> = broadcast.inner.clone();
        let link = BroadcastLink::attach(redis, name, Arc::downgrade(&waiters));
        let _ = broadcast.inner.redis.set(link);
        broadcast
    }

    /// Waits for the next value sent.
    ///
    /// Fails with [`WaitError::Closed`] when the server shuts down, and at once with
    /// [`WaitError::NoOtherWorker`] when it would take the server's last free worker
    /// (under `Iterative`, always), where no sender could ever run.
    pub fn wait(&self) -> Result<T, WaitError> {
        self.wait_until(None)
    }

    /// Waits for the next value, at most `timeout`.
    ///
    /// Refused as [`wait`](Self::wait) is: the timeout does not lift the rule, since
    /// the request that could release the wait would wait for that worker until the
    /// timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<T, WaitError> {
        self.wait_until(Some(crate::deadline::from_now(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<T, WaitError> {
        if !self.inner.home.is_here() {
            // A draining worker answers at once; the hub applies the pool's cap, and
            // a worker with a queue of its own (SO_REUSEPORT) its own cap here.
            let _blocking = scope::begin_wait()?;
            let _watched = watch::remote_wait();
            let (code, payload) = self
                .inner
                .home
                .call(op::BROADCAST_WAIT, deadline, &[])
                .map_err(watch::hub_error)?;
            return decode_wait(code, &payload);
        }
        if let Some(link) = self.inner.redis.get() {
            // The waiter hears sends only once this process is subscribed.
            link.start();
        }
        let slot = Slot::new();
        let (key, _blocking) = {
            let mut waiters = self.lock();
            // Checked under the lock: a drain that starts after this sees the waiter.
            let blocking = scope::begin_wait()?;
            (waiters.push(Waiter::Local(Arc::clone(&slot))), blocking)
        };
        // A copy handed to a waiter that unwound is nobody's loss.
        slot.wait_or_leave(deadline, || self.lock().remove(key), drop)
    }

    /// Hands a copy of `value` to every current waiter; returns how many were released.
    pub fn send(&self, value: T) -> Result<usize, SendError> {
        if !self.inner.home.is_here() {
            let mut payload = Vec::new();
            value.encode(&mut payload);
            let (code, reply) = self.inner.home.send(op::BROADCAST_SEND, &payload)?;
            return decode_count(code, &reply);
        }
        if let Some(link) = self.inner.redis.get() {
            let mut bytes = Vec::new();
            value.encode(&mut bytes);
            crate::sync::registry::check_size(&bytes)?;
            return link.send(Box::new(move |_| bytes));
        }
        Ok(self.lock().release_all(&value))
    }

    /// How many are waiting now (0 if the hub cannot be reached).
    pub fn waiting(&self) -> usize {
        if !self.inner.home.is_here() {
            return self.inner.home.count(op::BROADCAST_WAITING);
        }
        if let Some(link) = self.inner.redis.get() {
            let local = self.lock().len();
            return link.waiting(local);
        }
        self.lock().len()
    }

    /// The id the hub knows this object by.
    #[cfg(test)]
    pub(crate) fn hub_id(&self) -> u64 {
        self.inner.home.id()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WaitList<T>> {
        lock(&self.inner.waiters)
    }
}

impl Broadcast<usize> {
    /// Releases every current waiter with the number released — the comet notify: each
    /// waiter learns how many were woken with it, and so does the caller. The count is
    /// taken under the same lock as the release, so it is exact.
    ///
    /// Only for `Broadcast<usize>`: the master counts the waiters of every process and
    /// sends the count as the value, in its wire form.
    pub fn send_count(&self) -> Result<usize, SendError> {
        if !self.inner.home.is_here() {
            let (code, reply) = self
                .inner
                .home
                .call(op::BROADCAST_SEND_COUNT, None, &[])
                .map_err(SendError::Hub)?;
            return decode_count(code, &reply);
        }
        if let Some(link) = self.inner.redis.get() {
            return link.send(Box::new(|count| {
                let mut bytes = Vec::new();
                count.encode(&mut bytes);
                bytes
            }));
        }
        let mut waiters = self.lock();
        let count = waiters.len();
        Ok(waiters.release_all(&count))
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
        let reply = match self.redis.get() {
            Some(link) => {
                // Counted first: the list's lock is never held into the bridge's.
                let local = lock(&self.waiters).len();
                match link.serve(code, payload, reply, local) {
                    Ok(()) => return None,
                    Err(reply) => reply,
                }
            }
            None => reply,
        };
        let mut waiters = lock(&self.waiters);
        match code {
            op::BROADCAST_WAIT if refuse.is_some() => {
                reply.complete::<T>(Err(refuse.unwrap_or(WaitError::Closed)))
            }
            op::BROADCAST_WAIT => return Some(waiters.push(Waiter::Remote(reply))),
            op::BROADCAST_SEND => match crate::sync::wire::decode_foreign::<T>(payload) {
                Ok(value) => {
                    let released = waiters.release_all(&value);
                    reply.complete(Ok(released));
                }
                Err(e) => reply.send(status::ERROR, e.to_string().as_bytes()),
            },
            op::BROADCAST_WAITING => reply.complete(Ok(waiters.len())),
            op::BROADCAST_SEND_COUNT => {
                // Only `Broadcast<usize>` sends it; another `T` that reads the count's
                // wire form as a value would get the wrong one: refused.
                if std::any::TypeId::of::<T>() != std::any::TypeId::of::<usize>() {
                    reply.send(status::ERROR, b"send_count on a broadcast not of usize");
                    return None;
                }
                let mut bytes = Vec::new();
                waiters.len().encode(&mut bytes);
                match T::decode(&bytes) {
                    Ok(value) => {
                        let released = waiters.release_all(&value);
                        reply.complete(Ok(released));
                    }
                    Err(e) => reply.send(status::ERROR, e.to_string().as_bytes()),
                }
            }
            _ => reply.send(status::ERROR, b"not a broadcast operation"),
        }
        None
    }

    fn cancel(&self, key: u64) -> bool {
        lock(&self.waiters).remove(key)
    }

    fn close_scope(&self, scope: usize) {
        // Batches first (see `pubsub::close_scope`), then the list.
        if let Some(link) = self.redis.get() {
            link.close_scope(scope);
        }
        lock(&self.waiters).close_scope(scope);
    }
}

impl<T: Wire + Clone + Send + 'static> crate::sync::redis::batch::Waiters for Inner<T> {
    fn count(&self) -> usize {
        lock(&self.waiters).len()
    }

    fn detach(&self) -> Box<dyn crate::sync::redis::batch::Batch> {
        Box::new(crate::sync::redis::objects::Detached::take_all(
            &self.waiters,
        ))
    }
}

/// A wait's reply from the hub.
pub(crate) fn decode_wait<T: Wire>(code: u8, payload: &[u8]) -> Result<T, WaitError> {
    match code {
        status::OK => Ok(T::decode(payload)?),
        status::CLOSED => Err(WaitError::Closed),
        status::TIMED_OUT => Err(WaitError::TimedOut),
        status::NO_WORKER => Err(crate::sync::scope::no_other_worker_here()),
        _ => Err(WaitError::Hub(
            String::from_utf8_lossy(payload).into_owned(),
        )),
    }
}

/// A count's reply from the hub.
pub(crate) fn decode_count(code: u8, payload: &[u8]) -> Result<usize, SendError> {
    match code {
        status::OK => usize::decode(payload).map_err(|e| SendError::Hub(e.to_string())),
        status::CLOSED => Err(SendError::Closed),
        _ => Err(SendError::Hub(
            String::from_utf8_lossy(payload).into_owned(),
        )),
    }
}
