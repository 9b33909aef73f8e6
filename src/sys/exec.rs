//! Starting a new copy of the program (a binary upgrade): fork, put the listening
//! socket on fd 3 and the readiness pipe on fd 4, `execve`.
//!
//! Everything the child needs — the program's path, `argv`, `envp`, and the buffer its
//! `LISTEN_PID` is written into — is built before the fork, so between `fork` and
//! `execve` the child only calls async-signal-safe functions (`sigaction`,
//! `sigprocmask`, `dup2`, `getpid`, `write`, `execve`, `_exit`). Every other fd of the
//! process is close-on-exec and does not reach the new program.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::Pid;

use super::fork::SingleThreaded;

/// The fd the listening socket gets in the new program (`sd_listen_fds`' first).
pub(crate) const LISTENER_FD: RawFd = 3;
/// The fd the readiness pipe's write end gets in the new program.
pub(crate) const READY_FD: RawFd = 4;
/// Fds are moved above this before they are put on 3 and 4, so neither move clobbers
/// the other.
const MOVE_ABOVE: RawFd = 10;
/// Exit code of a child whose `dup2` or `execve` failed (the shell's "not executable").
const EXEC_FAILED: i32 = 127;
/// Report byte: the child could not exec (followed by its `errno`, 4 bytes).
pub(crate) const REPORT_EXEC_FAILED: u8 = b'e';

/// The program as it was started: how to start it again.
#[derive(Debug)]
pub(crate) struct Program {
    /// `argv`, as the process got it.
    args: Vec<OsString>,
    /// The working directory at start, against which a relative `argv[0]` resolves.
    dir: PathBuf,
}

impl Program {
    /// Captures `argv` and the working directory now (call it at start-up).
    pub(crate) fn capture() -> io::Result<Program> {
        let args: Vec<OsString> = std::env::args_os().collect();
        if args.is_empty() {
            return Err(io::Error::other(
                "the process has no argv[0] to start again",
            ));
        }
        Ok(Program {
            args,
            dir: std::env::current_dir()?,
        })
    }

    /// The file `argv[0]` names now, as a shell would find it: a path with a `/`
    /// (relative to the directory at start), else the first executable file of that
    /// name on `PATH`. Looked up at each upgrade, so a binary replaced on disk is the
    /// one started (`/proc/self/exe` would name the old, deleted one).
    pub(crate) fn resolve(&self) -> io::Result<PathBuf> {
        let name = Path::new(&self.args[0]);
        if name.as_os_str().as_bytes().contains(&b'/') {
            return Ok(self.dir.join(name));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| self.dir.join(dir).join(name))
            .find(|file| is_executable(file))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} is not on PATH", name.display()),
                )
            })
    }

    /// The image to exec: this program's path now, its `argv`, and the environment
    /// with `LISTEN_FDS=1`, `LISTEN_PID` (filled in by the child) and `extra` set, and
    /// the variables named in `remove` left out.
    pub(crate) fn image(&self, extra: &[(&str, String)], remove: &[&str]) -> io::Result<Image> {
        let path = cstring(self.resolve()?.as_os_str())?;
        let args = self
            .args
            .iter()
            .map(|arg| cstring(arg))
            .collect::<io::Result<Vec<_>>>()?;
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let skip = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
                .iter()
                .chain(remove)
                .chain(extra.iter().map(|(name, _)| name))
                .any(|n| OsStr::new(n) == name);
            if !skip {
                let mut entry = name;
                entry.push("=");
                entry.push(value);
                env.push(cstring(&entry)?);
            }
        }
        env.push(cstring(OsStr::new("LISTEN_FDS=1"))?);
        for (name, value) in extra {
            env.push(cstring(OsStr::new(&format!("{name}={value}")))?);
        }
        Ok(Image::new(path, args, env))
    }
}

/// Everything `execve` takes, built before the fork.
#[derive(Debug)]
pub(crate) struct Image {
    path: CString,
    /// Owns the strings `argv` points into.
    _args: Vec<CString>,
    /// Owns the strings `envp` points into.
    _env: Vec<CString>,
    /// `LISTEN_PID=` and room for the digits, written by the child. A raw allocation
    /// (from `Box::into_raw`, freed on drop), not a `Box`: `envp` and `pid_digits`
    /// point into it, and moving a `Box` would assert unique access to its contents.
    listen_pid: *mut [u8; 32],
    /// Where the child writes them (into `listen_pid`; `envp` points there too).
    pid_digits: *mut u8,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

impl Image {
    fn new(path: CString, args: Vec<CString>, env: Vec<CString>) -> Image {
        let mut buffer = [0u8; 32];
        buffer[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
        let listen_pid = Box::into_raw(Box::new(buffer));
        let entry = listen_pid.cast::<u8>();
        let mut argv: Vec<_> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(entry.cast_const().cast());
        envp.push(std::ptr::null());
        Image {
            path,
            _args: args,
            _env: env,
            listen_pid,
            // SAFETY: the digits go right after the name, within the 32 bytes.
            pid_digits: unsafe { entry.add(LISTEN_PID.len()) },
            argv,
            envp,
        }
    }

    /// The program's path, for the log.
    pub(crate) fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` in `new` and freed only here; the pointers
        // into it (`envp`, `pid_digits`) go with `self`.
        drop(unsafe { Box::from_raw(self.listen_pid) });
    }
}

/// A new copy of the program, started.
#[derive(Debug)]
pub(crate) struct Started {
    /// Its pid (a child of this process, not among the crate's forked workers: the
    /// caller reaps it).
    pub(crate) pid: Pid,
    /// The read end of its readiness pipe (non-blocking, close-on-exec).
    pub(crate) report: OwnedFd,
}

/// Starts `image` with `listener` on fd 3 and a fresh pipe's write end on fd 4.
pub(crate) fn start(
    _proof: &SingleThreaded,
    image: &Image,
    listener: RawFd,
) -> io::Result<Started> {
    let (report, ready) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let listener = move_above(listener)?;
    let ready = move_above(ready.as_raw_fd())?;
    SingleThreaded::check("upgrade")?;
    // Signals stay blocked across the fork, so no handler of this process runs in the
    // child; the child resets them to their defaults before it unblocks them.
    let mut all = empty_sigset();
    let mut saved = empty_sigset();
    // SAFETY: both sets are valid, initialised sigset_t values.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
    }
    // SAFETY: this process has one thread (checked just above), and the child calls
    // only async-signal-safe functions on memory prepared before the fork, then execs
    // or _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child: see `in_child`'s contract, met by the values above.
        unsafe { in_child(image, listener.as_raw_fd(), ready.as_raw_fd()) }
    }
    let error = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    if pid < 0 {
        return Err(io::Error::new(error.kind(), format!("fork: {error}")));
    }
    Ok(Started {
        pid: Pid::from_raw(pid),
        report,
    })
}

/// The child's side, from the fork to `execve`.
///
/// # Safety
/// Called once, in the child of a fork from a single-threaded process, with signals
/// blocked; `listener` and `ready` are open fds above 4.
unsafe fn in_child(image: &Image, listener: RawFd, ready: RawFd) -> ! {
    // SAFETY (whole block): each call is async-signal-safe and works on values made
    // before the fork; nothing allocates, nothing unwinds, the process execs or exits.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for signal in super::signal::HANDLED {
            libc::sigaction(signal as libc::c_int, &default, std::ptr::null_mut());
        }
        let empty = empty_sigset();
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if libc::dup2(ready, READY_FD) < 0 || libc::dup2(listener, LISTENER_FD) < 0 {
            report_and_exit(ready);
        }
        write_pid(image.pid_digits, libc::getpid());
        libc::execve(
            image.path.as_ptr(),
            image.argv.as_ptr(),
            image.envp.as_ptr(),
        );
        report_and_exit(READY_FD)
    }
}

/// Tells the parent `errno` through the readiness pipe, and exits.
///
/// # Safety
/// Only in the child, after the fork.
unsafe fn report_and_exit(fd: RawFd) -> ! {
    // SAFETY: __errno_location is this thread's errno; write and _exit are
    // async-signal-safe and take valid buffers.
    unsafe {
        let errno = *libc::__errno_location();
        let mut message = [REPORT_EXEC_FAILED, 0, 0, 0, 0];
        message[1..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(fd, message.as_ptr().cast(), message.len());
        libc::_exit(EXEC_FAILED)
    }
}

/// Writes `pid` in decimal and a NUL at `out` (room for 20 bytes), without allocating.
///
/// # Safety
/// `out` must be valid for 21 bytes of writes.
unsafe fn write_pid(out: *mut u8, pid: libc::pid_t) {
    let mut digits = [0u8; 20];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: `i` < 20 and `len` <= 20: within the room the caller promised.
        unsafe { *out.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: as above.
    unsafe { *out.add(len) = 0 };
}

/// A close-on-exec copy of `fd` numbered above [`MOVE_ABOVE`].
fn move_above(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only duplicates the caller's open fd.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, MOVE_ABOVE) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

fn empty_sigset() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is a valid value, and sigemptyset initialises it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

fn cstring(value: &OsStr) -> io::Result<CString> {
    CString::new(value.as_bytes())
        .map_err(|_| io::Error::other("a NUL byte in argv or the environment"))
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_digits_without_allocating() {
        let mut out = [b'x'; 21];
        // SAFETY: `out` holds 21 bytes.
        unsafe { write_pid(out.as_mut_ptr(), 40213) };
        assert_eq!(&out[..6], b"40213\0");
        // SAFETY: as above.
        unsafe { write_pid(out.as_mut_ptr(), 0) };
        assert_eq!(&out[..2], b"0\0");
    }

    #[test]
    fn a_bare_name_is_looked_up_on_path() {
        let program = Program {
            args: vec![OsString::from("sh")],
            dir: PathBuf::from("/"),
        };
        assert!(program.resolve().expect("sh on PATH").ends_with("sh"));
        let relative = Program {
            args: vec![OsString::from("./bin/server")],
            dir: PathBuf::from("/srv"),
        };
        assert_eq!(relative.resolve().unwrap(), Path::new("/srv/./bin/server"));
    }
}
