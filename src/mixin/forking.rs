//! [`Forking`]: a new child process per connection.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::conn::Conn;
use crate::mixin::MixIn;
use crate::mixin::serve_loop::{self, Takes};
use crate::mixin::settings::settings;
use crate::server::source::Source;
use crate::server::{ConfigCheck, ConfigError, Context};
use crate::status::StatusHandle;
use crate::sync::hub::HubServer;
use crate::sys::drain_signal;
use crate::sys::fork::{self, Forked, SingleThreaded};

/// One child process per connection (UNP row 1), as socketserver's `ForkingMixIn`.
///
/// The parent accepts, forks, closes its copy of the connection at once and goes back
/// to accepting; the child runs the handler and exits with `_exit` — it never returns
/// into the parent's loop. Children are reaped on `SIGCHLD` and on every turn of the
/// loop. The parent stays single-threaded (it refuses to start otherwise) and serves
/// the [shared objects](crate::sync) created before it started to its children, so a
/// `/notify` in one child releases `/wait`s in all the others.
///
/// At [`max_children`](Forking::max_children) the parent stops accepting until a child
/// exits (connections wait in the backlog). One child is always kept free of
/// shared-object waits: a `/wait` that would take the last one fails at once (`503`),
/// so a `/notify` can still be served.
///
/// Each child counts its [live status](crate::status) gauges (in flight, waiting) in a
/// slot of its own, which the parent empties when it reaps the child: a child killed
/// mid-request leaves nothing counted. (There are at most 65 536 slots: with a higher
/// `max_children`, the children beyond them count together, and such a child killed
/// mid-request leaves its gauges raised.)
#[derive(Debug)]
pub struct Forking {
    /// At most this many children at once.
    max_children: usize,
    /// Live children, each with its slot of status gauges (if it got one).
    children: HashMap<Pid, Option<usize>>,
    /// The live status, once `serve_forever` mapped the children's gauge slots.
    status: Option<StatusHandle>,
    /// Gauge slots no live child holds.
    free_slots: Vec<usize>,
    /// Checked when the loop starts; the key to `fork`.
    single_threaded: Option<SingleThreaded>,
    /// The children were told that the drain began.
    told_drain: bool,
}

settings!(Forking {
    /// Caps the number of live children.
    fn max_children(max: usize) { max_children = max }
});

impl Forking {
    /// The default cap: enough for a thousand comet waiters plus their notifier, well
    /// under the machine's `pid_max`.
    pub const DEFAULT_MAX_CHILDREN: usize = 2048;

    /// Child per connection, at most [`DEFAULT_MAX_CHILDREN`](Self::DEFAULT_MAX_CHILDREN).
    pub fn new() -> Forking {
        Forking {
            max_children: Forking::DEFAULT_MAX_CHILDREN,
            children: HashMap::new(),
            status: None,
            free_slots: Vec::new(),
            single_threaded: None,
            told_drain: false,
        }
    }

    fn reap(&mut self) {
        for (pid, code) in fork::reap_exited() {
            let Some(slot) = self.children.remove(&pid) else {
                continue;
            };
            if code != 0 {
                log::debug!("forking: child {pid} exited with {code}");
            }
            self.give_back(slot);
        }
    }

    /// Gives back the gauge slot of a child that is gone — with whatever the child
    /// still counted there (killed mid-request, it could not take it back itself).
    fn give_back(&mut self, slot: Option<usize>) {
        if let (Some(slot), Some(status)) = (slot, &self.status) {
            status.board().clear_child_slot(slot);
            self.free_slots.push(slot);
        }
    }

    /// One slot of status gauges per child (see [`crate::status`]); without it (the
    /// mapping failed), the children count in the server's row and one killed
    /// mid-request leaves its gauges raised.
    fn map_child_slots(&mut self, ctx: &Arc<Context>) {
        if self.status.is_some() {
            return;
        }
        let status = ctx.status();
        match status.board().map_child_slots(self.max_children) {
            Ok(slots) => {
                self.free_slots = (0..slots).rev().collect();
                self.status = Some(status);
            }
            Err(error) => log::warn!("forking: no status slots for the children: {error}"),
        }
    }
}

impl MixIn for Forking {
    fn name(&self) -> &'static str {
        "forking"
    }

    fn validate(&self) -> Result<(), ConfigError> {
        ConfigCheck(self.name()).at_least("max_children", self.max_children, 1)
    }

    /// The common loop over the listener, whose waits also serve the hub.
    fn serve_forever(&mut self, ctx: &Arc<Context>) -> io::Result<()> {
        self.single_threaded = Some(SingleThreaded::check("forking")?);
        self.map_child_slots(ctx);
        let hub = HubServer::bind(Arc::clone(ctx.scope()))?;
        let source = Source::open(ctx, Some(hub))?;
        serve_loop::serve(self, ctx, &source, Takes::Connections);
        self.single_threaded = None;
        Ok(())
    }

    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        // Outside serve_forever (Server::handle_request) check now; no hub runs then,
        // so shared objects are not reachable from that child.
        if self.single_threaded.is_none() {
            self.single_threaded = Some(SingleThreaded::check("forking")?);
        }
        let slot = self.free_slots.pop();
        if let (Some(slot), Some(status)) = (slot, &self.status) {
            status.board().clear_child_slot(slot);
        }
        let proof = self.single_threaded.as_ref().expect("checked above");
        let forked = match fork::fork(proof) {
            Ok(forked) => forked,
            Err(error) => {
                self.free_slots.extend(slot);
                return Err(error);
            }
        };
        match forked {
            Forked::Child => {
                if let Some(slot) = slot {
                    crate::status::enter_child_slot(slot);
                }
                fork::after_fork_in_child();
                ctx.spare_fd().close_in_child();
                crate::sys::signal::ignore_group_signals();
                crate::sync::hub::after_fork_in_child();
                // The parent's drain reaches this child's connection too.
                let _ = crate::sys::drain_signal::follow_parent_drain(ctx.shutdown.drain_flag());
                // Only now: a drain signal sent since the fork reaches the handler just
                // installed (released earlier, it would meet SIGURG's default: ignored).
                fork::release_signals_in_child();
                // Never unwind into the parent's loop: its destructors would act on the
                // parent's children and fds.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    ctx.finish_request(conn)
                }));
                fork::exit_child(if served.is_ok() { 0 } else { 101 });
            }
            Forked::Parent(pid) => {
                self.children.insert(pid, slot);
                drop(conn);
                Ok(())
            }
        }
    }

    /// Reaps children; once the drain began, tells each child, so the response it is
    /// writing goes out with `Connection: close`.
    fn service_actions(&mut self, ctx: &Arc<Context>) {
        self.reap();
        let draining = ctx.shutdown.drain_flag().is_draining();
        if draining != self.told_drain {
            self.told_drain = draining;
            if draining {
                self.children
                    .keys()
                    .for_each(|&child| drain_signal::tell(child));
            }
        }
    }

    fn can_accept(&self) -> bool {
        self.children.len() < self.max_children
    }

    fn max_blocked(&self) -> Option<usize> {
        Some(self.max_children - 1)
    }

    fn in_flight(&self) -> usize {
        self.children.len()
    }

    fn server_close(&mut self, _ctx: &Arc<Context>) {
        self.reap();
        for &pid in self.children.keys() {
            fork::kill(pid, Signal::SIGKILL);
        }
        let children: Vec<_> = self.children.drain().collect();
        for (pid, slot) in children {
            fork::wait_child(pid);
            self.give_back(slot);
        }
    }
}
