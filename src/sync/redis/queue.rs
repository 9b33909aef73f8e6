//! `Channel` over Redis: a reliable queue.
//!
//! `send` pushes onto the list `mixserve:ch:NAME`. A process with receivers waiting
//! moves one value at a time into its own processing list (`BLMOVE` on a connection
//! of its own, so the wait blocks no other command), hands it to the oldest receiver,
//! then removes it from the processing list (`LREM`); a value nobody here wants any
//! more goes back to the queue. Each process renews a heartbeat key (`SET … PX lease`)
//! every third of the lease, and every process runs the reaper: the processing list of
//! a process whose heartbeat expired goes back onto the queue.
//!
//! So a value is lost only if Redis loses it, and is delivered twice only when its
//! receiver's process dies, or loses Redis for longer than the lease, between taking
//! the value and the `LREM` that follows the hand-off (a window of one round trip);
//! the same holds for a connection lost in that window, after which the process puts
//! its own processing list back on reconnecting. A value whose pop answer came with the
//! loss itself is not handed out (nor returned by `try_recv`, which fails): it waits in
//! the processing list for that put-back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use mio::Registry;
use redis::Value;

use crate::sync::redis::bridge::{self, Deferred, Phase, Shared, State};
use crate::sync::redis::conn::{RedisConn, Reply};
use crate::sync::redis::same_name::SameName;
use crate::sync::wire::WireError;

/// The receivers of one `Channel` in this process, as the protocol sees them.
pub(crate) trait Receivers: Send + Sync {
    /// How many wait now.
    fn waiting(&self) -> usize;
    /// Gives the value in `bytes` to the oldest receiver; false if none waits.
    fn hand(&self, bytes: &[u8]) -> Result<bool, WireError>;
}

/// Receives what `try_recv` took: a value, nothing, or the error.
pub(crate) type Take = Box<dyn FnOnce(Result<Option<Vec<u8>>, String>) + Send>;

/// How long one blocking pop waits in Redis before it is asked again, in seconds.
const POP_BLOCK_SECONDS: u64 = 1;
/// How long a list waits before its next pop after Redis refused one (a key of another
/// type, out of memory, a read-only replica, no permission): asked again at once, the
/// pop would go round a round trip at a time.
const POP_RETRY: Duration = Duration::from_secs(1);

/// Puts back the processing lists of processes whose heartbeat expired, in the order
/// they were taken: a processing list holds its newest at the left (`BLMOVE … RIGHT
/// LEFT`), and each value goes back to the queue's head (its right), so the newest goes
/// first and the oldest ends up first in line. A value too
/// large for a receiver to take (`ARGV[1]` bytes; someone else pushed it) goes to the
/// dead-letter list `KEYS[2]`: put back, it would be taken, refused and put back again
/// for ever, its taker's connection lost each time.
const REAP: &str = "local moved = 0 \
    for _, node in ipairs(redis.call('SMEMBERS', KEYS[1] .. ':nodes')) do \
      if redis.call('EXISTS', KEYS[1] .. ':alive:' .. node) == 0 then \
        local held = KEYS[1] .. ':proc:' .. node \
        local v = redis.call('LPOP', held) \
        while v do \
          if string.len(v) > tonumber(ARGV[1]) then redis.call('LPUSH', KEYS[2], v) \
          else redis.call('RPUSH', KEYS[1], v) end \
          moved = moved + 1 \
          v = redis.call('LPOP', held) \
        end \
        redis.call('SREM', KEYS[1] .. ':nodes', node) \
      end \
    end \
    return moved";

/// Puts one value back from a processing list onto the queue.
const REQUEUE: &str = "if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 1 then \
      redis.call('RPUSH', KEYS[1], ARGV[1]) end return 0";

/// Puts a whole processing list back (this process's own, after a reconnect), but for
/// values over `ARGV[1]` bytes, which go to the dead-letter list `KEYS[3]` (see
/// [`REAP`]; taking one is what lost the connection), in the order they were taken.
/// Returns how many went there.
const RECOVER: &str = "local dead = 0 \
    local v = redis.call('LPOP', KEYS[2]) \
    while v do \
      if string.len(v) > tonumber(ARGV[1]) then \
        redis.call('LPUSH', KEYS[3], v) dead = dead + 1 \
      else redis.call('RPUSH', KEYS[1], v) end \
      v = redis.call('LPOP', KEYS[2]) \
    end \
    return dead";

/// The protocol's state in one bridge.
#[derive(Default)]
pub(crate) struct Queues {
    /// Channels here, by list key: every object made with the name (each has its own
    /// receivers; a value goes to one of them).
    objects: HashMap<String, SameName<dyn Receivers>>,
    /// Lists with receivers waiting and no pop in flight.
    wanted: HashSet<String>,
    /// Lists with a pop in flight.
    popping: HashSet<String>,
    /// Lists whose last pop Redis refused, and when to pop again.
    paused: HashMap<String, Instant>,
    /// When the heartbeats and the reaper run next (while up).
    next_beat: Option<Instant>,
}

pub(crate) fn list_key(name: &str) -> String {
    format!("mixserve:ch:{name}")
}

fn held_key(list: &str, node: &str) -> String {
    format!("{list}:proc:{node}")
}

/// Where values too large to take end up (see [`REAP`]).
fn dead_key(list: &str) -> String {
    format!("{list}:dead")
}

/// The largest value a receiver takes: what a reply may carry, less its framing (`$`,
/// up to 20 digits and two CRLFs).
const MAX_TAKEN: usize = crate::sync::redis::frame::MAX_REPLY_BYTES - 32;

impl Queues {
    pub(crate) fn on_down(&mut self) {
        self.popping.clear();
        self.next_beat = None;
    }

    /// Just connected: announce this process on every list, take back what it held.
    pub(crate) fn on_up(&mut self, shared: &Arc<Shared>, cmd: Option<&mut RedisConn>) {
        let Some(cmd) = cmd else {
            return;
        };
        let deadline = shared.reply_deadline();
        for list in self.objects.keys() {
            let held = held_key(list, &shared.node);
            let packed = redis::cmd("EVAL")
                .arg(RECOVER)
                .arg(3)
                .arg(list)
                .arg(held)
                .arg(dead_key(list))
                .arg(MAX_TAKEN)
                .get_packed_command();
            let list = list.clone();
            let reported = Box::new(move |reply: Reply| match reply {
                Ok(Value::Int(dead)) if dead > 0 => log::warn!(
                    "redis channel {list}: {dead} value(s) over {MAX_TAKEN} bytes moved to \
                     {}: no receiver can take them",
                    dead_key(&list)
                ),
                Ok(_) => {}
                Err(e) => log::debug!("redis: {e}"),
            });
            cmd.push(&packed, deadline, Some(reported), 1);
        }
        // Receivers that waited through an outage asked again (`want`) when their pop
        // failed; their pops go out on the next tick.
        self.next_beat = Some(Instant::now());
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        // A paused list counts only while a receiver wants it.
        let resume = self
            .paused
            .iter()
            .filter(|(list, _)| self.wanted.contains(*list))
            .map(|(_, at)| *at);
        self.next_beat.into_iter().chain(resume).min()
    }
}

/// Heartbeats, the reaper, and the pops wanted (the bridge is up).
pub(crate) fn tick(shared: &Arc<Shared>, state: &mut State, registry: &Registry) -> Deferred {
    let now = Instant::now();
    let deadline = shared.reply_deadline();
    let lease = shared.config.lease;
    let mut commands = Vec::new();
    if state.queues.next_beat.is_some_and(|at| at <= now) {
        state.queues.next_beat = Some(now + lease / 3);
        for list in state.queues.objects.keys() {
            let alive = format!("{list}:alive:{}", shared.node);
            let lease_ms = lease.as_millis() as u64;
            commands.push(
                redis::cmd("SET")
                    .arg(alive)
                    .arg(1)
                    .arg("PX")
                    .arg(lease_ms)
                    .clone(),
            );
            commands.push(
                redis::cmd("SADD")
                    .arg(format!("{list}:nodes"))
                    .arg(&shared.node)
                    .clone(),
            );
            commands.push(
                redis::cmd("EVAL")
                    .arg(REAP)
                    .arg(2)
                    .arg(list)
                    .arg(dead_key(list))
                    .arg(MAX_TAKEN)
                    .clone(),
            );
        }
    }
    if let Some(cmd) = state.cmd.as_mut() {
        for command in commands {
            cmd.push(
                &command.get_packed_command(),
                deadline,
                Some(bridge::ignore_reply()),
                1,
            );
        }
    }
    let wanted: Vec<String> = state.queues.wanted.drain().collect();
    for list in wanted {
        if state.queues.popping.contains(&list) {
            continue;
        }
        if let Some(&resume) = state.queues.paused.get(&list) {
            if resume > now {
                state.queues.wanted.insert(list);
                continue;
            }
            state.queues.paused.remove(&list);
        }
        if !state.poppers.contains_key(&list) {
            match RedisConn::open(
                shared.config.addr,
                bridge::next_token(),
                registry,
                shared.config.timeout,
            ) {
                Ok(mut conn) => {
                    for packed in shared.config.handshake() {
                        conn.push(&packed, deadline, None, 1);
                    }
                    state.poppers.insert(list.clone(), conn);
                }
                Err(e) => {
                    log::warn!("redis: cannot open a connection for {list}: {e}");
                    state.queues.wanted.insert(list);
                    continue;
                }
            }
        }
        let held = held_key(&list, &shared.node);
        let packed = redis::cmd("BLMOVE")
            .arg(&list)
            .arg(held)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(POP_BLOCK_SECONDS)
            .get_packed_command();
        // An idle Redis answers a timed-out blocking pop at its next timer tick (100 ms
        // at the default `hz 10`, up to 1 s at `hz 1`): without that slack a short
        // timeout took every idle pop for a stuck link, and reconnected for ever.
        let pop_deadline = deadline + std::time::Duration::from_secs(2 * POP_BLOCK_SECONDS);
        let (shared2, list2) = (Arc::clone(shared), list.clone());
        if let Some(conn) = state.poppers.get_mut(&list) {
            let on_reply = Box::new(move |reply| on_popped(&shared2, &list2, reply));
            conn.push(&packed, pop_deadline, Some(on_reply), 1);
            state.queues.popping.insert(list);
        }
    }
    Deferred::new()
}

/// Registers a channel.
pub(crate) fn attach(shared: &Arc<Shared>, name: &str, object: Weak<dyn Receivers>) -> String {
    let list = list_key(name);
    let mut state = shared.state();
    state
        .queues
        .objects
        .entry(list.clone())
        .or_default()
        .join(object);
    if state.queues.next_beat.is_some() {
        state.queues.next_beat = Some(Instant::now());
    }
    list
}

/// A receiver here waits: start popping for it (never blocks).
pub(crate) fn want(shared: &Arc<Shared>, list: &str) {
    {
        let mut state = shared.state();
        if state.queues.popping.contains(list) {
            return;
        }
        state.queues.wanted.insert(list.to_string());
    }
    crate::sync::redis::driver::kick(shared);
}

/// A pop answered (or failed).
fn on_popped(shared: &Arc<Shared>, list: &str, reply: Reply) {
    let up = {
        let mut state = shared.state();
        state.queues.popping.remove(list);
        // Failed with the bridge up: Redis refused the pop itself (a lost connection
        // takes the bridge down first, and the reconnect pops again).
        if let (Err(error), Phase::Up) = (&reply, &state.phase) {
            log::warn!("redis channel {list}: a pop was refused: {error}; again in {POP_RETRY:?}");
            let resume = Instant::now() + POP_RETRY;
            state.queues.paused.insert(list.to_string(), resume);
        }
        state.phase == Phase::Up
    };
    let objects: Vec<Arc<dyn Receivers>> = match shared.state().queues.objects.get(list) {
        Some(same_name) => same_name.live(),
        None => Vec::new(),
    };
    // A value that came with the link's loss stays in this process's processing list:
    // its removal could not be sent now, and handed out it would be delivered again
    // when the reconnect's take-back queues it. Taken back, it is popped again.
    if let (Ok(Value::BulkString(bytes)), true) = (&reply, up) {
        handed(shared, list, &objects, bytes);
    }
    if objects.iter().any(|o| o.waiting() > 0) {
        want(shared, list);
    }
}

/// Gives a value this process took to a receiver here (of the first object with the
/// name that has one waiting), or puts it back.
fn handed(shared: &Arc<Shared>, list: &str, objects: &[Arc<dyn Receivers>], bytes: &[u8]) {
    let held = held_key(list, &shared.node);
    let taken = objects.iter().any(|object| match object.hand(bytes) {
        Ok(taken) => taken,
        Err(e) => {
            log::warn!("redis channel {list}: dropping a value that does not decode: {e}");
            true
        }
    });
    let packed = if taken {
        redis::cmd("LREM")
            .arg(held)
            .arg(1)
            .arg(bytes)
            .get_packed_command()
    } else {
        redis::cmd("EVAL")
            .arg(REQUEUE)
            .arg(2)
            .arg(list)
            .arg(held)
            .arg(bytes)
            .get_packed_command()
    };
    bridge::submit(shared, packed, bridge::ignore_reply());
}

/// Gives back a value a receiver took and never got (a worker that died or left
/// before acknowledging it): first in line again, at the end pops take from (never
/// blocks). With Redis unreachable the value is lost, and logged.
pub(crate) fn put_back(shared: &Arc<Shared>, list: &str, bytes: &[u8]) {
    let packed = redis::cmd("RPUSH")
        .arg(list)
        .arg(bytes)
        .get_packed_command();
    let list = list.to_string();
    let logged = Box::new(move |reply: Reply| {
        if let Err(e) = reply {
            log::error!("redis channel {list}: a value given back is lost: {e}");
        }
    });
    bridge::submit(shared, packed, logged);
}

/// Queues a value (never blocks).
pub(crate) fn send(
    shared: &Arc<Shared>,
    list: &str,
    bytes: &[u8],
    done: Box<dyn FnOnce(Result<(), String>) + Send>,
) {
    let packed = redis::cmd("LPUSH")
        .arg(list)
        .arg(bytes)
        .get_packed_command();
    bridge::submit(shared, packed, Box::new(move |reply| done(reply.map(drop))));
}

/// The queue's length (never blocks).
pub(crate) fn len(
    shared: &Arc<Shared>,
    list: &str,
    done: Box<dyn FnOnce(Result<usize, String>) + Send>,
) {
    let packed = redis::cmd("LLEN").arg(list).get_packed_command();
    bridge::submit(
        shared,
        packed,
        Box::new(move |reply| {
            done(reply.map(|v| match v {
                Value::Int(n) => n.max(0) as usize,
                _ => 0,
            }))
        }),
    );
}

/// Takes a value if one is queued (never blocks); `take` receives it, after which it
/// is removed from this process's processing list.
pub(crate) fn try_recv(shared: &Arc<Shared>, list: &str, take: Take) {
    let held = held_key(list, &shared.node);
    let packed = redis::cmd("LMOVE")
        .arg(list)
        .arg(&held)
        .arg("RIGHT")
        .arg("LEFT")
        .get_packed_command();
    let shared2 = Arc::clone(shared);
    bridge::submit(
        shared,
        packed,
        Box::new(move |reply| match reply {
            // Came with the link's loss (see `on_popped`): left for the reconnect's
            // take-back to queue again, and this call fails.
            Ok(Value::BulkString(_)) if !bridge::is_up(&shared2) => take(Err(
                "redis: the connection was lost as the value came; it stays queued".into(),
            )),
            Ok(Value::BulkString(bytes)) => {
                let remove = redis::cmd("LREM")
                    .arg(held)
                    .arg(1)
                    .arg(&bytes)
                    .get_packed_command();
                take(Ok(Some(bytes)));
                bridge::submit(&shared2, remove, bridge::ignore_reply());
            }
            Ok(_) => take(Ok(None)),
            Err(e) => take(Err(e)),
        }),
    );
}
