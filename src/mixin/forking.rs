//! [`Forking`]: a new child process per connection.

use std::collections::HashSet;
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
#[derive(Debug)]
pub struct Forking {
    /// At most this many children at once.
    max_children: usize,
    /// Live children.
    children: HashSet<Pid>,
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
            children: HashSet::new(),
            single_threaded: None,
            told_drain: false,
        }
    }

    fn reap(&mut self) {
        for (pid, code) in fork::reap_exited() {
            if self.children.remove(&pid) && code != 0 {
                log::debug!("forking: child {pid} exited with {code}");
            }
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
        let proof = self.single_threaded.as_ref().expect("checked above");
        match fork::fork(proof)? {
            Forked::Child => {
                fork::after_fork_in_child();
                crate::sys::signal::ignore_terminal_signals();
                crate::sync::hub::after_fork_in_child();
                // The parent's drain reaches this child's connection too.
                let _ = crate::sys::drain_signal::follow_parent_drain(ctx.shutdown.drain_flag());
                // Never unwind into the parent's loop: its destructors would act on the
                // parent's children and fds.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    ctx.finish_request(conn)
                }));
                fork::exit_child(if served.is_ok() { 0 } else { 101 });
            }
            Forked::Parent(pid) => {
                self.children.insert(pid);
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
                    .iter()
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
        for &pid in &self.children {
            fork::kill(pid, Signal::SIGKILL);
        }
        for pid in self.children.drain() {
            fork::wait_child(pid);
        }
    }
}
