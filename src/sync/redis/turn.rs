//! One turn of whichever loop drives a bridge: the time-driven work (reconnects,
//! overdue replies, heartbeats and pops, broadcast counts past their deadline) and the
//! writes, and when the next turn is due.

use std::sync::Arc;
use std::time::Instant;

use mio::Registry;

use crate::sync::redis::bridge::{Deferred, Phase, Shared, State, connect, go_down, run};
use crate::sync::redis::conn::RedisConn;
use crate::sync::redis::queue;

/// Runs the time-driven work and the writes. Call after events and whenever
/// `next_deadline` passes.
pub(crate) fn pump(shared: &Arc<Shared>, registry: &Registry) {
    // Sockets whose last read stopped at its budget: no new edge will come for what
    // they still hold.
    let again = std::mem::take(&mut shared.state().read_again);
    for token in again {
        crate::sync::redis::bridge::on_event(shared, registry, token);
    }
    for _ in 0..4 {
        let deferred = {
            let mut state = shared.state();
            tick(shared, &mut state, registry)
        };
        if deferred.is_empty() {
            return;
        }
        run(deferred);
    }
}

fn tick(shared: &Arc<Shared>, state: &mut State, registry: &Registry) -> Deferred {
    let now = Instant::now();
    let mut deferred = Deferred::new();
    match state.phase {
        Phase::Idle => deferred.extend(connect(shared, state, registry)),
        Phase::Down { retry_at } if now >= retry_at => {
            deferred.extend(connect(shared, state, registry))
        }
        Phase::Connecting { since, .. } if now >= since + shared.config.timeout => {
            let why = "connect or hand-shake timed out".to_string();
            return go_down(shared, state, Some(registry), why);
        }
        _ => {}
    }
    let overdue = state.backlog.iter().any(|queued| queued.deadline <= now);
    if overdue {
        let (late, kept) = std::mem::take(&mut state.backlog)
            .into_iter()
            .partition(|queued| queued.deadline <= now);
        state.backlog = kept;
        let error = format!("redis at {}: not connected in time", shared.config.url);
        for queued in late {
            let error = error.clone();
            deferred.push(Box::new(move || (queued.on_reply)(Err(error))));
        }
    }
    if state.phase == Phase::Up {
        let stuck = conns(state).any(|c| c.deadline().is_some_and(|d| d <= now));
        if stuck {
            let why = format!("no reply within {:?}", shared.config.timeout);
            deferred.extend(go_down(shared, state, Some(registry), why));
            return deferred;
        }
        ping_if_due(shared, state, now);
        deferred.extend(queue::tick(shared, state, registry));
    }
    deferred.extend(state.pubsub.tick(now, shared.config.timeout));
    let mut failed = None;
    for conn in conns_mut(state) {
        if let Err(e) = conn.flush() {
            failed = Some(e.to_string());
        }
    }
    if let Some(why) = failed {
        deferred.extend(go_down(shared, state, Some(registry), why));
    }
    deferred
}

/// Asks the subscriber connection for a `PING` when one is due, it owes nothing else
/// (an owed reply has its own deadline) and nothing arrived on it for as long: no
/// answer in time takes the bridge down and the subscriptions are made again on a new
/// connection. A subscriber still reading a backlog of messages is alive, and its
/// `PONG` would queue behind that backlog.
fn ping_if_due(shared: &Shared, state: &mut State, now: Instant) {
    if state.next_ping.is_none_or(|at| at > now) {
        return;
    }
    let every = shared.config.ping_every();
    state.next_ping = Some(now + every);
    let quiet = |sub: &&mut RedisConn| !sub.busy() && sub.quiet_for() >= every;
    if let Some(sub) = state.sub.as_mut().filter(quiet) {
        let packed = redis::cmd("PING").get_packed_command();
        sub.push(&packed, shared.reply_deadline(), None, 1);
    }
}

fn conns(state: &State) -> impl Iterator<Item = &RedisConn> {
    state
        .cmd
        .iter()
        .chain(state.sub.iter())
        .chain(state.poppers.values())
}

fn conns_mut(state: &mut State) -> impl Iterator<Item = &mut RedisConn> {
    state
        .cmd
        .iter_mut()
        .chain(state.sub.iter_mut())
        .chain(state.poppers.values_mut())
}

/// When `pump` must run next.
pub(crate) fn next_deadline(shared: &Shared) -> Option<Instant> {
    let state = shared.state();
    if !state.read_again.is_empty() {
        return Some(Instant::now());
    }
    let phase = match state.phase {
        Phase::Down { retry_at } => Some(retry_at),
        Phase::Connecting { since, .. } => Some(since + shared.config.timeout),
        Phase::Idle => Some(Instant::now()),
        Phase::Up => [state.queues.next_deadline(), state.next_ping]
            .into_iter()
            .flatten()
            .min(),
    };
    conns(&state)
        .filter_map(RedisConn::deadline)
        .chain(state.backlog.iter().map(|queued| queued.deadline))
        .chain(phase)
        .chain(state.pubsub.next_deadline())
        .min()
}
