//! A scheduled loop's calls to the hub, multiplexed over one connection.
//!
//! Every coroutine of a loop that calls the hub queues its request on the loop's one
//! [`Link`] and parks; the hub answers each call by its id, in the order calls end.
//! So a worker holds one hub connection per loop however many waits it has pending,
//! and the master one fd per loop, not per waiter.
//!
//! There is no extra coroutine: one of the calling coroutines at a time is the
//! **driver** — it writes what is queued when the socket takes it, reads the replies,
//! hands each to its call and wakes that call's coroutine. When the driver's own call
//! ends it hands the role to another waiting call (or, with none left, writes out what
//! is still queued). Any coroutine queues its frame and writes at once if it can; one
//! that leaves bytes behind wakes the driver to finish them.
//!
//! Ends of a call:
//! - its reply (a received `Channel` value is acknowledged, and the call returns once
//!   the acknowledgement is written, as on a thread);
//! - its client leaves during a wait, or its deadline passes: it sends `CANCEL` with its
//!   id and the hub withdraws the wait (a value already on its way is put back when it
//!   arrives: a reply to a call nobody waits for is answered with `CANCEL` too);
//! - the connection breaks: every call on it fails; each is then retried on a fresh
//!   connection as a thread's call is (a send always, with the same id, which the hub
//!   answers from its log instead of sending twice).
//!
//! Bounds: [`MAX_OUTSTANDING`] calls open and [`link::MAX_OUTPUT`] bytes queued per
//! loop; past them a call fails at once with a clear error.

#[cfg(test)]
mod ack_tests;
mod drive;
mod link;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use drive::{drain, hand_off, pump, resign, send_now};
use link::Link;

use crate::rt::{self, Interest};
use crate::sync::hub::client::{CONNECT_RETRY, connect_hub};
use crate::sync::hub::protocol::{self, MAX_OUTSTANDING, Request, op, status};
use crate::sync::watch;

thread_local! {
    /// This thread's loop's hub connection and open calls. Never borrowed across a park.
    static MUX: RefCell<Mux> = RefCell::new(Mux::default());
}

/// The calls of one loop and the link they share.
#[derive(Debug, Default)]
struct Mux {
    link: Option<Link>,
    /// A coroutine is connecting a fresh link; others wait for it.
    connecting: bool,
    /// Generation of the last link made.
    generations: u64,
    /// Open calls by id.
    calls: HashMap<u64, Call>,
}

/// One open call.
#[derive(Debug)]
struct Call {
    /// The link it was sent on.
    generation: u64,
    waker: rt::Waker,
    state: State,
}

#[derive(Debug)]
enum State {
    Waiting,
    Replied(u8, Vec<u8>),
    Failed(String),
}

/// How one attempt ended.
enum Outcome {
    Replied(u8, Vec<u8>),
    /// The link broke, or the call could not be sent on it.
    Failed(String),
    TimedOut,
    ClientGone,
    /// The loop is shutting down: not worth a retry.
    Stopped,
}

/// In a freshly forked process: forget the parent's link (never write on it).
pub(crate) fn forget() {
    MUX.with(|mux| *mux.borrow_mut() = Mux::default());
}

/// Sends `request` over this loop's shared link and parks until its reply (or
/// `reply_by`). Called on a coroutine only. Retries as the thread path does: once on
/// a fresh link when a reused one failed, and a send up to twice more.
pub(crate) fn call(
    request: &Request<'_>,
    reply_by: Option<Instant>,
) -> Result<(u8, Vec<u8>), String> {
    let frame = protocol::encode_request(request);
    let retry_any_failure = op::is_send(request.op);
    for attempt in 1.. {
        let (generation, reused) = link()?;
        let error = match exchange(request, &frame, generation, reply_by) {
            Outcome::Replied(status, payload) => {
                return acknowledge(request, generation, status, payload);
            }
            Outcome::ClientGone => return Err("the client left".into()),
            Outcome::Stopped => return Err("the coroutine runtime is shutting down".into()),
            Outcome::TimedOut if !retry_any_failure => {
                return Err("hub did not answer in time".into());
            }
            Outcome::TimedOut => "hub did not answer in time".to_string(),
            Outcome::Failed(why) => why,
        };
        let again = attempt < 3 && (retry_any_failure || (reused && attempt == 1));
        if !again {
            return Err(error);
        }
    }
    unreachable!("the retry loop returns")
}

/// The current link's generation, connecting one if there is none; also says whether
/// it existed before this call.
fn link() -> Result<(u64, bool), String> {
    loop {
        let state = MUX.with(|mux| {
            let mut mux = mux.borrow_mut();
            if let Some(link) = &mux.link {
                return Some(Ok(link.generation));
            }
            if mux.connecting {
                return None;
            }
            mux.connecting = true;
            Some(Err(()))
        });
        match state {
            Some(Ok(generation)) => return Ok((generation, true)),
            None => rt::park(Some(Instant::now() + CONNECT_RETRY)),
            Some(Err(())) => {
                let connecting = Connecting;
                let connected = connect_hub();
                drop(connecting);
                return MUX.with(|mux| {
                    let mut mux = mux.borrow_mut();
                    let fd = connected?;
                    mux.generations += 1;
                    let generation = mux.generations;
                    mux.link = Some(Link::new(fd, generation));
                    Ok((generation, false))
                });
            }
        }
    }
}

/// Queues the request on link `generation` and waits for its end.
fn exchange(
    request: &Request<'_>,
    frame: &[u8],
    generation: u64,
    reply_by: Option<Instant>,
) -> Outcome {
    let Some(waker) = rt::current_waker() else {
        return Outcome::Failed("a multiplexed hub call off a coroutine".into());
    };
    let id = request.id;
    let queued = MUX.with(|mux| {
        let mut mux = mux.borrow_mut();
        let mux = &mut *mux;
        let Some(link) = mux.link.as_mut().filter(|l| l.generation == generation) else {
            return Err("hub connection lost".to_string());
        };
        if mux.calls.len() >= MAX_OUTSTANDING {
            return Err(format!(
                "too many hub calls open in this loop (at most {MAX_OUTSTANDING})"
            ));
        }
        link.queue(frame)?;
        let state = State::Waiting;
        mux.calls.insert(
            id,
            Call {
                generation,
                waker,
                state,
            },
        );
        send_now(mux);
        Ok(())
    });
    if let Err(why) = queued {
        return Outcome::Failed(why);
    }
    let cancel = op::takes_value(request.op) || op::is_wait(request.op);
    let enrolled = Enrolled { id, cancel };
    let outcome = wait(id, reply_by, cancel);
    resign(id);
    drop(enrolled);
    outcome
}

/// Clears the connecting mark when dropped, also when the connecting coroutine is
/// unwound in its park (its runtime dropped): other coroutines of this thread would
/// wait for that connection for ever.
struct Connecting;

impl Drop for Connecting {
    fn drop(&mut self) {
        let _ = MUX.try_with(|mux| {
            if let Ok(mut mux) = mux.try_borrow_mut() {
                mux.connecting = false;
            }
        });
    }
}

/// An open call, withdrawn when dropped if it is still open: after a normal end this
/// does nothing, but a coroutine unwound in its park (its runtime dropped with the
/// call pending) must not leave its call behind. Such an entry would keep the link's
/// driver role (no later call on this thread would read the link), take a value the
/// hub sends it and never acknowledge it, and hold its waker.
struct Enrolled {
    id: u64,
    cancel: bool,
}

impl Drop for Enrolled {
    fn drop(&mut self) {
        // Never parks (a coroutine being unwound cannot): writes what the socket
        // takes now; the rest goes out with the link's next call.
        let _ = MUX.try_with(|mux| {
            let Ok(mut mux) = mux.try_borrow_mut() else {
                return;
            };
            let mux = &mut *mux;
            if let Some(call) = mux.calls.remove(&self.id) {
                if let Some(link) = mux
                    .link
                    .as_mut()
                    .filter(|l| l.generation == call.generation)
                {
                    if self.cancel {
                        link.queue_cancel(self.id);
                    }
                }
            }
            if mux.link.as_ref().is_some_and(|l| l.driver == Some(self.id)) {
                hand_off(mux, self.id);
            }
            send_now(mux);
        });
    }
}

/// Parks until call `id` ends, driving the link while it is the driver. A call that
/// gives up (client gone, deadline) is withdrawn; `cancel` says the hub must be told.
fn wait(id: u64, deadline: Option<Instant>, cancel: bool) -> Outcome {
    let client = watch::remote_wait_client();
    loop {
        let role = MUX.with(|mux| {
            let mut mux = mux.borrow_mut();
            let mux = &mut *mux;
            let call = mux.calls.get_mut(&id)?;
            match std::mem::replace(&mut call.state, State::Waiting) {
                State::Waiting => {}
                State::Replied(status, payload) => {
                    mux.calls.remove(&id);
                    return Some(Err(Outcome::Replied(status, payload)));
                }
                State::Failed(why) => {
                    mux.calls.remove(&id);
                    return Some(Err(Outcome::Failed(why)));
                }
            }
            let Some(link) = mux.link.as_mut() else {
                mux.calls.remove(&id);
                return Some(Err(Outcome::Failed("hub connection lost".into())));
            };
            let driver = *link.driver.get_or_insert(id) == id;
            if driver {
                pump(mux);
            }
            Some(Ok(driver.then(|| {
                mux.link.as_ref().map(|l| (l.fd(), l.has_output()))
            })))
        });
        let Some(role) = role else {
            // Only a fork's `forget` drops open calls.
            return Outcome::Failed("hub connection lost".into());
        };
        let driving = match role {
            Err(outcome) => return outcome,
            Ok(driving) => driving,
        };
        if client.is_some() && watch::remote_wait_client_left() {
            withdraw(id, cancel);
            return Outcome::ClientGone;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            withdraw(id, cancel);
            return Outcome::TimedOut;
        }
        let fds = match driving {
            Some(Some((fd, has_output))) => {
                // Loop back first when the pump ended this call.
                if MUX.with(|mux| {
                    mux.borrow()
                        .calls
                        .get(&id)
                        .is_some_and(|c| !matches!(c.state, State::Waiting))
                }) {
                    continue;
                }
                let mut fds = vec![(fd, Interest::Readable)];
                if has_output {
                    fds.push((fd, Interest::Writable));
                }
                fds
            }
            // The pump broke the link: this call failed with it.
            Some(None) => continue,
            None => Vec::new(),
        };
        let fds: Vec<_> = fds
            .into_iter()
            .chain(client.map(|fd| (fd, Interest::Readable)))
            .collect();
        if rt::park_or_ready(&fds, deadline).is_err() {
            withdraw(id, cancel);
            return Outcome::Stopped;
        }
    }
}

/// Call `id` gives up: forget it, and tell the hub when `cancel`.
fn withdraw(id: u64, cancel: bool) {
    MUX.with(|mux| {
        let mut mux = mux.borrow_mut();
        let mux = &mut *mux;
        let Some(call) = mux.calls.remove(&id) else {
            return;
        };
        if let Some(link) = mux
            .link
            .as_mut()
            .filter(|l| l.generation == call.generation)
        {
            if cancel {
                link.queue_cancel(id);
            }
            send_now(mux);
        }
    });
}

/// A received `Channel` value is acknowledged before it is returned: once the ack is
/// written the hub forgets the value; if the link breaks first it puts the value back,
/// so the value must not be used here.
fn acknowledge(
    request: &Request<'_>,
    generation: u64,
    status: u8,
    payload: Vec<u8>,
) -> Result<(u8, Vec<u8>), String> {
    if status != status::OK || !op::takes_value(request.op) {
        return Ok((status, payload));
    }
    let ack = protocol::encode_request(&Request {
        op: op::CHANNEL_ACK,
        payload: &[],
        ..*request
    });
    let lost = |e: String| {
        format!("hub connection lost before the value was acknowledged (the hub keeps it): {e}")
    };
    // An ack that fails to go out must never go out later: the caller drops the value
    // then, and an ack written afterwards would make the hub forget it too. So the link
    // breaks, and the hub puts the value back when it sees the close.
    let give_up = |e: String| {
        MUX.with(|mux| {
            let mut mux = mux.borrow_mut();
            if mux
                .link
                .as_ref()
                .is_some_and(|l| l.generation == generation)
            {
                drive::break_link(&mut mux, &e);
            }
        });
        lost(e)
    };
    let mark = MUX
        .with(|mux| {
            let mut mux = mux.borrow_mut();
            let link = mux
                .link
                .as_mut()
                .filter(|l| l.generation == generation)
                .ok_or("hub connection lost")?;
            link.queue(&ack)
        })
        .map_err(give_up)?;
    drain(generation, mark).map_err(give_up)?;
    Ok((status, payload))
}
