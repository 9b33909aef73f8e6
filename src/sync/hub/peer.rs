//! One worker connection of the hub ([`Peer`]) and the rule that decides who may
//! connect at all ([`Trust`]).
//!
//! The hub listens on an abstract Unix socket, which has no file permissions: any local
//! process can connect. So each accepted connection's `SO_PEERCRED` is checked: the
//! peer must run as this process's effective uid *and* be a live child this process
//! forked (the crate's `fork` records each child and forgets it in the same call that
//! reaps it, so a recycled pid is never taken for a worker). Anyone else is closed at
//! once, before a byte is read. A worker's own children (a handler that forks) are not
//! trusted either.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::UnixStream;

use crate::sync::hub::protocol::MAX_FRAME;
use crate::sync::hub::reply::Held;

/// Replies queued for a peer that does not read them: beyond this it is closed.
pub(crate) const MAX_OUTPUT: usize = 2 * MAX_FRAME;

/// How many hub connections one worker may hold: a thread-based worker uses one per
/// concurrent remote call (a scheduled worker multiplexes its calls over one per loop),
/// but at most half the master's open-file limit, so one worker cannot take every fd
/// of the master (at least 64).
pub(crate) fn per_worker_limit() -> usize {
    crate::sys::fd_passing::open_files_limit()
        .map_or(512, |limit| (limit / 2) as usize)
        .max(64)
}

/// Who may connect: `(pid, uid) -> trusted`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trust(pub(crate) fn(u32, u32) -> bool);

impl Trust {
    /// The master's own live workers, running as the master's user.
    pub(crate) fn workers() -> Trust {
        Trust(|pid, uid| {
            uid == crate::sys::fork::effective_uid() && crate::sys::fork::is_own_child(pid)
        })
    }

    /// Checks a connection's credentials: the peer's pid if it is trusted, else why not.
    pub(crate) fn check(self, stream: &UnixStream) -> Result<u32, String> {
        let credentials =
            nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(|e| format!("no peer credentials ({e})"))?;
        let (pid, uid) = (credentials.pid() as u32, credentials.uid());
        if (self.0)(pid, uid) {
            Ok(pid)
        } else {
            Err(format!(
                "pid {pid} (uid {uid}) is not a worker of this master"
            ))
        }
    }
}

/// Counts refused connections and logs them at most once a second, so a stranger
/// knocking in a loop cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    /// Counts one refusal, logging it unless one was logged in the last second.
    pub(crate) fn note(&mut self, why: &str) {
        if self
            .last_logged
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        let more = std::mem::take(&mut self.unlogged);
        if more > 0 {
            log::warn!("hub: refused a connection: {why} (and {more} more since the last report)");
        } else {
            log::warn!("hub: refused a connection: {why}");
        }
        self.last_logged = Some(Instant::now());
    }
}

/// One trusted worker connection.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) stream: UnixStream,
    /// Bytes read and not yet served: at most one frame (`MAX_FRAME`) plus one read.
    pub(crate) input: Vec<u8>,
    /// Reply bytes not yet written: at most [`MAX_OUTPUT`].
    pub(crate) output: Vec<u8>,
    /// The waits pending on this connection: call id -> (object, waiter key).
    pub(crate) pending: HashMap<u64, (u64, u64)>,
    /// `Channel` values handed over and not yet acknowledged, by call id.
    pub(crate) held: HashMap<u64, Held>,
    /// The worker process on the other end.
    pub(crate) pid: u32,
}

/// What one read did.
pub(crate) enum ReadOutcome {
    /// Some bytes arrived (look for frames).
    Data,
    /// Nothing more now.
    Drained,
    /// The peer closed or failed.
    Closed,
}

impl Peer {
    pub(crate) fn new(stream: UnixStream, pid: u32) -> Peer {
        Peer {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            pending: HashMap::new(),
            held: HashMap::new(),
            pid,
        }
    }

    /// Reads once into `input` (the caller serves complete frames after each read, so
    /// the buffer never holds more than one frame and one read).
    pub(crate) fn read_some(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            match self.stream.read(buf) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    return ReadOutcome::Data;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Calls open on this connection: waits pending and values not acknowledged
    /// (at most [`MAX_OUTSTANDING`](crate::sync::hub::protocol::MAX_OUTSTANDING)).
    pub(crate) fn outstanding(&self) -> usize {
        self.pending.len() + self.held.len()
    }

    /// Queues a reply; false if the peer let too much pile up (it must be closed).
    pub(crate) fn queue(&mut self, frame: &[u8]) -> bool {
        if self.output.len() + frame.len() > MAX_OUTPUT {
            return false;
        }
        self.output.extend_from_slice(frame);
        true
    }

    /// Writes what it can; false when the connection failed.
    pub(crate) fn flush(&mut self) -> bool {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }
}
