//! The driver's work on a loop's shared hub link: writing, reading and handing out
//! replies, breaking a failed link, handing the role on, writing out what is left.

use std::time::Instant;

use super::{MUX, Mux, State};
use crate::rt::{self, Interest};
use crate::sync::hub::client::EXCHANGE_TIMEOUT;
use crate::sync::hub::protocol::status;

/// Writes what the link takes and reads every reply there is, handing each to its
/// call. A failure breaks the link: every call on it fails.
pub(super) fn pump(mux: &mut Mux) {
    let Some(link) = mux.link.as_mut() else {
        return;
    };
    let calls = &mut mux.calls;
    let result = link.flush().and_then(|()| {
        link.read(|link, status, id, payload| {
            match calls.get_mut(&id) {
                Some(call) if matches!(call.state, State::Waiting) => {
                    call.state = State::Replied(status, payload);
                    call.waker.wake();
                }
                // Nobody waits for this reply (the call gave up): a value in it goes
                // back to its channel.
                _ if status == status::OK => link.queue_cancel(id),
                _ => {}
            }
        })
    });
    let result = result.and_then(|()| link.flush());
    if let Err(why) = result {
        break_link(mux, &why);
    }
}

/// Writes what the link takes now without waiting; wakes the driver when bytes are
/// left for it.
pub(super) fn send_now(mux: &mut Mux) {
    let Some(link) = mux.link.as_mut() else {
        return;
    };
    if let Err(why) = link.flush() {
        break_link(mux, &why);
        return;
    }
    if link.has_output() {
        if let Some(driver) = link.driver.and_then(|id| mux.calls.get(&id)) {
            driver.waker.wake();
        }
    }
}

/// Closes the link: every call on it fails (and is woken).
pub(super) fn break_link(mux: &mut Mux, why: &str) {
    let Some(link) = mux.link.take() else {
        return;
    };
    rt::forget_fd(link.fd());
    for call in mux.calls.values_mut() {
        if call.generation == link.generation && matches!(call.state, State::Waiting) {
            call.state = State::Failed(why.to_string());
            call.waker.wake();
        }
    }
}

/// Call `id` ended: if it drove the link, hand the role to another waiting call; with
/// none left, write out what is still queued (a cancel, an acknowledgement) before
/// returning.
pub(super) fn resign(id: u64) {
    let leftover = MUX.with(|mux| {
        let mut mux = mux.borrow_mut();
        let mux = &mut *mux;
        if mux.link.as_ref()?.driver != Some(id) {
            return None;
        }
        hand_off(mux, id)
    });
    if let Some(generation) = leftover {
        let _ = drain(generation, u64::MAX);
    }
}

/// Call `id`, the driver, gives the role up: wakes another waiting call of the link
/// to take it. With none, the link's generation if bytes are still queued, for the
/// caller to write out.
pub(super) fn hand_off(mux: &mut Mux, id: u64) -> Option<u64> {
    let link = mux.link.as_mut()?;
    if link.driver != Some(id) {
        return None;
    }
    link.driver = None;
    let generation = link.generation;
    let successor = mux
        .calls
        .values()
        .find(|c| c.generation == generation && matches!(c.state, State::Waiting));
    match successor {
        Some(call) => {
            call.waker.wake();
            None
        }
        None => link.has_output().then_some(generation),
    }
}

/// Waits (up to [`EXCHANGE_TIMEOUT`]) until the bytes queued on link `generation` up to
/// `mark` are written (`u64::MAX`: all of them).
pub(super) fn drain(generation: u64, mark: u64) -> Result<(), String> {
    let give_up = Instant::now() + EXCHANGE_TIMEOUT;
    loop {
        let fd = MUX.with(|mux| {
            let mut mux = mux.borrow_mut();
            let mux = &mut *mux;
            let link = mux
                .link
                .as_mut()
                .filter(|l| l.generation == generation)
                .ok_or("hub connection lost")?;
            if let Err(why) = link.flush() {
                break_link(mux, &why);
                return Err(why);
            }
            let link = mux.link.as_ref().ok_or("hub connection lost")?;
            let done = if mark == u64::MAX {
                !link.has_output()
            } else {
                link.written_through(mark)
            };
            Ok((!done).then(|| link.fd()))
        })?;
        let Some(fd) = fd else {
            return Ok(());
        };
        if Instant::now() >= give_up {
            return Err("hub connection: writing timed out".into());
        }
        rt::park_or_ready(&[(fd, Interest::Writable)], Some(give_up)).map_err(|e| e.to_string())?;
    }
}
