//! Stopping a server: the flag, the self-pipe that wakes its loop, and the handle
//! other threads use.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::conn::Drain;
use crate::sys::accept;
use crate::sys::pipe::SelfPipe;

/// How far a server is in stopping; shared by the loop, its connections and the handles.
#[derive(Debug)]
pub(crate) struct ShutdownState {
    /// Set by `ShutdownHandle::shutdown` or a signal: stop accepting.
    requested: AtomicBool,
    /// Set with `requested` when in-flight work should not be waited for (SIGQUIT).
    fast: AtomicBool,
    /// Set by the loop when it stops accepting: connections finish the request in hand
    /// (idle ones close at once).
    draining: Arc<Drain>,
    /// Wakes the loop; the signal handler writes to it too. A child forked from this
    /// process does not hold it.
    pipe: SelfPipe,
    /// The process that made this state: only it writes to the pipe and closes the
    /// listener. A child forked from it (a worker, a forking model's child) no longer
    /// holds the pipe; a handle used there has nothing to wake.
    owner: u32,
    /// The listener a stop closes to new connections at once (none in a preforked
    /// worker: the master closes the shared one).
    gate: Option<Gate>,
    /// The model, when it is not a preforked master: SIGUSR2 and SIGHUP, which only a
    /// master acts on, are then taken here, logged and ignored.
    single_process: OnceLock<&'static str>,
}

/// The listener a graceful stop closes at once, so new clients are refused instead of
/// waiting in a backlog nobody will accept from.
#[derive(Debug)]
struct Gate {
    listener: RawFd,
    backlog: i32,
    closed: AtomicBool,
    /// The listener closed with its server: the number may name another socket now.
    gone: AtomicBool,
    /// Held while the listener is shut down, and while `gone` is set before it closes:
    /// a stop from another thread that saw it not gone finishes before the number can
    /// be reused.
    using: Mutex<()>,
}

impl Gate {
    /// Shuts the listener down, unless another master shares it (a binary upgrade):
    /// that would stop it for both.
    fn close(&self) {
        let _using = self.using.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.gone.load(Ordering::SeqCst)
            && !crate::sys::upgrade::listener_shared()
            && !self.closed.swap(true, Ordering::SeqCst)
        {
            if let Err(e) = accept::stop_listening(self.listener) {
                log::warn!("cannot stop listening at shutdown: {e}");
            }
        }
    }

    /// Listens again after [`close`](Self::close); true if it made a new socket (a
    /// Unix listener's file is then a new one).
    /// `unix_too`: a Unix listener too (it listens again on a new socket at its path,
    /// which is done only when the server serves again: till then the path stays free
    /// for another server and a connect is refused).
    fn reopen(&self, unix_too: bool) -> bool {
        if !unix_too && accept::is_unix(self.listener) {
            return false;
        }
        if !self.gone.load(Ordering::SeqCst) && self.closed.swap(false, Ordering::SeqCst) {
            match accept::listen_again(self.listener, self.backlog) {
                Ok(()) => return true,
                Err(e) => log::error!("cannot listen again after a shutdown: {e}"),
            }
        }
        false
    }
}

impl ShutdownState {
    /// The state of a server listening on `listener`, which a stop closes at once if
    /// the server `owns` it (else it only stops accepting: new clients wait in the
    /// backlog of a socket its maker keeps).
    pub(crate) fn new(listener: RawFd, backlog: i32, owns: bool) -> io::Result<ShutdownState> {
        let gate = owns.then(|| Gate {
            listener,
            backlog,
            closed: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            using: Mutex::new(()),
        });
        Ok(ShutdownState {
            gate,
            ..ShutdownState::sharing_drain(Arc::new(Drain::new()))?
        })
    }

    /// A fresh state (its own wake-up pipe) whose drain flag is `draining`: a
    /// preforked worker's, sharing the flag its shared objects were made with.
    pub(crate) fn sharing_drain(draining: Arc<Drain>) -> io::Result<ShutdownState> {
        Ok(ShutdownState {
            requested: AtomicBool::new(false),
            fast: AtomicBool::new(false),
            draining,
            pipe: SelfPipe::new()?,
            owner: std::process::id(),
            gate: None,
            single_process: OnceLock::new(),
        })
    }

    /// Wakes the loop without asking it to stop (a worker slot came free).
    pub(crate) fn wake(&self) {
        if self.owned_here() {
            self.pipe.notify();
        }
    }

    /// Asks for a stop; the listener is closed to new connections at once (only by
    /// the process that made the server: a forked child never closes it).
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if !self.owned_here() {
            return;
        }
        if let Some(gate) = &self.gate {
            gate.close();
        }
        self.pipe.notify();
    }

    fn owned_here(&self) -> bool {
        std::process::id() == self.owner
    }

    /// Turns the stop signals received since the last look into a request — the one
    /// mapping of every model, a preforked master's included: SIGTERM and the first
    /// SIGINT (Ctrl-C) graceful; a second SIGINT, or SIGQUIT, fast. A single-process
    /// server also takes SIGUSR2 and SIGHUP here, logging each as ignored.
    pub(crate) fn take_stop_signals(&self) {
        use crate::sys::signal::{take, take_interrupts};
        use nix::sys::signal::Signal;
        // This server's own view: every server in the process sees each signal.
        let fd = self.signal_fd();
        take(fd, Signal::SIGINT); // counted by `take_interrupts`
        let interrupts = take_interrupts(fd);
        let again = interrupts > 1 || (interrupts == 1 && self.is_requested());
        if take(fd, Signal::SIGQUIT) || again {
            self.request_fast();
        } else if take(fd, Signal::SIGTERM) || interrupts == 1 {
            self.request();
        }
        if let Some(model) = self.single_process.get() {
            let wants = [
                (Signal::SIGUSR2, "a binary upgrade"),
                (Signal::SIGHUP, "replacing the workers"),
            ];
            for (signal, what) in wants {
                if take(fd, signal) {
                    log::warn!(
                        "{signal} ignored: {what} needs the preforked model (this server runs \
                         {model})"
                    );
                }
            }
        }
    }

    /// Says the server runs `model` in one process (not a preforked master), so
    /// [`take_stop_signals`](Self::take_stop_signals) logs and drops SIGUSR2 and SIGHUP.
    pub(crate) fn set_single_process(&self, model: &'static str) {
        let _ = self.single_process.set(model);
    }

    /// A shutdown that forces in-flight work at once instead of waiting for it.
    pub(crate) fn request_fast(&self) {
        self.fast.store(true, Ordering::SeqCst);
        self.request();
    }

    pub(crate) fn is_fast(&self) -> bool {
        self.fast.load(Ordering::SeqCst)
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The server's listener is closing (its context is dropped): a handle that
    /// outlives it must not shut down whatever socket gets the same fd number.
    pub(crate) fn forget_listener(&self) {
        if let Some(gate) = &self.gate {
            let _using = gate.using.lock().unwrap_or_else(PoisonError::into_inner);
            gate.gone.store(true, Ordering::SeqCst);
        }
    }

    /// Makes a Unix listener stopped by an earlier shutdown listen again, at the start
    /// of the next `serve_forever` or `handle_request`; true if it did. (A TCP one
    /// listens again when the shutdown is reset, so its new address, for a port-0
    /// listener, is known in between.)
    pub(crate) fn reopen(&self) -> bool {
        self.gate.as_ref().is_some_and(|gate| gate.reopen(true))
    }

    /// Clears a finished shutdown so `serve_forever` may be called again; a TCP
    /// listener listens again.
    pub(crate) fn reset(&self) {
        if let Some(gate) = &self.gate {
            gate.reopen(false);
        }
        self.requested.store(false, Ordering::SeqCst);
        self.fast.store(false, Ordering::SeqCst);
        self.draining.reset();
        self.pipe.drain();
    }

    /// Makes this process's drain bell now (see [`Drain::prepare`]).
    pub(crate) fn prepare_drain(&self) {
        self.draining.prepare();
    }

    pub(crate) fn begin_drain(&self) {
        self.draining.begin();
    }

    pub(crate) fn drain_flag(&self) -> Arc<Drain> {
        Arc::clone(&self.draining)
    }

    pub(crate) fn wake_fd(&self) -> RawFd {
        self.pipe.read_fd()
    }

    pub(crate) fn signal_fd(&self) -> RawFd {
        self.pipe.write_fd()
    }

    /// Empties the wake-up pipe after the loop woke.
    pub(crate) fn clear_wakeups(&self) {
        self.pipe.drain();
    }
}

/// Stops a running server from another thread: the socketserver `shutdown()`.
///
/// `shutdown` returns at once; `serve_forever` then stops accepting, lets in-flight
/// connections finish (answering pending waiters of shared objects), and returns.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) state: Arc<ShutdownState>,
}

impl ShutdownHandle {
    /// Asks the server to stop gracefully. Safe to call many times, from any thread.
    pub fn shutdown(&self) {
        self.state.request();
    }
}
