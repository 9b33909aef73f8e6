//! `Broadcast` over Redis PUB/SUB, in two phases with a generation number.
//!
//! A send runs a script that takes the next generation `g` (`INCR`) and publishes
//! `P g sender` on the object's channel; `PUBLISH` says how many servers heard it.
//! Each server, on `P`, detaches its current waiters into a batch for `g` (a waiter
//! joins exactly one batch: never missed, never counted twice) and answers its count
//! on the sender's ack channel. When every server answered, or the count deadline
//! passed (the sum is then a lower bound, logged and counted as partial), the sender
//! publishes `R g sender` with the value, and each server releases batch `g`. A batch
//! whose release does not come within the deadline plus the timeout (the sender went
//! away, or the prepare was forged) goes back on its list: the send failed, and its
//! waiters wait on for the next. A release that comes later still finds them there, for
//! another timeout. If Redis goes away instead, batches in progress are answered with an
//! error: their release may have been published while this server was not listening.
//!
//! `waiting()` asks the same way (`C q sender`), without detaching anyone.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::Value;

use crate::sync::WaitError;
use crate::sync::redis::batch::{Batch, Batches, Late, Waiters};
use crate::sync::redis::bridge::{self, Deferred, Shared};
use crate::sync::redis::same_name::SameName;

/// A cluster-wide count: the sum of the servers' answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) count: usize,
    /// False when some server did not answer in time (the count is a lower bound).
    pub(crate) complete: bool,
}

/// A batch's key: `(channel, sender, generation)`.
type BatchKey = (Vec<u8>, Vec<u8>, u64);

type Done = Box<dyn FnOnce(Result<Counted, String>) + Send>;

/// Answers being summed for one request: `(kind, id)`, kind `P` or `C`.
struct Gather {
    /// Servers that heard the request (`None` until `PUBLISH` answers).
    expected: Option<usize>,
    got: usize,
    total: usize,
    deadline: Instant,
    done: Done,
}

/// The protocol's state in one bridge.
pub(crate) struct PubSub {
    /// This process's ack channel.
    ack: Vec<u8>,
    /// Broadcasts here, by channel: every object made with the name (each has its own
    /// waiters, and a send releases them all).
    objects: HashMap<Vec<u8>, SameName<dyn Waiters>>,
    gathers: HashMap<(u8, u64), Gather>,
    /// Acks that came before the sender learnt its generation: `(got, total, since)`.
    early: HashMap<(u8, u64), (usize, usize, Instant)>,
    /// Detached waiters by `(channel, sender, generation)`, with their deadline.
    batches: HashMap<BatchKey, (Box<dyn Batch>, Instant)>,
    /// Batches put back on their lists, kept until a deadline in case their release
    /// comes late.
    restored: HashMap<BatchKey, (Box<dyn Late>, Instant)>,
    next_query: u64,
    /// Sends whose count was a lower bound.
    pub(crate) partial: u64,
}

/// Acks kept for sends that have not learnt their generation yet: a handful in flight
/// at a time; more are forged or stale.
const MAX_EARLY: usize = 4096;

/// Releases in progress kept at once (each lives count_deadline + timeout, 3 s by
/// default): far more than any cluster notifies in that time. Past it a prepare is
/// ignored, its sender counting this process as not answering; anyone who may
/// publish on Redis can send prepares. Batches put back are kept for a late release
/// up to the same number.
const MAX_BATCHES: usize = 65_536;

/// The cluster's generation counter, one for every broadcast, so a generation also
/// names the send its acks answer.
const GENERATION: &str = "mixserve:bc-generation";

/// Increments the generation and publishes the prepare message, atomically.
const PREPARE: &str = "local g = redis.call('INCR', KEYS[1]) \
     return {g, redis.call('PUBLISH', KEYS[2], 'P ' .. g .. ' ' .. ARGV[1])}";

pub(crate) fn ack_channel(node: &str) -> Vec<u8> {
    format!("mixserve:ack:{node}").into_bytes()
}

pub(crate) fn object_channel(name: &str) -> Vec<u8> {
    format!("mixserve:bc:{name}").into_bytes()
}

impl PubSub {
    pub(crate) fn new(ack: Vec<u8>) -> PubSub {
        PubSub {
            ack,
            objects: HashMap::new(),
            gathers: HashMap::new(),
            early: HashMap::new(),
            batches: HashMap::new(),
            restored: HashMap::new(),
            next_query: 0,
            partial: 0,
        }
    }

    /// Every channel the subscriber listens on.
    pub(crate) fn channels(&self) -> Vec<Vec<u8>> {
        let mut channels = vec![self.ack.clone()];
        channels.extend(self.objects.keys().cloned());
        channels
    }

    /// Redis went away: batches and counts in progress fail. (A batch's release may
    /// have gone out while this server was not subscribed: waiting on would miss it
    /// without a word.)
    pub(crate) fn on_down(&mut self, error: &str) -> Deferred {
        let mut deferred = Deferred::new();
        for (_, (batch, _)) in self.batches.drain() {
            let error = WaitError::Hub(format!("{error}; the release was interrupted"));
            deferred.push(Box::new(move || batch.fail(error)));
        }
        for (_, gather) in self.gathers.drain() {
            let error = error.to_string();
            deferred.push(Box::new(move || (gather.done)(Err(error))));
        }
        self.early.clear();
        self.restored.clear();
        deferred
    }

    /// Counts past their deadline complete as partial; batches past theirs go back on
    /// their lists. Runs under the bridge's lock, which orders a restore before or
    /// after a closing server's pass over the batches (see [`close_scope`]).
    pub(crate) fn tick(&mut self, now: Instant, late_for: Duration) -> Deferred {
        let mut deferred = Deferred::new();
        let late: Vec<(u8, u64)> = self
            .gathers
            .iter()
            .filter(|(_, g)| g.deadline <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in late {
            if let Some(gather) = self.gathers.remove(&key) {
                deferred.push(self.finish(gather));
            }
        }
        let expired: Vec<_> = self
            .batches
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(key, _)| key.clone())
            .collect();
        self.restored.retain(|_, (_, until)| *until > now);
        for key in expired {
            if let Some((batch, _)) = self.batches.remove(&key) {
                log::warn!(
                    "redis broadcast: the release of generation {} never came; {} waiter(s) wait on",
                    key.2,
                    batch.len()
                );
                let (then, late) = batch.restore(now);
                deferred.push(then);
                if self.restored.len() < MAX_BATCHES {
                    let until = crate::deadline::after(now, late_for);
                    self.restored.insert(key, (late, until));
                }
            }
        }
        self.early
            .retain(|_, (_, _, since)| now.duration_since(*since) < Duration::from_secs(30));
        deferred
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let gathers = self.gathers.values().map(|g| g.deadline);
        let restored = self.restored.values().map(|(_, until)| *until);
        let batches = self.batches.values().map(|(_, d)| *d);
        gathers.chain(batches).chain(restored).min()
    }

    fn finish(&mut self, gather: Gather) -> Box<dyn FnOnce() + Send> {
        let counted = Counted {
            count: gather.total,
            complete: gather.expected == Some(gather.got),
        };
        if !counted.complete {
            self.partial += 1;
            log::warn!(
                "redis broadcast: {} of {:?} servers answered in time; the count {} is a lower bound",
                gather.got,
                gather.expected,
                gather.total
            );
        }
        Box::new(move || (gather.done)(Ok(counted)))
    }

    /// One more server answered `key` with `count`.
    fn on_ack(&mut self, key: (u8, u64), count: usize) -> Option<Box<dyn FnOnce() + Send>> {
        let Some(gather) = self.gathers.get_mut(&key) else {
            // Bounded: anyone who may publish on Redis can send acks.
            if self.early.len() >= MAX_EARLY && !self.early.contains_key(&key) {
                return None;
            }
            let early = self.early.entry(key).or_insert((0, 0, Instant::now()));
            early.0 += 1;
            early.1 = early.1.saturating_add(count);
            return None;
        };
        gather.got += 1;
        gather.total = gather.total.saturating_add(count);
        self.complete_if_done(key)
    }

    fn complete_if_done(&mut self, key: (u8, u64)) -> Option<Box<dyn FnOnce() + Send>> {
        let gather = self.gathers.get(&key)?;
        if gather.expected.is_some_and(|n| gather.got >= n) {
            let gather = self.gathers.remove(&key)?;
            return Some(self.finish(gather));
        }
        None
    }
}

/// Registers a broadcast (its channel joins the subscriptions).
pub(crate) fn attach(shared: &Arc<Shared>, name: &str, object: Weak<dyn Waiters>) -> Vec<u8> {
    let channel = object_channel(name);
    let mut state = shared.state();
    state
        .pubsub
        .objects
        .entry(channel.clone())
        .or_default()
        .join(object);
    drop(state);
    bridge::subscribe(shared, &channel);
    channel
}

/// Releases every waiter of the cluster with the value `make(count)`; `done` gets the
/// count. Never blocks.
pub(crate) fn send(
    shared: &Arc<Shared>,
    channel: &[u8],
    make: Box<dyn FnOnce(usize) -> Vec<u8> + Send>,
    done: Done,
) {
    let packed = redis::cmd("EVAL")
        .arg(PREPARE)
        .arg(2)
        .arg(GENERATION)
        .arg(channel)
        .arg(&shared.node)
        .get_packed_command();
    let (shared2, channel) = (Arc::clone(shared), channel.to_vec());
    bridge::submit(
        shared,
        packed,
        Box::new(move |reply| {
            let (generation, heard) = match reply.and_then(two_ints) {
                Ok(pair) => pair,
                Err(e) => return done(Err(e)),
            };
            let shared = shared2;
            let release = {
                let shared = Arc::clone(&shared);
                move |counted: Result<Counted, String>| {
                    let counted = match counted {
                        Ok(counted) => counted,
                        Err(e) => return done(Err(e)),
                    };
                    let mut message = format!("R {generation} {}\n", shared.node).into_bytes();
                    message.extend_from_slice(&make(counted.count));
                    let packed = redis::cmd("PUBLISH")
                        .arg(channel.as_slice())
                        .arg(message)
                        .get_packed_command();
                    bridge::submit(
                        &shared,
                        packed,
                        Box::new(move |reply| done(reply.map(|_| counted))),
                    );
                }
            };
            gather(&shared, (b'P', generation), Some(heard), Box::new(release));
        }),
    );
}

/// Answers the waiters of server `scope` in this channel's batches with `Closed`. The
/// object's own list must be closed after this: a batch put back before this pass is
/// on the list then, one put back after it has lost them.
pub(crate) fn close_scope(shared: &Arc<Shared>, channel: &[u8], scope: usize) {
    let taken: Vec<Box<dyn Batch>> = {
        let mut state = shared.state();
        let batches = state.pubsub.batches.iter_mut();
        batches
            .filter(|(key, _)| key.0 == channel)
            .map(|(_, (batch, _))| batch.take_scope(scope))
            .collect()
    };
    for batch in taken {
        batch.fail(WaitError::Closed);
    }
}

/// The number of waiters in the cluster; never blocks.
pub(crate) fn count(shared: &Arc<Shared>, channel: &[u8], done: Done) {
    let id = {
        let mut state = shared.state();
        state.pubsub.next_query += 1;
        state.pubsub.next_query
    };
    gather(shared, (b'C', id), None, done);
    let message = format!("C {id} {}", shared.node);
    let packed = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .get_packed_command();
    let shared2 = Arc::clone(shared);
    bridge::submit(
        shared,
        packed,
        Box::new(move |reply| {
            let heard = match reply {
                Ok(Value::Int(n)) => n.max(0) as usize,
                Ok(_) => 0,
                Err(e) => {
                    let gather = shared2.state().pubsub.gathers.remove(&(b'C', id));
                    if let Some(gather) = gather {
                        (gather.done)(Err(e));
                    }
                    return;
                }
            };
            let finished = {
                let mut state = shared2.state();
                if let Some(gather) = state.pubsub.gathers.get_mut(&(b'C', id)) {
                    gather.expected = Some(heard);
                }
                state.pubsub.complete_if_done((b'C', id))
            };
            if let Some(finished) = finished {
                finished();
            }
        }),
    );
}

/// Starts summing answers for `key`.
fn gather(shared: &Arc<Shared>, key: (u8, u64), expected: Option<usize>, done: Done) {
    let finished = {
        let mut state = shared.state();
        let early = state.pubsub.early.remove(&key);
        let (got, total) = early.map_or((0, 0), |(got, total, _)| (got, total));
        let deadline = crate::deadline::from_now(shared.config.count_deadline);
        let gather = Gather {
            expected,
            got,
            total,
            deadline,
            done,
        };
        state.pubsub.gathers.insert(key, gather);
        state.pubsub.complete_if_done(key)
    };
    if let Some(finished) = finished {
        finished();
    }
}

fn two_ints(value: Value) -> Result<(u64, usize), String> {
    match value {
        Value::Array(items) => match items.as_slice() {
            [Value::Int(a), Value::Int(b)] => Ok((*a as u64, (*b).max(0) as usize)),
            _ => Err("redis: unexpected reply to the prepare script".into()),
        },
        _ => Err("redis: unexpected reply to the prepare script".into()),
    }
}

/// A message on one of the subscribed channels (runs outside the bridge's lock).
pub(crate) fn on_message(shared: &Arc<Shared>, channel: &[u8], payload: &[u8]) {
    let is_ack = shared.state().pubsub.ack == channel;
    if is_ack {
        let Some((kind, id, count)) = parse_ack(payload) else {
            return;
        };
        let finished = shared.state().pubsub.on_ack((kind, id), count);
        if let Some(finished) = finished {
            finished();
        }
        return;
    }
    let (head, value) = match payload.iter().position(|&b| b == b'\n') {
        Some(at) => (&payload[..at], &payload[at + 1..]),
        None => (payload, &[][..]),
    };
    let Some((kind, id, sender)) = parse_head(head) else {
        return;
    };
    if !is_node_id(sender) {
        // Not one of ours (see `Shared::node`): a forged sender could be megabytes,
        // kept in a batch's key and published back in the ack.
        return;
    }
    let objects: Vec<Arc<dyn Waiters>> = match shared.state().pubsub.objects.get(channel) {
        Some(same_name) => same_name.live(),
        None => return,
    };
    if objects.is_empty() {
        return;
    }
    let count = match kind {
        b'P' => {
            let key = (channel.to_vec(), sender.to_vec(), id);
            let taken = {
                let batches = &shared.state().pubsub.batches;
                batches.contains_key(&key) || batches.len() >= MAX_BATCHES
            };
            if taken {
                return;
            }
            let batch: Box<dyn Batch> = match objects.as_slice() {
                [object] => object.detach(),
                _ => Box::new(Batches(objects.iter().map(|o| o.detach()).collect())),
            };
            let count = batch.len();
            let deadline = crate::deadline::from_now(
                shared
                    .config
                    .count_deadline
                    .saturating_add(shared.config.timeout),
            );
            shared.state().pubsub.batches.insert(key, (batch, deadline));
            count
        }
        b'C' => objects.iter().map(|o| o.count()).sum(),
        b'R' => {
            let key = (channel.to_vec(), sender.to_vec(), id);
            let (batch, late) = {
                let mut state = shared.state();
                let batch = state.pubsub.batches.remove(&key);
                let late = batch.is_none().then(|| state.pubsub.restored.remove(&key));
                (batch, late.flatten())
            };
            if let Some((batch, _)) = batch {
                batch.release(value);
            } else if let Some((late, _)) = late {
                log::warn!("redis broadcast: the release of generation {id} came late");
                late.release(value);
            }
            return;
        }
        _ => return,
    };
    let mut to = b"mixserve:ack:".to_vec();
    to.extend_from_slice(sender);
    let answer = format!("{} {id} {count}", kind as char);
    let packed = redis::cmd("PUBLISH")
        .arg(to)
        .arg(answer)
        .get_packed_command();
    bridge::submit(shared, packed, bridge::ignore_reply());
}

/// `K id sender`.
fn parse_head(head: &[u8]) -> Option<(u8, u64, &[u8])> {
    let mut parts = head.splitn(3, |&b| b == b' ');
    let kind = *parts.next()?.first()?;
    let id = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    Some((kind, id, parts.next()?))
}

/// A node id as `bridge` makes them: 16 lower-case hex digits.
fn is_node_id(sender: &[u8]) -> bool {
    sender.len() == 16
        && sender
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `K id count`.
fn parse_ack(payload: &[u8]) -> Option<(u8, u64, usize)> {
    let (kind, id, count) = parse_head(payload)?;
    Some((kind, id, std::str::from_utf8(count).ok()?.parse().ok()?))
}

#[cfg(test)]
#[path = "pubsub_tests.rs"]
mod tests;
