//! An example server started through `sh` (so a test can set its `ulimit`), its stderr
//! (the example's logger) kept in a file the test reads.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{example_path, wait_until};

const LONG: Duration = Duration::from_secs(120);

/// An example started through `sh` (for `ulimit`), stderr in a file; killed on drop.
pub struct Logged {
    pub child: Child,
    pub addr: SocketAddr,
    pub stdout: BufReader<std::process::ChildStdout>,
    log: PathBuf,
}

impl Logged {
    /// Starts `example` with `args`, `env` and, when given, a `ulimit` (`-n 1024`).
    pub fn start(
        example: &str,
        args: &[&str],
        env: &[(&str, &str)],
        ulimit: Option<&str>,
    ) -> Logged {
        // One file per server: the tests run in parallel.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "mixserve-logged-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let stderr = std::fs::File::create(&log).expect("log file");
        let limit = ulimit.map_or(String::new(), |limit| format!("ulimit {limit} && "));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("{limit}exec \"$0\" \"$@\""))
            .arg(example_path(example))
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the example");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let addr = super::listening_addr(&mut stdout, example);
        Logged {
            child,
            addr,
            stdout,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends signal `name` (`HUP`, `TTIN`…) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{name} {pid}");
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, a bounded wait for the exit, then the rest of stdout.
    pub fn stop(&mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-15", &pid]).status();
        wait_until("the server to exit", LONG, || !self.alive());
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        rest
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
