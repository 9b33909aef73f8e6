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

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::UnixStream;

use crate::sync::hub::protocol::MAX_FRAME;
use crate::sync::hub::reply::Held;

/// Reply bytes queued for one peer. A notify that releases every wait of a scheduled
/// worker queues one reply per wait at once, all on its one connection: 25,000 waits
/// of a 10 KiB value fit. Past it, a reply is replaced by a short error (see
/// [`queue_short`](Peer::queue_short)); a peer that stops reading them for
/// [`WRITE_STALL`] is closed.
pub(crate) const MAX_OUTPUT: usize = 16 * MAX_FRAME;

/// What short replies to calls that open nothing (a send's count, a length) may add
/// past [`MAX_OUTPUT`].
const SHORT_ROOM: usize = 1024 * 1024;

/// A peer with replies queued that takes fewer than [`PROGRESS_BYTES`] of them (and
/// does not take them all) for this long is closed: it does not read, or reads a byte
/// now and then, holding up to [`MAX_OUTPUT`] here for good.
pub(crate) const WRITE_STALL: Duration = Duration::from_secs(30);

/// Reply bytes a peer must take within [`WRITE_STALL`] to count as reading, unless it
/// takes every byte queued. A worker reads its replies as they come, megabytes a
/// second.
const PROGRESS_BYTES: usize = 64 * 1024;

/// A peer that stops in the middle of a frame for this long is closed: a worker writes
/// each frame whole, so it hangs or is broken, and the part read (up to a frame,
/// 16 MiB) would be held for good.
pub(crate) const FRAME_STALL: Duration = Duration::from_secs(30);

/// A connection with nothing open on it (no wait, no value held, no bytes either way)
/// for this long is closed: twice the time a worker keeps an idle one
/// ([`IDLE_FOR`](crate::sync::hub::client::IDLE_FOR)), which it prunes only when it
/// calls again, so a thread that called once and never again holds none for good.
pub(crate) const PEER_IDLE: Duration = Duration::from_secs(60);

/// Frames handed to one `writev`.
const FRAMES_PER_WRITE: usize = 64;

/// How many hub connections one worker may hold: a thread-based worker uses one per
/// concurrent remote call (a scheduled worker multiplexes its calls over one per loop),
/// but at most half the master's open-file limit, so one worker cannot take every fd
/// of the master (at least 64).
pub(crate) fn per_worker_limit() -> usize {
    crate::sys::fd_passing::open_files_limit()
        .map_or(512, |limit| (limit / 2) as usize)
        .max(64)
}

/// Connections the hub keeps free for calls that do not wait (a notify, a send): waits
/// are refused once the hub holds more than [`connections_room`] minus this many, so a
/// notify can always connect while thread-based workers hold a connection per wait.
pub(crate) const NOTIFY_HEADROOM: usize = 16;

/// Fds of the master the hub leaves to everything else (workers' control sockets,
/// accepted connections being passed, its own files).
const MASTER_FDS_KEPT: usize = 256;

/// How many hub connections the master can hold: its open-file limit less the fds open
/// when the hub starts and [`MASTER_FDS_KEPT`] (no limit when it cannot be read).
pub(crate) fn connections_room() -> usize {
    let Some(limit) = crate::sys::fd_passing::open_files_limit() else {
        return usize::MAX;
    };
    let open = crate::sys::fd_passing::open_fds_now(64);
    (limit as usize)
        .saturating_sub(open + MASTER_FDS_KEPT)
        .max(2 * NOTIFY_HEADROOM)
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
    /// Reply frames not yet written, whole (moved in, not copied): at most
    /// [`MAX_OUTPUT`] bytes.
    output: VecDeque<Vec<u8>>,
    /// Bytes of the front frame already written.
    front_written: usize,
    /// Bytes in `output` not yet written.
    queued: usize,
    /// [`MAX_OUTPUT`] (lowered by tests).
    cap: usize,
    /// When the peer last took [`PROGRESS_BYTES`] of its replies, or all of them (or
    /// was given some with none queued).
    progress: Instant,
    /// Reply bytes taken since `progress`.
    taken: usize,
    /// When bytes last came or a reply was queued.
    active: Instant,
    /// When bytes last came.
    read_at: Instant,
    /// Bytes have come from it (a fresh connection's first call may still be in the
    /// socket: closing it would lose a call its worker does not retry).
    ever_read: bool,
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
            output: VecDeque::new(),
            front_written: 0,
            queued: 0,
            cap: MAX_OUTPUT,
            progress: Instant::now(),
            taken: 0,
            active: Instant::now(),
            read_at: Instant::now(),
            ever_read: false,
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
                    self.active = Instant::now();
                    self.read_at = self.active;
                    self.ever_read = true;
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

    /// Queues a reply frame; false if the queue would pass its cap.
    pub(crate) fn queue(&mut self, frame: Vec<u8>) -> bool {
        self.queue_within(frame, self.cap)
    }

    /// Queues a short frame (a send's count, a length) past the cap, by
    /// [`SHORT_ROOM`] at most; false beyond it (a peer that far behind is closed).
    pub(crate) fn queue_short(&mut self, frame: Vec<u8>) -> bool {
        self.queue_within(frame, self.cap + SHORT_ROOM)
    }

    /// Queues the short error that replaces the reply to an open call (a wait, a value
    /// handed over) past the cap: bounded by the calls a connection may have open
    /// ([`MAX_OUTSTANDING`](crate::sync::hub::protocol::MAX_OUTSTANDING), a few MiB).
    pub(crate) fn queue_call_error(&mut self, frame: Vec<u8>) {
        self.queue_within(frame, usize::MAX);
    }

    fn queue_within(&mut self, frame: Vec<u8>, cap: usize) -> bool {
        if self.queued + frame.len() > cap {
            return false;
        }
        self.active = Instant::now();
        if self.output.is_empty() {
            self.progress = self.active;
            self.taken = 0;
        }
        self.queued += frame.len();
        self.output.push_back(frame);
        true
    }

    /// Bytes that may still be queued.
    pub(crate) fn queued_room(&self) -> usize {
        self.cap.saturating_sub(self.queued)
    }

    /// Lowers the cap on queued bytes (tests).
    #[cfg(test)]
    pub(crate) fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }

    /// Whether replies are queued and the peer took none of their bytes for
    /// [`WRITE_STALL`].
    pub(crate) fn stalled(&self, now: Instant) -> bool {
        !self.output.is_empty() && now.saturating_duration_since(self.progress) > WRITE_STALL
    }

    /// Whether part of a frame has waited for the rest for [`FRAME_STALL`].
    pub(crate) fn frame_stalled(&self, now: Instant) -> bool {
        !self.input.is_empty() && now.saturating_duration_since(self.read_at) > FRAME_STALL
    }

    /// Whether nothing has been open on it (see [`PEER_IDLE`]) for longer than `limit`.
    pub(crate) fn idle(&self, now: Instant, limit: Duration) -> bool {
        self.nothing_open() && now.saturating_duration_since(self.active) > limit
    }

    /// No wait, no value held, no bytes either way, and used before: closing it loses
    /// nothing (its worker finds a used connection closed and calls again on a fresh
    /// one; a fresh one's first call may still be unread in the socket).
    pub(crate) fn nothing_open(&self) -> bool {
        self.ever_read
            && self.pending.is_empty()
            && self.held.is_empty()
            && self.output.is_empty()
            && self.input.is_empty()
    }

    /// Reply bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// When bytes last came or a reply was queued.
    pub(crate) fn active(&self) -> Instant {
        self.active
    }

    /// Writes what it can; false when the connection failed.
    pub(crate) fn flush(&mut self) -> bool {
        while !self.output.is_empty() {
            let mut slices = Vec::with_capacity(FRAMES_PER_WRITE.min(self.output.len()));
            for (index, frame) in self.output.iter().take(FRAMES_PER_WRITE).enumerate() {
                let start = if index == 0 { self.front_written } else { 0 };
                slices.push(IoSlice::new(&frame[start..]));
            }
            match crate::sys::send_nosignal(self.stream.as_raw_fd(), &slices) {
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }

    /// `n` more bytes are written: drops the frames they finish.
    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        self.taken = self.taken.saturating_add(n);
        if n > 0 && (self.queued == 0 || self.taken >= PROGRESS_BYTES) {
            self.progress = Instant::now();
            self.taken = 0;
        }
        while let Some(front) = self.output.front() {
            let left = front.len() - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            self.front_written = 0;
            self.output.pop_front();
        }
    }
}

#[cfg(test)]
mod output_tests {
    use std::io::Read;
    use std::time::{Duration, Instant};

    use super::{FRAME_STALL, MAX_OUTPUT, PROGRESS_BYTES, Peer, ReadOutcome, WRITE_STALL};

    /// A peer that takes a few bytes now and then does not count as reading: only
    /// `PROGRESS_BYTES`, or the whole queue, moves its progress.
    #[test]
    fn a_peer_taking_a_few_bytes_now_and_then_makes_no_progress() {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        // Small socket buffers, so reading a few KiB lets a few KiB more be written.
        nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::SndBuf, &8192).unwrap();
        let mut peer = Peer::new(mio::net::UnixStream::from_std(ours), 0);
        assert!(peer.queue(vec![7; 4 << 20]));
        assert!(peer.flush());
        let before = peer.progress;
        std::thread::sleep(Duration::from_millis(2));
        // A few KiB taken, so some more are written, but far from PROGRESS_BYTES.
        let queued = peer.queued();
        let mut few = vec![0u8; 16 * 1024];
        assert!(theirs.read(&mut few).unwrap() > 0);
        assert!(peer.flush());
        let written = queued - peer.queued();
        assert!(
            (1..PROGRESS_BYTES).contains(&written),
            "{written} bytes written"
        );
        assert_eq!(peer.progress, before, "a few KiB taken counted as progress");
        // Read on, letting the peer write more between reads, until 256 KiB came.
        let mut chunk = vec![0u8; 64 * 1024];
        let mut read = 0;
        while read < 256 * 1024 {
            read += theirs.read(&mut chunk).unwrap();
            assert!(peer.flush());
        }
        assert!(peer.progress > before, "256 KiB taken did not count");
    }

    /// Part of a frame that waits for the rest for `FRAME_STALL` marks the peer, and
    /// any byte that comes clears it.
    #[test]
    fn a_peer_stopped_inside_a_frame_is_stalled() {
        use std::io::Write;
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut peer = Peer::new(mio::net::UnixStream::from_std(ours), 0);
        let later = || Instant::now() + FRAME_STALL + Duration::from_secs(1);
        assert!(!peer.frame_stalled(later()), "nothing read is no stall");
        theirs.write_all(&100u32.to_le_bytes()).unwrap();
        theirs.write_all(&[1, 2, 3]).unwrap();
        let mut buf = [0u8; 64];
        assert!(matches!(peer.read_some(&mut buf), ReadOutcome::Data));
        assert!(!peer.frame_stalled(Instant::now()));
        assert!(peer.frame_stalled(later()), "the rest never came");
        peer.input.clear();
        assert!(
            !peer.frame_stalled(later()),
            "a frame served whole is no stall"
        );
    }

    #[test]
    fn a_peer_is_stalled_only_while_it_takes_no_reply_bytes() {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut peer = Peer::new(mio::net::UnixStream::from_std(ours), 0);
        let later = || Instant::now() + WRITE_STALL + Duration::from_secs(1);
        assert!(!peer.stalled(later()), "nothing queued is no stall");
        // More than the socket takes: the rest stays queued, whole frames in order.
        for byte in 0..8u8 {
            assert!(peer.queue(vec![byte; 1 << 20]));
        }
        assert!(peer.flush());
        assert!(peer.stalled(later()), "the peer reads nothing");
        let mut got = vec![0u8; 8 << 20];
        let mut read = 0;
        while read < got.len() {
            read += theirs.read(&mut got[read..]).unwrap();
            assert!(peer.flush());
            assert!(!peer.stalled(Instant::now()));
        }
        assert!(
            got.chunks(1 << 20)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&b| b == i as u8))
        );
        assert!(!peer.stalled(later()), "everything was taken");
        assert!(!peer.queue(vec![0; MAX_OUTPUT + 1]), "past the cap");
    }
}
