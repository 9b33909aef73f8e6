//! The binary upgrade, from the old master's side (`SIGUSR2`): start the program
//! again with the listening socket, wait for the new master to report that its
//! workers serve, then drain; or, if it fails or stays silent, serve on.
//!
//! The new master is a child of this one, but not a worker: it is never in the pool's
//! table, so no stop, kill or drain signal of the pool reaches it, and it is reaped
//! here (only if it ends before it is ready; afterwards it outlives this master).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::sys::exec::{self, Program, REPORT_EXEC_FAILED};
use crate::sys::fork::{self, SingleThreaded};
use crate::sys::upgrade::{self, ACTIVATED_VAR, OLD_MASTER_VAR, READY_FD_VAR, REPORT_READY};

/// The token of the readiness pipe in the master's poll.
pub(super) const REPORT: Token = Token(2);
/// A new master asked to stop (it failed to get ready in time) and still there this
/// long after is killed.
const KILL_AFTER: Duration = Duration::from_secs(10);

/// Test hook: `MIXSERVE_TEST_UPGRADE_TIMEOUT_MS=<ms>` replaces the model's
/// `upgrade_timeout`, so the tests can watch a silent new master being stopped without
/// waiting a minute. Nothing else reads it.
const TIMEOUT_VAR: &str = "MIXSERVE_TEST_UPGRADE_TIMEOUT_MS";

/// How long a new master may take to get ready: the model's setting, or the test's.
pub(super) fn timeout(configured: Duration) -> Duration {
    std::env::var(TIMEOUT_VAR)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(configured, Duration::from_millis)
}

/// Test hook: `MIXSERVE_TEST_UPGRADE_HOLD_READY=<file>` makes a master started by an
/// upgrade hold its ready report until `file` exists, so the tests can signal a new
/// master that is not ready yet. Nothing else reads it.
const HOLD_READY_VAR: &str = "MIXSERVE_TEST_UPGRADE_HOLD_READY";

/// Whether the test hook holds the ready report (logged once).
pub(super) fn ready_held(logged: &mut bool) -> bool {
    let Some(file) = std::env::var_os(HOLD_READY_VAR) else {
        return false;
    };
    let held = !std::path::Path::new(&file).exists();
    if held && !*logged {
        *logged = true;
        log::info!(
            "preforked: test hook: master (pid {}) holds its ready report",
            std::process::id()
        );
    }
    held
}

/// An upgrade in progress.
#[derive(Debug)]
pub(super) struct Upgrade {
    /// The new master.
    pid: Pid,
    /// Its readiness pipe (`None` once it reported or closed).
    report: Option<OwnedFd>,
    started: Instant,
    /// When it was asked to stop, if it failed.
    stopping: Option<Instant>,
    killed: bool,
}

/// Where an upgrade stands after a look.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// Still starting (or, failed, still stopping).
    Pending,
    /// The new master serves: this one drains now.
    Ready,
    /// The new master is gone, never ready: this one serves on.
    Failed,
}

impl Upgrade {
    /// Starts `program` again with `listener` passed; the readiness pipe is watched
    /// in `registry`.
    pub(super) fn start(
        program: &Program,
        listener: std::os::fd::RawFd,
        registry: &Registry,
    ) -> io::Result<Upgrade> {
        let ready_fd = exec::READY_FD.to_string();
        // Its pid tells the new master whom it shares the socket with: its parent,
        // until this master is gone.
        let this = std::process::id().to_string();
        let mut vars = vec![(READY_FD_VAR, ready_fd), (OLD_MASTER_VAR, this)];
        if crate::server::from_service_manager(listener) {
            vars.push((ACTIVATED_VAR, String::from("1")));
        }
        let image = program.image(&vars, &[ACTIVATED_VAR])?;
        let proof = SingleThreaded::check("upgrade")?;
        // Marked before the fork: neither master shuts the shared socket from now on.
        upgrade::set_listener_shared(true);
        let started = match exec::start(&proof, &image, listener) {
            Ok(started) => started,
            Err(error) => {
                upgrade::set_listener_shared(false);
                return Err(error);
            }
        };
        let fd = started.report.as_raw_fd();
        // Workers forked during the upgrade must not hold the pipe open.
        fork::close_in_child(fd);
        if let Err(error) = registry.register(&mut SourceFd(&fd), REPORT, Interest::READABLE) {
            // Without the pipe, its exit (reaped) or the timeout ends the upgrade.
            log::warn!("preforked: upgrade: cannot watch the new master's pipe: {error}");
        }
        log::info!(
            "preforked: SIGUSR2: started {} as the new master (pid {}); this master (pid {}) \
             serves until it is ready",
            image.path(),
            started.pid,
            std::process::id()
        );
        Ok(Upgrade {
            pid: started.pid,
            report: Some(started.report),
            started: Instant::now(),
            stopping: None,
            killed: false,
        })
    }

    /// The new master's pid.
    pub(super) fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether the new master failed and is being stopped.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.is_some()
    }

    /// Reads the readiness pipe.
    pub(super) fn on_report(&mut self, registry: &Registry) -> Progress {
        match self.read_report() {
            Report::Nothing => Progress::Pending,
            // Ready just as it was told to stop (the timeout): it stops all the same,
            // leaving the socket to this master, which serves on.
            Report::Ready if self.stopping.is_some() => {
                self.close_report(registry);
                log::info!(
                    "preforked: the new master (pid {}) became ready after it was told to stop",
                    self.pid
                );
                Progress::Pending
            }
            Report::Ready => {
                self.close_report(registry);
                log::info!(
                    "preforked: the new master (pid {}) is ready after {:?}; this master (pid \
                     {}) stops accepting and drains",
                    self.pid,
                    self.started.elapsed(),
                    std::process::id()
                );
                Progress::Ready
            }
            Report::ExecFailed(error) => {
                self.close_report(registry);
                self.fail(&format!("could not exec the new binary: {error}"))
            }
            Report::Closed => {
                // Closed without a word: it ended, or closed the pipe.
                self.close_report(registry);
                match upgrade::reap(self.pid) {
                    Some(code) => self.ended(code, None),
                    None => {
                        self.fail("the new master closed its readiness pipe before it was ready")
                    }
                }
            }
        }
    }

    /// What the new master wrote on the readiness pipe, if anything yet.
    fn read_report(&self) -> Report {
        let Some(report) = self.report.as_ref() else {
            return Report::Nothing;
        };
        let mut buf = [0u8; 8];
        let read = loop {
            match nix::unistd::read(report, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        match read {
            Ok(n) if n > 0 && buf[0] == REPORT_READY => Report::Ready,
            Ok(n) if n >= 5 && buf[0] == REPORT_EXEC_FAILED => {
                let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
                Report::ExecFailed(io::Error::from_raw_os_error(errno))
            }
            Ok(_) => Report::Closed,
            Err(_) => Report::Nothing,
        }
    }

    /// Reaps a new master that ended, and stops one that is not ready in `timeout`.
    pub(super) fn tend(&mut self, registry: &Registry, timeout: Duration) -> Progress {
        // What it wrote before it ended is read first (an exec error says more than
        // its exit code).
        if self.report.is_some() {
            match self.on_report(registry) {
                Progress::Pending => {}
                // Ready, or ended and reaped there (reaping again would log it twice).
                done => return done,
            }
        }
        if let Some(code) = upgrade::reap(self.pid) {
            // It may have written its report between the read above and its exit; it
            // is reaped now, so that report is only logged (no signal to a reaped pid).
            let exec_failed = match self.read_report() {
                Report::ExecFailed(error) => Some(error),
                _ => None,
            };
            self.close_report(registry);
            return self.ended(code, exec_failed);
        }
        match self.stopping {
            None if self.started.elapsed() > timeout => {
                self.fail(&format!("the new master is not ready after {timeout:?}"))
            }
            Some(since) if !self.killed && since.elapsed() > KILL_AFTER => {
                log::warn!(
                    "preforked: the failed new master (pid {}) is still there; killing it",
                    self.pid
                );
                fork::kill(self.pid, Signal::SIGKILL);
                self.killed = true;
                Progress::Pending
            }
            _ => Progress::Pending,
        }
    }

    /// The new master ended (reaped) before it was ready: the socket is this master's
    /// alone again.
    fn ended(&mut self, code: i32, exec_failed: Option<io::Error>) -> Progress {
        upgrade::set_listener_shared(false);
        if let (None, Some(error)) = (self.stopping, exec_failed) {
            log::warn!(
                "preforked: upgrade failed: could not exec the new binary: {error}; this \
                 master serves on"
            );
            log::info!(
                "preforked: the failed new master (pid {}) is gone",
                self.pid
            );
        } else if self.stopping.is_none() {
            log::warn!(
                "preforked: upgrade failed: the new master (pid {}) exited ({}) before it was \
                 ready; this master serves on",
                self.pid,
                describe(code)
            );
        } else {
            log::info!(
                "preforked: the failed new master (pid {}) is gone",
                self.pid
            );
        }
        Progress::Failed
    }

    /// The upgrade failed: the new master is asked to stop (gracefully: it shuts no
    /// shared socket) and reaped when it goes; this one serves on.
    fn fail(&mut self, why: &str) -> Progress {
        if self.stopping.is_none() {
            log::warn!(
                "preforked: upgrade failed: {why}; stopping the new master (pid {}), this \
                 master serves on",
                self.pid
            );
            self.stopping = Some(Instant::now());
            fork::kill(self.pid, Signal::SIGTERM);
        }
        Progress::Pending
    }

    fn close_report(&mut self, registry: &Registry) {
        if let Some(report) = self.report.take() {
            let fd = report.as_raw_fd();
            let _ = registry.deregister(&mut SourceFd(&fd));
            fork::forget_in_child(fd);
        }
    }
}

/// What a new master says on its readiness pipe.
enum Report {
    /// Nothing to read yet.
    Nothing,
    /// It serves.
    Ready,
    /// Its exec failed, with this error.
    ExecFailed(io::Error),
    /// The pipe closed without a word.
    Closed,
}

impl Drop for Upgrade {
    /// This master returns with the upgrade still pending (it was stopped meanwhile):
    /// the new master is left to run on its own; the pipe closes with the poll.
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            fork::forget_in_child(report.as_raw_fd());
        }
    }
}

/// A master started by an upgrade must take connections the way the old one does:
/// both share the listener's blocking flag (a blocking `accept` in a master that
/// accepts would stall its loop; a non-blocking one in workers that block in it
/// would spin).
pub(super) fn same_accept_class(
    ctx: &crate::server::Context,
    master_accepts: bool,
) -> io::Result<()> {
    let nonblocking = crate::sys::fd_passing::is_nonblocking(ctx.listener_fd())?;
    if nonblocking == master_accepts {
        return Ok(());
    }
    let (old, new) = match master_accepts {
        true => (
            "workers accept (Shared, Locked)",
            "the master accepts (Passed)",
        ),
        false => (
            "the master accepts (Passed)",
            "workers accept (Shared, Locked)",
        ),
    };
    Err(io::Error::other(format!(
        "preforked: started by an upgrade from a master where {old}, but here {new}: \
         upgrade within the same kind of accept mode, or restart"
    )))
}

/// An exit code as the log says it.
fn describe(code: i32) -> String {
    match code {
        c if c > 128 => match Signal::try_from(c - 128) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("exit {c}"),
        },
        -1 => "reaped elsewhere".into(),
        c => format!("exit {c}"),
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use nix::fcntl::OFlag;
    use nix::unistd::pipe2;

    use super::*;

    /// A new master that reports ready just as the old one timed the upgrade out and
    /// told it to stop: the old one serves on. It used to take the report for ready and
    /// drain too, while the new one drained: both masters gone.
    #[test]
    fn a_new_master_told_to_stop_is_not_taken_for_ready() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let (report, ready) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).unwrap();
        let poll = mio::Poll::new().unwrap();
        let timeout = Duration::from_secs(60);
        let mut upgrade = Upgrade {
            pid: Pid::from_raw(child.id() as i32),
            report: Some(report),
            started: Instant::now() - timeout - Duration::from_secs(1),
            stopping: None,
            killed: false,
        };
        assert_eq!(upgrade.tend(poll.registry(), timeout), Progress::Pending);
        assert!(upgrade.is_stopping());
        nix::unistd::write(&ready, &[REPORT_READY]).unwrap();
        let next = upgrade.tend(poll.registry(), timeout);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(next, Progress::Pending);
    }
}
