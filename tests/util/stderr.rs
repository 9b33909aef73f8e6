//! An example server's stderr, read by the test: collected for assertions on its log,
//! and optionally held shut (a full pipe) so the server stalls at its first write to
//! stderr until the test lets it go.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// How long a held stderr stays shut if the test never releases it (so a server that
/// writes to stderr before the test expects it cannot hang the test for ever).
const HOLD_AT_MOST: Duration = Duration::from_secs(60);

/// The reading side of a server's stderr: a thread collects it (and echoes it to the
/// test's own stderr, so a failing test shows the server's log).
pub struct StderrLog {
    text: Arc<Mutex<String>>,
    release: Option<Sender<()>>,
    reader: Option<JoinHandle<()>>,
}

impl StderrLog {
    /// A pipe for a child's stderr, and its reader. With `held`, the pipe is full
    /// before the child starts: the child's first write to stderr blocks until
    /// [`release`](Self::release).
    pub fn pipe(held: bool) -> (Stdio, StderrLog) {
        // CLOEXEC: a process another test starts meanwhile must not keep it open.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let filled = if held { fill(&write) } else { 0 };
        let (release, go) = mpsc::channel::<()>();
        let text = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&text);
        let reader = std::thread::spawn(move || {
            if held {
                let _ = go.recv_timeout(HOLD_AT_MOST);
            }
            collect(File::from(read), filled, &collected);
        });
        let log = StderrLog {
            text,
            release: Some(release),
            reader: Some(reader),
        };
        (Stdio::from(write), log)
    }

    /// Starts reading a held pipe: the child's blocked write goes through.
    pub fn release(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }

    /// What the child wrote to stderr so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (bounded) until the child closed its stderr (it exited), then returns
    /// everything it wrote.
    pub fn finish(&mut self) -> String {
        self.release();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.text()
    }
}

/// Fills the pipe's buffer through `write`; returns how many bytes it took.
fn fill(write: &OwnedFd) -> usize {
    let flags = OFlag::from_bits_truncate(fcntl(write, FcntlArg::F_GETFL).expect("F_GETFL"));
    fcntl(write, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("non-blocking");
    let mut file = File::from(write.try_clone().expect("dup"));
    let chunk = [b'.'; 4096];
    let mut filled = 0;
    loop {
        match file.write(&chunk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill the stderr pipe: {e}"),
        }
    }
    // The child must block on the full pipe, not fail with EAGAIN.
    fcntl(write, FcntlArg::F_SETFL(flags)).expect("blocking again");
    filled
}

/// Reads `pipe` to its end, dropping the first `skip` bytes (the filling).
fn collect(mut pipe: File, mut skip: usize, text: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let dropped = skip.min(n);
        skip -= dropped;
        let fresh = String::from_utf8_lossy(&buf[dropped..n]);
        eprint!("{fresh}");
        text.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_str(&fresh);
    }
}
