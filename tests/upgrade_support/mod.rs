//! What the upgrade tests share: an example server in its own process group with its
//! log collected, a bounded load loop that counts every failure, a program file to
//! replace on disk, and a look at processes' fds.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{IO_TIMEOUT, example_path, wait_until};

/// Generous: the box is small and shared.
pub const LONG: Duration = Duration::from_secs(90);
/// Client threads of the load loop.
const CLIENTS: usize = 3;
/// Answers the load loop must get in each phase (before, during and after).
pub const ANSWERS_PER_PHASE: u64 = 200;

/// A preforked example server in its own process group, with its stderr collected.
pub struct Pool {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn start(program: &Path, args: &[&str]) -> Pool {
        Pool::start_with(program, args, &[])
    }

    /// Like [`start`](Self::start), with `env` set too.
    pub fn start_with(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Pool {
        let mut command = Command::new(program);
        command.envs(env.iter().copied());
        command
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .env("RUST_LOG", "warn,mixserve=info")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: close_range is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(|| {
                // Only the server's own fds: nothing inherited from the test harness,
                // so its fds can be compared with the new master's.
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("first line");
        let addr = first
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let lines = Arc::clone(&log);
        let readers = vec![
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    eprintln!("server: {line}");
                    lines.lock().unwrap().push(line);
                }
            }),
            // The new master prints its address to the same stdout.
            std::thread::spawn(move || {
                let _ = stdout.read_to_end(&mut Vec::new());
            }),
        ];
        Pool {
            child,
            addr,
            log,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many log lines came so far (to look only at later ones).
    pub fn mark(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits (bounded) for a log line after `mark` containing every one of `parts`.
    pub fn wait_for_line(&self, mark: usize, parts: &[&str]) -> String {
        self.wait_for(mark, &format!("{parts:?}"), |line| {
            parts.iter().all(|p| line.contains(p))
        })
    }

    /// Waits (bounded) for a log line after `mark` that `wanted` accepts.
    pub fn wait_for(&self, mark: usize, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .skip(mark)
                .find(|line| wanted(line))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the old master to exit; asserts it exited cleanly.
    pub fn wait_exit(&mut self) {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "the old master exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the old master did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Every process of the group: the old master, the new one, their workers.
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// What the load loop saw.
#[derive(Default)]
pub struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    short: AtomicU64,
    other: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    pub fn bad(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.first_error.lock().unwrap().get_or_insert(what);
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    pub fn assert_clean(&self) {
        let counts = [
            ("refused", &self.refused),
            ("reset", &self.reset),
            ("short or non-200", &self.short),
            ("other errors", &self.other),
        ]
        .map(|(name, count)| (name, count.load(Ordering::SeqCst)));
        if counts.iter().any(|(_, n)| *n > 0) {
            let first = self.first_error.lock().unwrap().clone();
            panic!("{} answers, and {counts:?}; first: {first:?}", self.ok());
        }
    }
}

/// A few clients, each: connect, `GET /`, read the whole answer, again, until stopped.
pub struct Load {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr) -> Load {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|_| {
                let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        one_request(addr, &tally);
                    }
                })
            })
            .collect();
        Load {
            tally,
            stop,
            clients,
        }
    }

    /// Waits (bounded) for `n` more answers than now; fails at the first bad one.
    pub fn wait_answers(&self, n: u64) {
        let target = self.tally.ok() + n;
        wait_until("answers from the load loop", LONG, || {
            self.tally.assert_clean();
            self.tally.ok() >= target
        });
    }

    pub fn finish(mut self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients.drain(..) {
            client.join().expect("client thread");
        }
        Arc::clone(&self.tally)
    }
}

impl Drop for Load {
    /// A test that failed midway stops its clients too (each request is bounded by
    /// `IO_TIMEOUT`), so they do not load the box for the tests after it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients.drain(..) {
            let _ = client.join();
        }
    }
}

fn one_request(addr: SocketAddr, tally: &Tally) {
    let mut stream = match TcpStream::connect(addr) {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return tally.bad(&tally.refused, format!("connect: {e}"));
        }
        Err(e) => return tally.bad(&tally.other, format!("connect: {e}")),
    };
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let request = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let mut answer = Vec::new();
    let result = stream
        .write_all(request)
        .and_then(|()| stream.read_to_end(&mut answer));
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            tally.bad(&tally.reset, format!("reset: {e}"))
        }
        Err(e) => tally.bad(&tally.other, format!("io: {e}")),
        Ok(_)
            if answer.starts_with(b"HTTP/1.1 200")
                && answer.ends_with(crate::util::HELLO.as_bytes()) =>
        {
            tally.ok.fetch_add(1, Ordering::SeqCst);
        }
        Ok(_) => tally.bad(
            &tally.short,
            format!("answer {:?}", String::from_utf8_lossy(&answer)),
        ),
    }
}

/// The targets of a process's fds from 3 up (`socket:[inode]`, `pipe:[inode]`…).
pub fn fd_targets(pid: u32) -> Vec<(u32, String)> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
    {
        let Ok(entry) = entry else { continue };
        let Ok(number) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            if number >= 3 {
                fds.push((number, target.to_string_lossy().into_owned()));
            }
        }
    }
    fds
}

/// Whether an fd's target names its own object (`socket:[inode]`, `pipe:[inode]`)
/// rather than a kind many fds share (`anon_inode:[eventpoll]`, a file path).
pub fn has_inode(target: &str) -> bool {
    target.starts_with("socket:[") || target.starts_with("pipe:[")
}

/// The pid in `(pid N)` of a log line.
pub fn pid_in(line: &str) -> u32 {
    line.split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// True once `pid` has exited (gone, or a zombie nobody reaped yet).
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

pub fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// A copy of the `hello` example in a directory of its own, to replace on disk.
pub struct Installed {
    pub dir: PathBuf,
}

impl Installed {
    pub fn new(name: &str) -> Installed {
        let dir = std::env::temp_dir().join(format!("mixserve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let installed = Installed { dir };
        installed.replace_with_copy(&example_path("hello"));
        installed
    }

    pub fn program(&self) -> PathBuf {
        self.dir.join("hello")
    }

    /// Replaces the program as a deploy does: a new file renamed over the old one.
    pub fn replace_with_script(&self, script: &str) {
        let staged = self.dir.join("staged");
        std::fs::write(&staged, script).expect("write script");
        self.install(&staged);
    }

    pub fn replace_with_copy(&self, binary: &Path) {
        let staged = self.dir.join("staged");
        std::fs::copy(binary, &staged).expect("copy binary");
        self.install(&staged);
    }

    pub fn install(&self, staged: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(staged, self.program()).expect("rename over the program");
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
