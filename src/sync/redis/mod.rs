//! The Redis backend of the shared objects (see [`Redis`] for what it promises).
//!
//! Layout: `config` (URL, timeouts, start-up check), `conn` (one non-blocking
//! connection), `frame` (where a reply ends, and how large one may be), `bridge` (a process's connections to one
//! Redis as one state machine) and `turn` (its timers), `driver` (who drives a bridge:
//! the master's loop in process models, a helper thread elsewhere), `pubsub` and
//! `queue` (the `Broadcast` and `Channel` protocols), `same_name` (the objects of one
//! name in a process), `objects` (what an object holds),
//! `wait` (parking a caller on a reply).

pub(crate) mod batch;
pub(crate) mod bridge;
mod config;
mod conn;
pub(crate) mod driver;
mod frame;
pub(crate) mod objects;
pub(crate) mod pubsub;
pub(crate) mod queue;
mod same_name;
mod turn;
mod wait;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use bridge::Shared;
pub(crate) use wait::block_on;

#[cfg(doc)]
use crate::sync::{Broadcast, Channel};

/// Why a Redis backend could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL does not name a Redis server this crate can reach.
    #[error("bad redis URL {url:?}: {why}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// A setting of [`RedisBuilder`] is out of its range.
    #[error("redis setting {name} = {value:?} is out of range: {why}")]
    BadConfig {
        /// The builder method.
        name: &'static str,
        /// The value given.
        value: Duration,
        /// The range it must be in.
        why: String,
    },
    /// Nothing answered (or it refused the hand-shake) within the timeout.
    #[error("redis at {url} is unreachable: {why}")]
    Unreachable {
        /// The URL given.
        url: String,
        /// What failed.
        why: String,
    },
}

/// A Redis server (≥ 7, or Valkey) that shared objects live on: [`Broadcast`] and
/// [`Channel`] across machines. Cheap to clone; every clone, and every object made from
/// it, shares one set of connections per process.
///
/// Several servers — any mix of models — behind a load balancer share one Redis; a
/// [`Broadcast::send`] on any of them releases the waiters of all of them, and a
/// [`Channel`] value goes to exactly one receiver in the cluster. Handlers do not
/// change: only where the object is created.
///
/// ```no_run
/// use mixserve::sync::{Broadcast, Channel, Redis};
///
/// # fn main() -> Result<(), mixserve::sync::RedisError> {
/// // Fails here, before serving, on a bad URL or an unreachable server.
/// let redis = Redis::connect("redis://127.0.0.1:6379")?;
/// let news: Broadcast<usize> = redis.broadcast("news");
/// let jobs: Channel<String> = redis.channel("jobs");
/// // Move clones into the handler factory, exactly as with `Broadcast::new()`.
/// # let _ = (news, jobs);
/// # Ok(())
/// # }
/// ```
///
/// # Semantics
///
/// - `Broadcast::send`/`send_count` release every waiter of every server subscribed
///   now, in two phases with a generation number: each server sets aside the waiters
///   it holds when send `g` begins and says how many; once the counts are summed, the
///   value goes out and each server releases exactly the waiters it set aside for `g`.
///   So a waiter is released once, by the first send that began after it started
///   waiting, and counted once. The count is the cluster's: exact when every server
///   answers within the count deadline (1 s by default), otherwise a lower bound —
///   logged, and counted by [`Redis::partial_counts`]. With `send_count` every waiter
///   receives that same count.
/// - `Broadcast::waiting` is cluster-wide, asked the same way (a lower bound if a
///   server is slow; this process's own count while Redis is down).
/// - `Channel`: each value goes to one receiver in the cluster; a value taken by a
///   process that then dies goes back to the queue when its heartbeat expires (the
///   lease, 5 s by default). A duplicate is possible only when a receiver's process
///   dies or loses Redis between taking a value and confirming the hand-off (one round
///   trip after `recv` returned it). `len` is the Redis queue's length.
///
/// # Faults
///
/// - A bad URL or an unreachable Redis: [`Redis::connect`] fails ([`RedisError`]).
/// - Redis lost while serving: every call in flight fails at once with a clear error
///   (`SendError::Hub`, `WaitError::Hub`; the comet example answers `503`), and a call
///   made while Redis is down fails at once: nothing is queued for later, so a notify
///   is never replayed (during a reconnect a call waits for it, within the timeout). The connection comes back with
///   exponential back-off and jitter and resubscribes; waiters keep waiting and are
///   released by the next send. Waiters caught between the two phases of a send when
///   Redis went away get `WaitError::Hub` (the release may have gone out unheard).
/// - A sender that dies between its two phases: the waiters set aside for its send go
///   back to waiting once the count deadline plus the timeout passed (3 s by default),
///   each in its place, and its release still reaches them if it comes within another
///   timeout. One whose own deadline passed meanwhile is answered `TimedOut`.
/// - A slow Redis: a reply not there within the timeout (2 s by default) counts as a
///   lost connection; no caller waits longer. So does any reply, or pub/sub message,
///   that started arriving and is not complete within the timeout, and the start-up
///   check gives up at the timeout however the answer trickles in.
/// - A reply larger than a value the objects send (16 MiB and framing), nested deeper
///   than 8 or with more than 1024 elements is refused before it is held, and counts
///   as a lost connection: whatever answers on Redis's port cannot make this process
///   hold more.
///
/// # Where the sockets live
///
/// In a process-based model (`Forking`, `Preforked`) the master's loop drives them, and
/// workers reach the objects through the hub as usual: the master never starts a
/// thread, and children close the inherited Redis sockets. Elsewhere the first use
/// starts one helper thread per Redis server; coroutines park while it works, so a
/// scheduler's loop never blocks on Redis. Create the objects before the server
/// starts; in a process-based model, use them only from handlers (a use in the master
/// before it serves would start the helper thread, and the master refuses to fork with
/// a second thread).
#[derive(Debug, Clone)]
pub struct Redis {
    shared: Arc<Shared>,
}

/// Settings for [`Redis`], from [`Redis::builder`]: each duration from
/// [`MIN_DURATION`](Self::MIN_DURATION) to [`MAX_DURATION`](Self::MAX_DURATION), or
/// `connect` fails with [`RedisError::BadConfig`].
#[derive(Debug, Clone)]
pub struct RedisBuilder {
    url: String,
    timeout: Option<Duration>,
    count_deadline: Option<Duration>,
    lease: Option<Duration>,
}

impl RedisBuilder {
    /// The shortest duration setting: a lease renewed every third of it, or a timeout,
    /// needs a few milliseconds to mean anything.
    pub const MIN_DURATION: Duration = Duration::from_millis(10);
    /// The longest duration setting: a day is already "never" for a reply.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

    /// The longest wait for any reply (and for the connect); default 2 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long a broadcast waits for every server's count; default 1 s.
    pub fn count_deadline(mut self, deadline: Duration) -> Self {
        self.count_deadline = Some(deadline);
        self
    }

    /// How long a process's claim on channel values it took outlives its last
    /// heartbeat (renewed every third of it); default 5 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Checks the URL and that Redis answers, then returns the handle.
    pub fn connect(self) -> Result<Redis, RedisError> {
        let mut config = config::Config::parse(&self.url)?;
        config.timeout = self.timeout.unwrap_or(config.timeout);
        config.count_deadline = self.count_deadline.unwrap_or(config.count_deadline);
        config.lease = self.lease.unwrap_or(config.lease);
        for (name, value) in [
            ("timeout", config.timeout),
            ("count_deadline", config.count_deadline),
            ("lease", config.lease),
        ] {
            let (least, most) = (Self::MIN_DURATION, Self::MAX_DURATION);
            if !(least..=most).contains(&value) {
                let why = format!("it must be from {least:?} to {most:?}");
                return Err(RedisError::BadConfig { name, value, why });
            }
        }
        config.check()?;
        Ok(Redis {
            shared: driver::bridge_for(config),
        })
    }
}

impl Redis {
    /// Connects with the default settings: checks the URL
    /// (`redis://[user:password@]host:port[/db]`) and that Redis answers.
    pub fn connect(url: &str) -> Result<Redis, RedisError> {
        Redis::builder(url).connect()
    }

    /// Settings first, then [`RedisBuilder::connect`].
    pub fn builder(url: &str) -> RedisBuilder {
        RedisBuilder {
            url: url.to_string(),
            timeout: None,
            count_deadline: None,
            lease: None,
        }
    }

    /// The broadcast called `name` on this Redis (the same name on every server).
    pub fn broadcast<T: crate::sync::Wire + Clone + Send + 'static>(
        &self,
        name: &str,
    ) -> crate::sync::Broadcast<T> {
        crate::sync::Broadcast::on_redis(&self.shared, name)
    }

    /// The channel called `name` on this Redis.
    pub fn channel<T: crate::sync::Wire + Clone + Send + 'static>(
        &self,
        name: &str,
    ) -> crate::sync::Channel<T> {
        crate::sync::Channel::on_redis(&self.shared, name)
    }

    /// Broadcast counts so far that were lower bounds (a server did not answer in time).
    pub fn partial_counts(&self) -> u64 {
        self.shared.state().pubsub.partial
    }
}

#[cfg(test)]
mod release_tests;
