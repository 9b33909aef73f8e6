//! Commands that settle a value this process holds in its processing list: the `LREM`
//! after a value was handed to a receiver here, the put-back of one nobody here took.
//!
//! Each must reach Redis before the processing list is taken back on reconnecting
//! (`RECOVER`, see [`queue`](super::queue)): taken back first, a value already handed
//! out would be queued again for a second receiver. So a settling command is kept until
//! Redis answers it; one the connection lost (or that was made while the bridge was not
//! up) goes out again first thing on the next connection, before `RECOVER`.

use std::sync::Arc;

use super::bridge::{Phase, Shared, State};
use super::conn::Reply;

/// The settling commands not answered yet.
#[derive(Debug, Default)]
pub(crate) struct Settling {
    next_id: u64,
    /// `(id, packed command)`, oldest first.
    pending: Vec<(u64, Vec<u8>)>,
}

/// Sends `packed` now if the bridge is up, and keeps it until Redis answers (never
/// blocks).
pub(crate) fn settle(shared: &Arc<Shared>, packed: Vec<u8>) {
    {
        let mut state = shared.state();
        let id = state.settling.next_id;
        state.settling.next_id += 1;
        if state.phase == Phase::Up {
            push(shared, &mut state, id, &packed);
        }
        state.settling.pending.push((id, packed));
    }
    crate::sync::redis::driver::kick(shared);
}

/// Just connected: every settling command goes out again, before anything else.
pub(crate) fn resend(shared: &Arc<Shared>, state: &mut State) {
    let pending = std::mem::take(&mut state.settling.pending);
    for (id, packed) in &pending {
        push(shared, state, *id, packed);
    }
    state.settling.pending = pending;
}

fn push(shared: &Arc<Shared>, state: &mut State, id: u64, packed: &[u8]) {
    let deadline = shared.reply_deadline();
    let Some(cmd) = state.cmd.as_mut() else {
        return;
    };
    let shared = Arc::clone(shared);
    let answered = Box::new(move |reply: Reply| {
        let mut state = shared.state();
        // Answered, either way (an error reply will not change on a retry), unless
        // the connection was lost first: the bridge is then no longer up.
        if reply.is_ok() || state.phase == Phase::Up {
            state.settling.pending.retain(|(pending, _)| *pending != id);
        }
        if let Err(e) = reply {
            log::debug!("redis: settling a processing list: {e}");
        }
    });
    cmd.push(packed, deadline, Some(answered), 1);
}
