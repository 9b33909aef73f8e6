//! The wake signal: how a watched thread waits on its client socket and a wake-up at
//! once, for no file descriptor at all.
//!
//! A thread that waits for a `Broadcast`/`Channel` on behalf of a watched connection
//! blocks in `ppoll(2)` on the client socket (`POLLRDHUP`). The releasing side wakes it
//! by sending it one real-time signal with [`ThreadBell::ring`] (`tgkill(2)`). The
//! pattern is race-free:
//!
//! 1. before its waker can be seen by anyone ([`arm`]), the thread blocks the signal in
//!    its own mask, so a wake sent from then on stays pending;
//! 2. it checks whether its result is already there;
//! 3. it calls `ppoll` with a mask that unblocks the signal: a wake sent between 2 and 3
//!    is pending, is delivered the instant `ppoll` installs that mask, and `ppoll`
//!    returns `EINTR` at once. No wake-up is lost.
//!
//! The handler does nothing: interrupting `ppoll` is all the signal is for. A wake that
//! arrives after the wait already ended stays pending and only makes the next wait of
//! that thread return early once (the caller loops on spurious returns).
//!
//! Choices and their consequences, on purpose:
//!
//! - **Which signal.** glibc keeps the first two real-time signals for itself and
//!   `SIGRTMIN()` already skips them; other libraries tend to take the lowest and the
//!   highest ones. The crate takes the first of `SIGRTMIN()+6 ..= SIGRTMAX()-4` whose
//!   disposition is still the default when the first watched wait happens, installs its
//!   no-op handler there (`SA_RESTART`) once for the process, and never gives it back.
//!   If every one is taken, watched threads fall back to a plain park (no hang-up
//!   detection; a warning is logged). A program that later installs its own handler on
//!   that very signal would see the crate's wakes reach it.
//! - **The thread's mask.** Blocking persists on the thread after the wait, including
//!   on threads the user owns that call a watched wait (and on the threads they spawn
//!   afterwards, which inherit the mask). Blocking a signal nobody else uses is
//!   harmless; a program that relies on that signal must not watch waits on its
//!   threads.
//! - **Exited threads.** A wake may be sent after its thread exited (a release racing
//!   a timeout) and Linux recycles thread ids. Each thread's [`ThreadBell`] is marked
//!   exited by a thread-local destructor before the id can be reused, and `ring`
//!   signals only under that lock, so a wake never reaches a stranger. (Even if it did,
//!   the handler is a no-op with `SA_RESTART`.)
//! - **Forked processes.** A forked child (the `Forking` model, a preforked worker)
//!   inherits the handler and the forking thread's mask, and starts with no pending
//!   signal: both are what a watched wait expects. A bell copied from the parent
//!   carries the parent's process id, so ringing it in the child does nothing, and a
//!   thread asks for a fresh bell when its thread id changed (the child's only thread).
//!   `exec` resets the handler; Rust's `Command` also resets the mask of the child.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The wake signal, installed once per process; `None` when none was free.
static WAKE_SIGNAL: OnceLock<Option<libc::c_int>> = OnceLock::new();

/// Offsets from `SIGRTMIN()` and back from `SIGRTMAX()` the crate leaves to others.
const SKIP_LOW: libc::c_int = 6;
const SKIP_HIGH: libc::c_int = 4;

extern "C" fn on_wake(_signal: libc::c_int) {
    // Nothing to do: the delivery itself ends the `ppoll` the thread waits in.
}

/// The wake signal, installing its handler on first use.
fn wake_signal() -> Option<libc::c_int> {
    *WAKE_SIGNAL.get_or_init(|| {
        let found = (libc::SIGRTMIN() + SKIP_LOW..=libc::SIGRTMAX() - SKIP_HIGH)
            .find(|&signal| install_if_default(signal));
        if found.is_none() {
            log::warn!("no free real-time signal: waits will not see clients leave");
        }
        found
    })
}

/// Installs the no-op handler on `signal` if nobody handles or ignores it yet.
fn install_if_default(signal: libc::c_int) -> bool {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`, which is valid
    // writable memory of the right type.
    if unsafe { libc::sigaction(signal, std::ptr::null(), old.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: sigaction succeeded, so it filled `old` (and zeroed is a valid value).
    if unsafe { old.assume_init() }.sa_sigaction != libc::SIG_DFL {
        return false;
    }
    // SAFETY: an all-zero `sigaction` is valid (empty mask, no flags); the fields are
    // then set to a plain handler that does nothing, which is async-signal-safe.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action` is fully initialised above; the old action is not asked for.
    unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) == 0 }
}

/// A signal set holding only `signal`.
fn only(signal: libc::c_int) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` points to a sigset_t; sigemptyset initialises it and sigaddset
    // only fails for an invalid number, which the real-time range is not.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), signal);
        set.assume_init()
    }
}

/// Blocks `signal` in the calling thread; returns the mask it had before.
fn block(signal: libc::c_int) -> io::Result<libc::sigset_t> {
    let set = only(signal);
    let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: both pointers are to valid sigset_t values; this changes only the calling
    // thread's mask.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: pthread_sigmask succeeded and filled `old`.
    Ok(unsafe { old.assume_init() })
}

fn current_tid() -> libc::pid_t {
    // SAFETY: gettid takes no argument and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// One thread as the target of the wake signal.
#[derive(Debug)]
pub(crate) struct ThreadBell {
    /// The process the thread belongs to (`tgkill` checks it too).
    pid: libc::pid_t,
    /// The thread's kernel id.
    tid: libc::pid_t,
    /// The wake signal.
    signal: libc::c_int,
    /// Set by the thread's exit, before its id can be given to another thread.
    exited: Mutex<bool>,
}

impl ThreadBell {
    /// Sends the wake signal to the thread, unless it exited (or this is another
    /// process, a forked copy of the bell). Failure is ignored: a thread that is gone
    /// has nothing left to wake.
    pub(crate) fn ring(&self) {
        let exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: getpid cannot fail.
        if *exited || unsafe { libc::getpid() } != self.pid {
            return;
        }
        // SAFETY: tgkill only sends a signal; the thread is alive while `exited` is
        // held false (see `Registration`), and the signal's handler is a no-op.
        unsafe { libc::syscall(libc::SYS_tgkill, self.pid, self.tid, self.signal) };
    }
}

/// This thread's bell; marks it exited when the thread's locals are destroyed.
struct Registration(Option<Arc<ThreadBell>>);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(bell) = &self.0 {
            *bell.exited.lock().unwrap_or_else(|p| p.into_inner()) = true;
        }
    }
}

thread_local! {
    static BELL: RefCell<Registration> = const { RefCell::new(Registration(None)) };
}

/// Prepares the calling thread for a wait woken by the wake signal: blocks the signal
/// (so a wake sent from now on stays pending) and returns the thread's bell. Fails when
/// no wake signal could be installed; the caller then parks the ordinary way.
pub(crate) fn arm() -> io::Result<Arc<ThreadBell>> {
    let signal = wake_signal().ok_or_else(|| io::Error::other("no free real-time signal"))?;
    block(signal)?;
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let tid = current_tid();
    BELL.try_with(|registration| {
        let mut registration = registration.borrow_mut();
        match &registration.0 {
            Some(bell) if bell.tid == tid && bell.pid == pid => Arc::clone(bell),
            _ => {
                // First wait here, or the first in a forked child (whose one thread
                // inherited the parent's bell; that one is left alone).
                let bell = Arc::new(ThreadBell {
                    pid,
                    tid,
                    signal,
                    exited: Mutex::new(false),
                });
                registration.0 = Some(Arc::clone(&bell));
                bell
            }
        }
    })
    .map_err(|_| io::Error::other("thread is exiting"))
}

/// Blocks the thread armed with `bell` in `ppoll(2)` until the peer of `fd` hangs up
/// (`POLLRDHUP`, or `POLLHUP`/`POLLERR`), the bell rings, or `deadline` passes. Any of
/// them, and a spurious wake, returns `Ok`: the caller checks what happened.
pub(crate) fn wait_hangup_or_ring(
    fd: RawFd,
    bell: &ThreadBell,
    deadline: Option<Instant>,
) -> io::Result<()> {
    // Re-blocking is a no-op that also reads the mask to wait with: the same, with the
    // wake signal let through.
    let mut during = block(bell.signal)?;
    // SAFETY: `during` is a valid sigset_t and the signal number is valid.
    unsafe { libc::sigdelset(&mut during, bell.signal) };
    let timeout = deadline.map(|deadline| {
        let left = deadline.saturating_duration_since(Instant::now());
        libc::timespec {
            tv_sec: left.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        }
    });
    let mut polled = [libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    }];
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: one valid pollfd for the length given; `timeout_ptr` is null or points to
    // a live timespec; `during` is a valid mask. The caller owns `fd` for the call.
    let rc = unsafe { libc::ppoll(polled.as_mut_ptr(), 1, timeout_ptr, &during) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(())
}
