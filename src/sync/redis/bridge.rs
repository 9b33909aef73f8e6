//! The bridge: one process's connections to one Redis server, as a non-blocking state
//! machine that any mio loop can drive — a helper thread's loop in thread and coroutine
//! models, the master's loop in process models (see `driver`).
//!
//! It owns a command connection, a subscriber connection and, per `Channel` with
//! receivers here, a connection for the blocking pop. It is up when all of them have
//! finished their hand-shake; any failure (a lost connection, a reply overdue) takes
//! it down as a whole: every pending caller gets an error at once, and it reconnects
//! after an exponential back-off with jitter. While down, commands fail at once; while
//! connecting they wait for the connection, never longer than their reply deadline.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use crate::sync::lock;
use crate::sync::redis::config::Config;
use crate::sync::redis::conn::{OnReply, RedisConn, Reply};
use crate::sync::redis::driver::Driver;
use crate::sync::redis::{pubsub, queue};

/// Work to run once the bridge's lock is released (reply handlers, message handling).
pub(crate) type Deferred = Vec<Box<dyn FnOnce() + Send>>;

/// Loop tokens of bridge sockets start here, far above any other user of a loop.
pub(crate) const TOKEN_BASE: usize = 1 << 40;
static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(TOKEN_BASE);

/// Longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the link must stay up for its next loss to start the pauses over: one lost
/// soon after the hand-shake (a connection opened later refused, say at `maxclients`)
/// keeps backing off instead of reconnecting 15 times a second.
const STABLE_UP: Duration = Duration::from_secs(10);

/// One process's link to one Redis server, shared by the objects on it.
pub(crate) struct Shared {
    /// Where Redis is, and the timeouts.
    pub(crate) config: Config,
    /// This process's id in the cluster (random; names its ack channel and lists).
    pub(crate) node: String,
    state: Mutex<State>,
    /// Who drives the bridge (see `driver`).
    pub(crate) driver: Mutex<Driver>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("url", &self.config.url)
            .field("node", &self.node)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    /// Never driven yet: commands wait in the backlog.
    Idle,
    /// Connecting (`first`: never up before); commands wait in the backlog, each no
    /// longer than its reply deadline.
    Connecting { first: bool, since: Instant },
    /// Every connection finished its hand-shake and the subscriptions are confirmed.
    Up,
    /// Lost; commands fail at once until the reconnect at `retry_at`.
    Down { retry_at: Instant },
}

/// A command waiting for the connection.
pub(super) struct Queued {
    packed: Vec<u8>,
    pub(super) deadline: Instant,
    pub(super) on_reply: OnReply,
}

/// The bridge's mutable state, behind `Shared::state`.
pub(crate) struct State {
    pub(super) phase: Phase,
    /// Failed attempts since the link was last up for [`STABLE_UP`].
    attempt: u32,
    /// When the link last came up (while up).
    up_since: Option<Instant>,
    /// Why it went down last.
    last_error: String,
    pub(crate) cmd: Option<RedisConn>,
    pub(super) sub: Option<RedisConn>,
    /// Blocking-pop connections, by list key.
    pub(crate) poppers: HashMap<String, RedisConn>,
    pub(super) backlog: Vec<Queued>,
    /// Broadcast protocol state.
    pub(crate) pubsub: pubsub::PubSub,
    /// Channel protocol state.
    pub(crate) queues: queue::Queues,
    /// When the subscriber connection is asked for a `PING` next (while up): it owes
    /// nothing otherwise, so a link that died quietly would never be noticed.
    pub(super) next_ping: Option<Instant>,
    /// Sockets whose last read stopped at its budget: read again at the next turn.
    pub(super) read_again: Vec<Token>,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Arc<Shared> {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let node = format!("{:016x}", hasher.finish());
        let ack = pubsub::ack_channel(&node);
        Arc::new(Shared {
            config,
            node,
            state: Mutex::new(State {
                phase: Phase::Idle,
                attempt: 0,
                up_since: None,
                last_error: String::new(),
                cmd: None,
                sub: None,
                poppers: HashMap::new(),
                backlog: Vec::new(),
                pubsub: pubsub::PubSub::new(ack),
                queues: queue::Queues::default(),
                next_ping: None,
                read_again: Vec::new(),
            }),
            driver: Mutex::new(Driver::None),
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The deadline for a reply asked for now.
    pub(crate) fn reply_deadline(&self) -> Instant {
        crate::deadline::from_now(self.config.timeout)
    }
}

/// A fresh loop token for a bridge socket.
pub(crate) fn next_token() -> Token {
    Token(NEXT_TOKEN.fetch_add(1, Ordering::Relaxed))
}

/// Sends one packed command on the command connection; `on_reply` gets its reply (or
/// the error that it will never come). Never blocks.
pub(crate) fn submit(shared: &Arc<Shared>, packed: Vec<u8>, on_reply: OnReply) {
    let refused = {
        let mut state = shared.state();
        let deadline = shared.reply_deadline();
        match state.phase {
            Phase::Up => {
                if let Some(cmd) = state.cmd.as_mut() {
                    cmd.push(&packed, deadline, Some(on_reply), 1);
                    None
                } else {
                    Some(on_reply)
                }
            }
            // Sent once connected (within the reply deadline) or failed with the rest.
            Phase::Idle | Phase::Connecting { .. } => {
                state.backlog.push(Queued {
                    packed,
                    deadline,
                    on_reply,
                });
                None
            }
            _ => Some(on_reply),
        }
    };
    match refused {
        Some(on_reply) => on_reply(Err(unavailable(shared))),
        None => crate::sync::redis::driver::kick(shared),
    }
}

/// The error of a command refused while Redis is down.
pub(crate) fn unavailable(shared: &Shared) -> String {
    let why = shared.state().last_error.clone();
    format!("redis at {} is unavailable ({why})", shared.config.url)
}

pub(super) fn connect(shared: &Arc<Shared>, state: &mut State, registry: &Registry) -> Deferred {
    let first = matches!(state.phase, Phase::Idle);
    let deadline = shared.reply_deadline();
    let opened = RedisConn::open(
        shared.config.addr,
        next_token(),
        registry,
        shared.config.timeout,
    )
    .and_then(|cmd| {
        RedisConn::open(
            shared.config.addr,
            next_token(),
            registry,
            shared.config.timeout,
        )
        .map(|sub| (cmd, sub))
    });
    let (mut cmd, mut sub) = match opened {
        Ok(pair) => pair,
        Err(e) => return go_down(shared, state, Some(registry), format!("connect: {e}")),
    };
    for packed in shared.config.handshake() {
        cmd.push(&packed, deadline, None, 1);
        sub.push(&packed, deadline, None, 1);
    }
    cmd.push(&redis::cmd("PING").get_packed_command(), deadline, None, 1);
    let channels = state.pubsub.channels();
    let mut subscribe = redis::cmd("SUBSCRIBE");
    for channel in &channels {
        subscribe.arg(channel.as_slice());
    }
    sub.push(
        &subscribe.get_packed_command(),
        deadline,
        None,
        channels.len(),
    );
    state.cmd = Some(cmd);
    state.sub = Some(sub);
    state.phase = Phase::Connecting {
        first,
        since: Instant::now(),
    };
    Deferred::new()
}

/// Subscribes the subscriber connection to one more channel (when up; otherwise the
/// next connect subscribes it).
pub(crate) fn subscribe(shared: &Arc<Shared>, channel: &[u8]) {
    let mut state = shared.state();
    let deadline = shared.reply_deadline();
    if let Some(sub) = state.sub.as_mut() {
        let packed = redis::cmd("SUBSCRIBE").arg(channel).get_packed_command();
        sub.push(&packed, deadline, None, 1);
    }
    drop(state);
    crate::sync::redis::driver::wake(shared);
}

/// Takes the bridge down: closes every connection, fails every pending caller, and
/// schedules the reconnect.
pub(super) fn go_down(
    shared: &Arc<Shared>,
    state: &mut State,
    registry: Option<&Registry>,
    why: String,
) -> Deferred {
    if state.phase == Phase::Up {
        log::warn!(
            "redis at {}: connection lost ({why}); reconnecting",
            shared.config.url
        );
    } else {
        log::debug!("redis at {}: {why}", shared.config.url);
    }
    state.last_error = why;
    let mut failed = close_all(state, registry);
    failed.extend(state.backlog.drain(..).map(|queued| queued.on_reply));
    let error = format!(
        "redis at {} is unavailable ({})",
        shared.config.url, state.last_error
    );
    let mut deferred: Deferred = failed
        .into_iter()
        .map(|on_reply| {
            let error = error.clone();
            Box::new(move || on_reply(Err(error))) as Box<dyn FnOnce() + Send>
        })
        .collect();
    deferred.extend(state.pubsub.on_down(&error));
    state.queues.on_down();
    if stayed_up(state.up_since.take(), Instant::now()) {
        state.attempt = 0;
    }
    state.phase = Phase::Down {
        retry_at: Instant::now() + backoff(state.attempt),
    };
    state.attempt = state.attempt.saturating_add(1);
    deferred
}

/// Whether a link up since `since` (if it came up) stayed up long enough, by `now`, for
/// its loss to start the reconnect pauses over.
fn stayed_up(since: Option<Instant>, now: Instant) -> bool {
    since.is_some_and(|since| now.saturating_duration_since(since) >= STABLE_UP)
}

/// Closes every connection; returns the handlers still owed a reply.
fn close_all(state: &mut State, registry: Option<&Registry>) -> Vec<OnReply> {
    let mut failed = Vec::new();
    let conns = state.cmd.take().into_iter().chain(state.sub.take());
    let conns: Vec<RedisConn> = conns.chain(state.poppers.drain().map(|(_, c)| c)).collect();
    for conn in conns {
        failed.extend(conn.close(registry));
    }
    failed
}

/// Exponential back-off, 50 ms doubling to `MAX_BACKOFF`, with ±50 % jitter so many
/// servers do not reconnect in step.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(50)
        .saturating_mul(1u32 << attempt.min(10))
        .min(MAX_BACKOFF);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let jitter = 0.5 + (hasher.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(jitter)
}

/// Handles readiness of one of the bridge's sockets.
pub(crate) fn on_event(shared: &Arc<Shared>, registry: &Registry, token: Token) {
    let mut state = shared.state();
    // A failed write still lets the read take the replies already here; the write's
    // error is the one reported (a connect that failed reads as a close).
    let incoming = with_conn(&mut state, token, |conn, subscriber| {
        let flushed = conn.flush();
        let mut incoming = conn.read(subscriber);
        if let Err(error) = flushed {
            incoming.lost = Some(error.to_string());
        }
        incoming
    });
    let Some(mut incoming) = incoming else {
        return;
    };
    let lost = incoming.lost.take();
    let mut replies = Deferred::new();
    for (on_reply, reply) in incoming.replies {
        if let Some(on_reply) = on_reply {
            replies.push(Box::new(move || on_reply(reply)));
        }
    }
    let mut messages = Deferred::new();
    for (channel, payload) in incoming.messages {
        let shared = Arc::clone(shared);
        messages.push(Box::new(move || {
            pubsub::on_message(&shared, &channel, &payload)
        }));
    }
    let Some(why) = lost else {
        if incoming.more && !state.read_again.contains(&token) {
            state.read_again.push(token);
        }
        let mut deferred = replies;
        deferred.extend(messages);
        deferred.extend(check_up(shared, &mut state));
        drop(state);
        run(deferred);
        return;
    };
    // What came before the loss: the messages are handled as if the link still held (a
    // release finds its batch); then the link goes down; then the replies run, and see
    // it down. A popped value that came with the loss is then not handed out: its
    // removal from the processing list could not be sent, and the reconnect's take-back
    // would queue it again for a second receiver (see `queue::on_popped`).
    drop(state);
    run(messages);
    let mut state = shared.state();
    let down = match with_conn(&mut state, token, |_, _| ()) {
        Some(()) => go_down(shared, &mut state, Some(registry), why),
        None => Deferred::new(),
    };
    drop(state);
    run(down);
    run(replies);
}

/// True while the bridge is up: a command submitted now goes out on its connection.
pub(crate) fn is_up(shared: &Shared) -> bool {
    shared.state().phase == Phase::Up
}

/// Runs `f` on the connection with `token`; `None` if the bridge has none.
fn with_conn<R>(
    state: &mut State,
    token: Token,
    f: impl FnOnce(&mut RedisConn, bool) -> R,
) -> Option<R> {
    if let Some(conn) = state.cmd.as_mut().filter(|c| c.token == token) {
        return Some(f(conn, false));
    }
    if let Some(conn) = state.sub.as_mut().filter(|c| c.token == token) {
        return Some(f(conn, true));
    }
    let conn = state.poppers.values_mut().find(|c| c.token == token)?;
    Some(f(conn, false))
}

/// True if one of the bridge's sockets has this token.
pub(crate) fn owns(shared: &Shared, token: Token) -> bool {
    let mut state = shared.state();
    with_conn(&mut state, token, |_, _| ()).is_some()
}

/// Connecting and every hand-shake answered: up. The backlog goes out now.
fn check_up(shared: &Arc<Shared>, state: &mut State) -> Deferred {
    let Phase::Connecting { first, .. } = state.phase else {
        return Deferred::new();
    };
    let ready = [&state.cmd, &state.sub]
        .iter()
        .all(|c| c.as_ref().is_some_and(|c| !c.busy()));
    if !ready {
        return Deferred::new();
    }
    if !first {
        log::info!("redis at {}: reconnected", shared.config.url);
    }
    state.phase = Phase::Up;
    state.up_since = Some(Instant::now());
    state.next_ping = Some(Instant::now() + shared.config.ping_every());
    // First take back what this process held before it (re)connected: a `try_recv` in
    // the backlog moves a value into that same processing list, and run after it the
    // take-back would put that value back on the queue for a second receiver.
    state.queues.on_up(shared, state.cmd.as_mut());
    let backlog = std::mem::take(&mut state.backlog);
    if let Some(cmd) = state.cmd.as_mut() {
        for queued in backlog {
            cmd.push(&queued.packed, queued.deadline, Some(queued.on_reply), 1);
        }
    }
    Deferred::new()
}

/// Closes every connection and fails what is pending; the bridge starts over (idle)
/// when driven again. The host loop is going away.
pub(crate) fn stop(shared: &Arc<Shared>, registry: Option<&Registry>) {
    let deferred = {
        let mut state = shared.state();
        state.phase = Phase::Idle;
        let deferred = go_down(shared, &mut state, registry, "server stopped".into());
        state.phase = Phase::Idle;
        state.attempt = 0;
        deferred
    };
    run(deferred);
}

/// In a forked child: forgets the inherited sockets without closing them again.
pub(crate) fn abandon(shared: &Shared) {
    let mut state = shared.state();
    let conns = state.cmd.take().into_iter().chain(state.sub.take());
    let conns: Vec<RedisConn> = conns.chain(state.poppers.drain().map(|(_, c)| c)).collect();
    conns.into_iter().for_each(RedisConn::abandon);
    state.backlog.clear();
    state.phase = Phase::Idle;
}

pub(crate) fn run(deferred: Deferred) {
    for work in deferred {
        // A release runs the application's code (the value's `Clone`, or its `Wire`
        // for a worker's wait), and this loop drives every Redis object of the process
        // (in a master, every worker's too): a panic there ends only that release,
        // whose waiters are answered with an error as it unwinds.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
            log::error!("redis: a completion panicked (a released value's Clone or Wire::encode?)");
        }
    }
}

/// The handler of a command whose reply nobody needs (heartbeats, confirmations); a
/// failure is only logged.
pub(crate) fn ignore_reply() -> OnReply {
    Box::new(|reply: Reply| {
        if let Err(e) = reply {
            log::debug!("redis: {e}");
        }
    })
}

#[cfg(test)]
#[path = "bridge_tests.rs"]
mod tests;
