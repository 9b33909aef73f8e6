//! A benchmark-only preforked TCP server for the thundering-herd table (csdesign, UNP
//! §30.6): a master forks N children that all wait on one listener in one of four ways,
//! and each child counts in shared memory its connections, its wake-ups and the wake-ups
//! that found nothing to accept (EAGAIN: wasted).
//!
//! - `poll`: `poll()` on the listener, then a non-blocking `accept()` — every sleeping
//!   child is woken for each connection and all but one find nothing (the herd);
//! - `blocking`: a blocking `accept()` — Linux wakes one sleeper per connection;
//! - `epoll-exclusive`: each child's own epoll set holds the listener with
//!   `EPOLLEXCLUSIVE`, then a non-blocking `accept()`;
//! - `lock`: an `fcntl` write lock around a blocking `accept()` (UNP's `my_lock_wait`).
//!
//! It runs as the bench binary re-executed with [`FLAG`] (see [`main_if_asked`]), so it
//! forks from a process that has no other thread. It prints `listening on tcp://ADDR`,
//! serves `GET /bytes/N` with N bytes and `Connection: close` until SIGTERM, then kills
//! and reaps its children and prints one line per child:
//! `herd child I: C connections, W wakeups, X wasted`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// The first argument that turns the bench binary into this server.
pub const FLAG: &str = "--herd-server";

/// The four ways a child waits for a connection, by their command-line names.
pub const STYLES: [&str; 4] = ["poll", "blocking", "epoll-exclusive", "lock"];

/// Counters per child: connections, wake-ups, wasted wake-ups.
const WORDS: usize = 3;

/// Runs the herd server when the command line is `FLAG STYLE CHILDREN`; `None` otherwise.
pub fn main_if_asked() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some(FLAG) {
        return None;
    }
    let style = args.get(1).map_or("", String::as_str);
    let children = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10);
    if !STYLES.contains(&style) {
        eprintln!("{FLAG}: unknown style {style:?}, choose one of {STYLES:?}");
        return Some(ExitCode::from(2));
    }
    Some(match serve(style, children) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{FLAG}: {e}");
            ExitCode::FAILURE
        }
    })
}

fn serve(style: &str, children: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(matches!(style, "poll" | "epoll-exclusive"))?;
    let counters = SharedCounters::new(children * WORDS)?;
    let lock_file = if style == "lock" {
        let path = std::env::temp_dir().join(format!("mixserve-herd-{}.lock", std::process::id()));
        let file = std::fs::File::create(&path)?;
        std::fs::remove_file(&path)?;
        Some(file)
    } else {
        None
    };
    let signals = block_stop_signals();
    println!("listening on tcp://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let mut pids = Vec::new();
    for child in 0..children {
        // SAFETY: this process has no other thread (it was started with FLAG, and
        // main_if_asked runs before anything spawns one); the child never returns.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl and sigprocmask on the calling (only) thread of the child.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::sigprocmask(libc::SIG_UNBLOCK, &signals, std::ptr::null_mut());
            }
            let slot = counters.slot(child);
            let fd = lock_file.as_ref().map(AsRawFd::as_raw_fd);
            child_loop(style, &listener, fd, slot);
        }
        if pid < 0 {
            break;
        }
        pids.push(pid);
    }
    let mut signal = 0;
    // SAFETY: waits for one of the blocked stop signals; both pointers are valid.
    unsafe { libc::sigwait(&signals, &mut signal) };
    for &pid in &pids {
        // SAFETY: pid is a child we forked and have not reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in &pids {
        let mut status = 0;
        // SAFETY: reaping our own child; status is writable.
        while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
    }
    for child in 0..pids.len() {
        let [conns, wakeups, wasted] = counters.slot(child).map(|c| c.load(Ordering::Relaxed));
        println!("herd child {child}: {conns} connections, {wakeups} wakeups, {wasted} wasted");
    }
    std::io::stdout().flush()
}

/// Blocks SIGTERM and SIGINT (the master takes them with `sigwait`); returns the set.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// One child: wait, accept, serve, count — until killed.
fn child_loop(style: &str, listener: &TcpListener, lock: Option<i32>, slot: [&AtomicU64; 3]) -> ! {
    let [conns, wakeups, wasted] = slot;
    let fd = listener.as_raw_fd();
    let epoll = (style == "epoll-exclusive").then(|| exclusive_epoll(fd));
    loop {
        match style {
            "poll" => {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, -1) } <= 0 {
                    continue;
                }
            }
            "epoll-exclusive" => {
                let mut event = libc::epoll_event { events: 0, u64: 0 };
                let efd = epoll.unwrap_or(-1);
                // SAFETY: room for one event; efd is this child's epoll set.
                if unsafe { libc::epoll_wait(efd, &mut event, 1, -1) } <= 0 {
                    continue;
                }
            }
            _ => {}
        }
        if let Some(lock) = lock {
            set_lock(lock, libc::F_WRLCK);
        }
        let accepted = listener.accept();
        if let Some(lock) = lock {
            set_lock(lock, libc::F_UNLCK);
        }
        wakeups.fetch_add(1, Ordering::Relaxed);
        match accepted {
            Ok((stream, _)) => {
                conns.fetch_add(1, Ordering::Relaxed);
                answer(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wasted.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

/// A fresh epoll set (its own, not inherited) holding `fd` with `EPOLLEXCLUSIVE`.
fn exclusive_epoll(fd: i32) -> i32 {
    // SAFETY: plain syscalls on fds this child owns; the event is a valid struct.
    unsafe {
        let efd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
            u64: 0,
        };
        libc::epoll_ctl(efd, libc::EPOLL_CTL_ADD, fd, &mut event);
        efd
    }
}

/// `fcntl(F_SETLKW)` of the whole file (`F_WRLCK` to take it, `F_UNLCK` to give it back).
fn set_lock(fd: i32, kind: i32) {
    // SAFETY: flock is plain data; all-zero then set is a whole-file lock request.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fd is the open lock file; lock is valid. EINTR is retried.
    while unsafe { libc::fcntl(fd, libc::F_SETLKW, &lock) } == -1
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
}

/// Reads the request head and answers `GET /bytes/N` with N bytes (0 for anything else).
fn answer(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => head.extend_from_slice(&buf[..k]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let n: usize = text
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix("/bytes/")?.parse().ok())
        .unwrap_or(0)
        .min(1 << 20);
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n").into_bytes();
    response.resize(response.len() + n, b'x');
    let _ = stream.write_all(&response);
}

/// Counters in an anonymous shared mapping, visible to the master after fork.
struct SharedCounters {
    base: *mut AtomicU64,
    words: usize,
}

impl SharedCounters {
    fn new(words: usize) -> std::io::Result<SharedCounters> {
        let len = words.max(1) * std::mem::size_of::<AtomicU64>();
        // SAFETY: a fresh anonymous shared mapping; zero-filled memory is valid AtomicU64s.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedCounters {
            base: base.cast(),
            words,
        })
    }

    /// The three counters of child `i`.
    fn slot(&self, i: usize) -> [&AtomicU64; 3] {
        let at = |k: usize| {
            let word = (i * WORDS + k).min(self.words - 1);
            // SAFETY: word is inside the mapping, which lives as long as self.
            unsafe { &*self.base.add(word) }
        };
        [at(0), at(1), at(2)]
    }
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        let len = self.words.max(1) * std::mem::size_of::<AtomicU64>();
        // SAFETY: unmapping the mapping made in new, not used after this.
        unsafe { libc::munmap(self.base.cast(), len) };
    }
}
