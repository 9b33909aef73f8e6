//! The loop of every model whose parent accepts: wait for the listener, the wake-up
//! pipe and (for process-based models) the hub; accept; hand each connection to the
//! mix-in's `process_request`; then drain on shutdown.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::mixin::MixIn;
use crate::server::Context;
use crate::sync::hub::HubServer;
use crate::sys::fork;
use std::os::fd::{AsRawFd, RawFd};

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// Tokens from here on belong to the hub.
const HUB_FIRST: usize = 2;

/// Marks the loop's own fds to be closed in forked children, for as long as it runs.
struct CloseInChildren(Vec<RawFd>);

impl CloseInChildren {
    fn new(fds: &[RawFd]) -> CloseInChildren {
        fds.iter().for_each(|&fd| fork::close_in_child(fd));
        CloseInChildren(fds.to_vec())
    }
}

impl Drop for CloseInChildren {
    fn drop(&mut self) {
        self.0.iter().for_each(|&fd| fork::forget_in_child(fd));
    }
}

/// Runs the parent-accepts loop until shutdown, then drains. `hub`, when given, serves
/// shared objects to forked children from this same loop.
pub fn serve<M: MixIn + ?Sized>(
    mixin: &mut M,
    ctx: &Arc<Context>,
    mut hub: Option<&mut HubServer>,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    ctx.listener().set_nonblocking(true)?;
    let (listener_fd, wake_fd) = (ctx.listener_fd(), ctx.wake_fd());
    let _close_in_children = CloseInChildren::new(&[poll.as_raw_fd(), listener_fd]);
    poll.registry()
        .register(&mut SourceFd(&wake_fd), WAKE, Interest::READABLE)?;
    if let Some(hub) = hub.as_deref_mut() {
        hub.register(poll.registry(), HUB_FIRST)?;
    }
    let mut listening = false;
    let mut events = Events::with_capacity(1024);
    while !ctx.is_shutting_down() {
        let want = mixin.can_accept();
        if want != listening {
            if want {
                poll.registry().register(
                    &mut SourceFd(&listener_fd),
                    LISTENER,
                    Interest::READABLE,
                )?;
            } else {
                poll.registry().deregister(&mut SourceFd(&listener_fd))?;
            }
            listening = want;
        }
        let timeout = hub
            .as_deref()
            .and_then(|hub| hub.next_deadline())
            .map(|d| {
                d.saturating_duration_since(Instant::now())
                    .min(ctx.poll_interval())
            })
            .unwrap_or(ctx.poll_interval());
        wait(&mut poll, &mut events, timeout)?;
        for event in events.iter() {
            match event.token() {
                LISTENER => {
                    if !accept_ready(mixin, ctx) {
                        // Stopped before WouldBlock: re-arm the edge-triggered listener.
                        poll.registry().deregister(&mut SourceFd(&listener_fd))?;
                        listening = false;
                    }
                }
                WAKE => on_wake(ctx),
                token => {
                    if let Some(hub) = hub.as_deref_mut() {
                        hub.on_event(poll.registry(), token, event);
                    }
                }
            }
        }
        if let Some(hub) = hub.as_deref_mut() {
            hub.expire_timeouts(poll.registry());
        }
        mixin.service_actions(ctx);
        ctx.service_actions();
    }
    if listening {
        poll.registry().deregister(&mut SourceFd(&listener_fd))?;
    }
    drain(mixin, ctx, &mut poll, &mut events, hub)
}

/// Accepts until the listener is empty. Returns false if it stopped early (no
/// capacity, or an accept error), so the caller re-arms the edge-triggered listener.
fn accept_ready<M: MixIn + ?Sized>(mixin: &mut M, ctx: &Arc<Context>) -> bool {
    loop {
        if !mixin.can_accept() {
            return false;
        }
        let conn = match ctx.get_request() {
            Ok(Some(conn)) => conn,
            Ok(None) => return true,
            Err(e) => {
                log::warn!("accept failed: {e}");
                return false;
            }
        };
        if !ctx.verify_request(&conn) {
            continue;
        }
        if let Err(e) = mixin.process_request(ctx, conn) {
            log::warn!("{}: process_request failed: {e}", mixin.name());
        }
    }
}

fn wait(poll: &mut Poll, events: &mut Events, timeout: Duration) -> io::Result<()> {
    match poll.poll(events, Some(timeout)) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        other => other,
    }
}

/// The wake-up pipe fired: a shutdown request or a signal.
fn on_wake(ctx: &Context) {
    ctx.shutdown.clear_wakeups();
    ctx.shutdown.take_stop_signals();
}

/// Graceful end: tell connections to finish, answer every pending waiter, wait for
/// in-flight work (still serving the hub) up to the shutdown timeout, then force it.
fn drain<M: MixIn + ?Sized>(
    mixin: &mut M,
    ctx: &Arc<Context>,
    poll: &mut Poll,
    events: &mut Events,
    mut hub: Option<&mut HubServer>,
) -> io::Result<()> {
    ctx.shutdown.begin_drain();
    crate::sync::close_waiters_of(ctx.scope());
    if let Some(hub) = hub.as_deref_mut() {
        hub.close_waiters(poll.registry());
    }
    let deadline = Instant::now() + ctx.shutdown_timeout();
    while mixin.in_flight() > 0 && Instant::now() < deadline && !ctx.shutdown.is_fast() {
        wait(poll, events, Duration::from_millis(20))?;
        for event in events.iter() {
            match event.token() {
                LISTENER => {}
                WAKE => on_wake(ctx),
                token => {
                    if let Some(hub) = hub.as_deref_mut() {
                        hub.on_event(poll.registry(), token, event);
                    }
                }
            }
        }
        mixin.service_actions(ctx);
    }
    mixin.server_close(ctx);
    if let Some(hub) = hub {
        hub.close(poll.registry());
    }
    Ok(())
}
