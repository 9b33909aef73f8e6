//! Locks that exclude *processes*, for accepting one at a time (UNP §30.7–30.8): a
//! POSIX record lock on an unnamed file, and a robust process-shared pthread mutex in
//! shared memory.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// A whole-file `fcntl(F_SETLKW)` write lock on a `memfd`. Record locks belong to the
/// process (not the fd), so workers forked from the creator exclude each other while
/// sharing the inherited fd, and the kernel drops a dead holder's lock.
#[derive(Debug)]
pub(crate) struct FileLock {
    file: OwnedFd,
}

impl FileLock {
    pub(crate) fn new() -> io::Result<FileLock> {
        // SAFETY: the name is a NUL-terminated literal; the result is checked.
        let fd = unsafe { libc::memfd_create(c"mixserve-accept-lock".as_ptr(), libc::MFD_CLOEXEC) };
        let fd = Errno::result(fd)?;
        // SAFETY: memfd_create returned a fresh fd that nothing else owns.
        Ok(FileLock {
            file: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn set(&self, kind: libc::c_short, wait: bool) -> io::Result<()> {
        // SAFETY: an all-zero flock is valid; the fields that matter are set below.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = kind;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        let command = if wait { libc::F_SETLKW } else { libc::F_SETLK };
        // SAFETY: `lock` is a valid flock for the duration of the call.
        let result = unsafe { libc::fcntl(self.file.as_raw_fd(), command, &lock) };
        Errno::result(result).map(drop).map_err(io::Error::from)
    }

    /// Waits for the lock. `Interrupted` when a signal arrived first (the caller checks
    /// why it was woken, then tries again).
    pub(crate) fn lock(&self) -> io::Result<()> {
        self.set(libc::F_WRLCK as libc::c_short, true)
    }

    /// Releases the lock.
    pub(crate) fn unlock(&self) -> io::Result<()> {
        self.set(libc::F_UNLCK as libc::c_short, false)
    }
}

/// A robust, process-shared `pthread_mutex_t` in its own shared mapping. A worker that
/// dies holding it leaves it "owner dead"; the next locker makes it consistent and goes
/// on, so `kill -9` of the accepting worker never wedges the pool.
#[derive(Debug)]
pub(crate) struct SharedMutex {
    mutex: NonNull<libc::pthread_mutex_t>,
    /// The process that created (and will destroy) the mutex.
    creator: u32,
}

// SAFETY: a process-shared pthread mutex is made to be used from any thread or process.
unsafe impl Send for SharedMutex {}
// SAFETY: as above.
unsafe impl Sync for SharedMutex {}

const MUTEX_BYTES: usize = 4096;

impl SharedMutex {
    pub(crate) fn new() -> io::Result<SharedMutex> {
        let len = NonZeroUsize::new(MUTEX_BYTES).expect("non-zero");
        // SAFETY: a fresh anonymous shared mapping aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        let mutex = ptr.cast::<libc::pthread_mutex_t>();
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before use and
        // destroyed after; `mutex` points to page-aligned writable memory large enough
        // for a pthread_mutex_t, initialised once here before any process uses it.
        let code = unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            let mut code = libc::pthread_mutexattr_init(&mut attr);
            if code == 0 {
                code = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            }
            if code == 0 {
                code = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            }
            if code == 0 {
                code = libc::pthread_mutex_init(mutex.as_ptr(), &attr);
            }
            libc::pthread_mutexattr_destroy(&mut attr);
            code
        };
        if code != 0 {
            // SAFETY: unmapping the mapping made above, which nothing else uses.
            let _ = unsafe { munmap(ptr, MUTEX_BYTES) };
            return Err(io::Error::from_raw_os_error(code));
        }
        Ok(SharedMutex {
            mutex,
            creator: std::process::id(),
        })
    }

    /// Waits at most `timeout` for the mutex: `Ok(true)` when held, `Ok(false)` on
    /// timeout (a pthread mutex wait ignores signals, so callers wait in slices and
    /// look at their stop flag in between).
    pub(crate) fn lock_timeout(&self, timeout: Duration) -> io::Result<bool> {
        match timed_lock(self.mutex.as_ptr(), timeout) {
            0 => Ok(true),
            libc::ETIMEDOUT => Ok(false),
            libc::EOWNERDEAD => {
                log::warn!("accept mutex: its holder died; recovering it");
                // SAFETY: we hold the mutex (EOWNERDEAD returns it locked).
                let code = unsafe { libc::pthread_mutex_consistent(self.mutex.as_ptr()) };
                match code {
                    0 => Ok(true),
                    code => Err(io::Error::from_raw_os_error(code)),
                }
            }
            code => Err(io::Error::from_raw_os_error(code)),
        }
    }

    /// Releases the mutex, which the caller holds.
    pub(crate) fn unlock(&self) -> io::Result<()> {
        // SAFETY: initialised mutex; the caller holds it (an error says otherwise).
        match unsafe { libc::pthread_mutex_unlock(self.mutex.as_ptr()) } {
            0 => Ok(()),
            code => Err(io::Error::from_raw_os_error(code)),
        }
    }
}

// `pthread_mutex_clocklock(3)` (glibc 2.30): `pthread_mutex_timedlock` with a clock of
// the caller's choosing. The libc crate does not declare it.
#[cfg(target_env = "gnu")]
unsafe extern "C" {
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        deadline: *const libc::timespec,
    ) -> libc::c_int;
}

/// Waits at most `timeout` for `mutex` (initialised, and alive for the call); returns
/// the pthread code. On glibc the deadline is on `CLOCK_MONOTONIC`, so a step of the
/// wall clock (an NTP correction, a manual `date -s`) cannot stretch the wait: one back
/// by an hour would leave a worker deaf to its stop signal for that hour.
fn timed_lock(mutex: *mut libc::pthread_mutex_t, timeout: Duration) -> libc::c_int {
    #[cfg(target_env = "gnu")]
    {
        let deadline = deadline_on(libc::CLOCK_MONOTONIC, timeout);
        // SAFETY: the caller passes an initialised mutex that outlives the call;
        // `deadline` is a valid timespec on the clock named.
        unsafe { pthread_mutex_clocklock(mutex, libc::CLOCK_MONOTONIC, &deadline) }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        // Elsewhere only the wall clock is offered.
        let deadline = deadline_on(libc::CLOCK_REALTIME, timeout);
        // SAFETY: as above.
        unsafe { libc::pthread_mutex_timedlock(mutex, &deadline) }
    }
}

/// `timeout` from now on `clock`, as an absolute timespec.
fn deadline_on(clock: libc::clockid_t, timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is valid for writes; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut now) };
    let nanos = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
    let secs = (now.tv_sec as u64)
        .saturating_add(timeout.as_secs())
        .saturating_add(nanos / 1_000_000_000);
    libc::timespec {
        tv_sec: secs.min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as _,
    }
}

impl Drop for SharedMutex {
    fn drop(&mut self) {
        if std::process::id() == self.creator {
            // SAFETY: the creator destroys it once, after its workers are reaped.
            unsafe { libc::pthread_mutex_destroy(self.mutex.as_ptr()) };
        }
        // SAFETY: unmaps this process's view of the mapping made in `new`.
        let _ = unsafe { munmap(self.mutex.cast(), MUTEX_BYTES) };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{SharedMutex, deadline_on};

    #[test]
    fn a_held_mutex_times_out_for_another_thread_then_is_taken() {
        let mutex = Arc::new(SharedMutex::new().unwrap());
        assert!(mutex.lock_timeout(Duration::from_secs(5)).unwrap());
        let other = Arc::clone(&mutex);
        let waited = std::thread::spawn(move || other.lock_timeout(Duration::from_millis(20)));
        assert!(!waited.join().unwrap().unwrap(), "held: the wait times out");
        mutex.unlock().unwrap();
        let other = Arc::clone(&mutex);
        let taken = std::thread::spawn(move || {
            let taken = other.lock_timeout(Duration::from_secs(5)).unwrap();
            other.unlock().unwrap();
            taken
        });
        assert!(taken.join().unwrap());
    }

    #[test]
    fn a_deadline_is_a_valid_timespec_even_for_the_longest_timeout() {
        for timeout in [
            Duration::ZERO,
            Duration::from_nanos(999_999_999),
            Duration::MAX,
        ] {
            let deadline = deadline_on(libc::CLOCK_MONOTONIC, timeout);
            assert!(
                (0..1_000_000_000).contains(&deadline.tv_nsec),
                "{timeout:?}"
            );
            assert!(deadline.tv_sec >= 0, "{timeout:?}");
        }
    }
}
