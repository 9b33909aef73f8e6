//! Taking a worker's connection: the hub's accept loop (retried later after `EMFILE`
//! and friends) and the admission of a trusted peer under its per-worker limit.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use super::{ACCEPT_RETRY, HubServer};

/// Connections accepted in one turn of the master's loop. The abstract name is open to
/// any local process and credentials are read only after `accept`, so without a cap
/// a process connecting in a loop would hold the master here, with workers unreaped,
/// signals unread and every worker's call unanswered (a review saw 37 s).
const ACCEPTS_PER_TURN: usize = 64;
use crate::sync::hub::peer::Peer;
use crate::sys::fork;

impl HubServer {
    /// Accepts up to [`ACCEPTS_PER_TURN`] connections; when that many came, looks
    /// again on the next turn without blocking (the edge-triggered listener will not
    /// say that more wait).
    pub(super) fn accept(&mut self, registry: &Registry) {
        self.accept_retry = None;
        for _ in 0..ACCEPTS_PER_TURN {
            let accepted = match self.injected_accept_failure() {
                Some(failure) => Err(failure),
                None => self.listener.accept(),
            };
            match accepted {
                Ok((stream, _)) => self.admit(registry, stream),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the worker waits in the backlog
                    // until fds are free again.
                    log::warn!("hub accept: {e}; retrying in {ACCEPT_RETRY:?}");
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
        self.accept_retry = Some(Instant::now());
    }

    /// A test's stand-in for running out of fds; never in a real build.
    #[cfg(not(test))]
    fn injected_accept_failure(&mut self) -> Option<io::Error> {
        None
    }

    #[cfg(test)]
    fn injected_accept_failure(&mut self) -> Option<io::Error> {
        let fail = self.failing_accepts > 0;
        self.failing_accepts = self.failing_accepts.saturating_sub(1);
        fail.then(|| io::Error::from_raw_os_error(libc::EMFILE))
    }

    /// Closes the connection with nothing open on it that has been quiet longest; false
    /// if every connection has a call open.
    fn close_longest_idle(&mut self, registry: &Registry) -> bool {
        let quietest = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.nothing_open())
            .min_by_key(|(_, peer)| peer.active())
            .map(|(&token, _)| token);
        quietest.is_some_and(|token| {
            self.drop_peer(registry, token);
            true
        })
    }

    /// Keeps a connection from a trusted worker under its limit; closes any other.
    fn admit(&mut self, registry: &Registry, mut stream: mio::net::UnixStream) {
        let pid = match self.trust.check(&stream) {
            Ok(pid) => pid,
            Err(why) => {
                self.refusals.note(&why);
                return;
            }
        };
        let held = self.per_pid.get(&pid).copied().unwrap_or(0);
        if held >= self.per_worker_limit {
            self.refusals
                .note(&format!("worker {pid} already holds {held} (the limit)"));
            return;
        }
        // The master's own fds come first: past its room it would run out of them for
        // workers' control sockets and the connections it accepts. An idle connection
        // (a worker thread's spare) makes way, so a notify still finds one.
        if self.peers.len() >= self.room && !self.close_longest_idle(registry) {
            self.refusals.note(&format!(
                "the hub holds {} connections, all the master's open-file limit leaves room \
                 for, each with a call open",
                self.peers.len()
            ));
            return;
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) =
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("hub: cannot register a connection of worker {pid}: {e}");
            return;
        }
        fork::close_in_child(stream.as_raw_fd());
        *self.per_pid.entry(pid).or_default() += 1;
        self.peers.insert(token, Peer::new(stream, pid));
    }
}
