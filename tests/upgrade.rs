//! Zero-downtime binary upgrade of `preforked` (`SIGUSR2`): under a bounded load loop
//! the old master starts the new binary on the same listening socket, the new master
//! reports ready, the old one drains and exits — no connection refused, reset or cut
//! short. A new binary that fails to start leaves the old master serving; a second
//! `SIGUSR2` during an upgrade is ignored; a binary replaced on disk is the one started.
//!
//! The server runs as its own process group (the new master is its child, then
//! outlives it), is told to log at `info`, and its stderr is collected to learn the new
//! master's pid.

mod util;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use util::{IO_TIMEOUT, example_path, get, wait_until};

/// Generous: the box is small and shared.
const LONG: Duration = Duration::from_secs(90);
/// Client threads of the load loop.
const CLIENTS: usize = 3;
/// Answers the load loop must get in each phase (before, during and after).
const ANSWERS_PER_PHASE: u64 = 200;

/// One upgrade at a time: each runs a pool and a load loop on a 2-core box.
static SERIAL: Mutex<()> = Mutex::new(());

/// A preforked example server in its own process group, with its stderr collected.
struct Pool {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(program: &Path, args: &[&str]) -> Pool {
        Pool::start_with(program, args, &[])
    }

    /// Like [`start`](Self::start), with `env` set too.
    fn start_with(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Pool {
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many log lines came so far (to look only at later ones).
    fn mark(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits (bounded) for a log line after `mark` containing every one of `parts`.
    fn wait_for_line(&self, mark: usize, parts: &[&str]) -> String {
        self.wait_for(mark, &format!("{parts:?}"), |line| {
            parts.iter().all(|p| line.contains(p))
        })
    }

    /// Waits (bounded) for a log line after `mark` that `wanted` accepts.
    fn wait_for(&self, mark: usize, what: &str, wanted: impl Fn(&str) -> bool) -> String {
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
    fn wait_exit(&mut self) {
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
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    short: AtomicU64,
    other: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn bad(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.first_error.lock().unwrap().get_or_insert(what);
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    fn assert_clean(&self) {
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
struct Load {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
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
    fn wait_answers(&self, n: u64) {
        let target = self.tally.ok() + n;
        wait_until("answers from the load loop", LONG, || {
            self.tally.assert_clean();
            self.tally.ok() >= target
        });
    }

    fn finish(mut self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients.drain(..) {
            client.join().expect("client thread");
        }
        Arc::clone(&self.tally)
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
        Ok(_) if answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(b"hello") => {
            tally.ok.fetch_add(1, Ordering::SeqCst);
        }
        Ok(_) => tally.bad(
            &tally.short,
            format!("answer {:?}", String::from_utf8_lossy(&answer)),
        ),
    }
}

/// The targets of a process's fds from 3 up (`socket:[inode]`, `pipe:[inode]`…).
fn fd_targets(pid: u32) -> Vec<(u32, String)> {
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
fn has_inode(target: &str) -> bool {
    target.starts_with("socket:[") || target.starts_with("pipe:[")
}

/// The pid in `(pid N)` of a log line.
fn pid_in(line: &str) -> u32 {
    line.split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// True once `pid` has exited (gone, or a zombie nobody reaped yet).
fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// The whole upgrade under load, with `args` for the example.
fn upgrade_under_load(args: &[&str]) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut pool = Pool::start(&example_path("hello"), args);
    assert_eq!(get(pool.addr, "/").status, 200);
    let old = pool.pid();
    let old_targets = fd_targets(old);
    let old_fds: HashSet<String> = old_targets.iter().map(|(_, t)| t.clone()).collect();
    let load = Load::start(pool.addr);
    load.wait_answers(ANSWERS_PER_PHASE);
    kill(old, "-USR2");
    let ready = pool.wait_for_line(0, &["is ready after"]);
    let new = pid_in(&ready);
    assert_ne!(new, old);
    load.wait_answers(ANSWERS_PER_PHASE);
    pool.wait_exit();
    load.wait_answers(ANSWERS_PER_PHASE);
    let tally = load.finish();
    tally.assert_clean();
    // The new master serves alone now, on the very socket the old one had.
    assert!(!has_exited(new), "the new master is gone");
    assert_eq!(get(pool.addr, "/").status, 200);
    let new_fds = fd_targets(new);
    let listener = new_fds
        .iter()
        .find(|(n, _)| *n == 3)
        .map(|(_, t)| t.clone());
    assert!(
        listener.as_ref().is_some_and(|l| old_fds.contains(l)),
        "fd 3 of the new master is not the old listener: {new_fds:?} / {old_fds:?}"
    );
    // Nothing else of the old master crossed the exec: no socket or pipe of its own
    // (hub, worker sockets, signal pipes) …
    let leaked: Vec<_> = new_fds
        .iter()
        .filter(|(n, target)| *n != 3 && has_inode(target) && old_fds.contains(target))
        .collect();
    assert!(
        leaked.is_empty(),
        "fds of the old master leaked: {leaked:?}"
    );
    // … and no more of the others (epoll, /dev/null, lock files) than a fresh master
    // of the same pool holds.
    for (_, target) in new_fds.iter().filter(|(_, t)| !has_inode(t)) {
        let count = |fds: &[(u32, String)]| fds.iter().filter(|(_, t)| t == target).count();
        assert!(
            count(&new_fds) <= count(&old_targets),
            "more {target} in the new master than in the old: {new_fds:?} / {old_targets:?}"
        );
    }
    kill(new, "-TERM");
    wait_until("the new master to stop", LONG, || has_exited(new));
}

#[test]
fn upgrade_with_shared_accept() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "shared",
    ]);
}

#[test]
fn upgrade_with_locked_accept() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "locked",
    ]);
}

#[test]
fn upgrade_with_passed_accept() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "passed",
    ]);
}

#[test]
fn upgrade_with_scheduled_workers() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "shared",
        "--inner",
        "scheduled",
    ]);
}

/// A copy of the `hello` example in a directory of its own, to replace on disk.
struct Installed {
    dir: PathBuf,
}

impl Installed {
    fn new(name: &str) -> Installed {
        let dir = std::env::temp_dir().join(format!("mixserve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let installed = Installed { dir };
        installed.replace_with_copy(&example_path("hello"));
        installed
    }

    fn program(&self) -> PathBuf {
        self.dir.join("hello")
    }

    /// Replaces the program as a deploy does: a new file renamed over the old one.
    fn replace_with_script(&self, script: &str) {
        let staged = self.dir.join("staged");
        std::fs::write(&staged, script).expect("write script");
        self.install(&staged);
    }

    fn replace_with_copy(&self, binary: &Path) {
        let staged = self.dir.join("staged");
        std::fs::copy(binary, &staged).expect("copy binary");
        self.install(&staged);
    }

    fn install(&self, staged: &Path) {
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

#[test]
fn a_new_binary_that_fails_leaves_the_old_master_serving() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let installed = Installed::new("upgrade-fails");
    let args = ["--mixin", "preforked", "--workers", "2"];
    let mut pool = Pool::start(&installed.program(), &args);
    let old = pool.pid();
    let load = Load::start(pool.addr);
    // Served: the master's signal handlers are in place.
    load.wait_answers(ANSWERS_PER_PHASE);

    // A file that cannot be executed: the exec error is reported.
    installed.replace_with_script("#!/nonexistent/interpreter\n");
    kill(old, "-USR2");
    pool.wait_for_line(0, &["upgrade failed: could not exec the new binary"]);
    pool.wait_for_line(0, &["is gone"]);
    load.wait_answers(ANSWERS_PER_PHASE);

    // A broken build: it exits at once.
    let mark = pool.mark();
    installed.replace_with_script("#!/bin/sh\nexit 1\n");
    kill(old, "-USR2");
    pool.wait_for_line(mark, &["upgrade failed"]);
    // Reaped (the master serves on alone), whichever it noticed first.
    pool.wait_for(mark, "the failed new master reaped", |line| {
        line.contains("exited (exit 1) before it was ready") || line.contains("is gone")
    });
    load.wait_answers(ANSWERS_PER_PHASE);
    assert!(
        pool.child.try_wait().expect("try_wait").is_none(),
        "the old master exited"
    );

    // A slow one, held at its start by a gate file: a second SIGUSR2 meanwhile is
    // ignored. Once let through it runs the real binary, and the upgrade completes.
    let gate = installed.dir.join("gate");
    let real = example_path("hello");
    installed.replace_with_script(&format!(
        "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.05; done\nexec '{}' \"$@\"\n",
        gate.display(),
        real.display()
    ));
    let mark = pool.mark();
    kill(old, "-USR2");
    let started = pool.wait_for_line(mark, &["SIGUSR2: started", "as the new master"]);
    let starting = pid_in(&started);
    kill(old, "-USR2");
    pool.wait_for_line(mark, &["SIGUSR2 ignored: an upgrade is in progress"]);
    std::fs::write(&gate, b"").expect("open the gate");
    let ready = pool.wait_for_line(mark, &["is ready after"]);
    assert_eq!(pid_in(&ready), starting);
    pool.wait_exit();
    load.wait_answers(ANSWERS_PER_PHASE);
    let tally = load.finish();
    tally.assert_clean();
    assert_eq!(get(pool.addr, "/").status, 200);
    kill(starting, "-TERM");
    wait_until("the new master to stop", LONG, || has_exited(starting));
}

#[test]
fn a_new_master_never_ready_is_stopped_and_the_old_one_serves_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let installed = Installed::new("upgrade-silent");
    let args = ["--mixin", "preforked", "--workers", "2"];
    let mut pool = Pool::start_with(
        &installed.program(),
        &args,
        &[("MIXSERVE_TEST_UPGRADE_TIMEOUT_MS", "1000")],
    );
    let old = pool.pid();
    let load = Load::start(pool.addr);
    load.wait_answers(ANSWERS_PER_PHASE);
    // A new binary that starts and never reports ready (it holds the socket).
    installed.replace_with_script("#!/bin/sh\nwhile :; do sleep 0.05; done\n");
    kill(old, "-USR2");
    let started = pool.wait_for_line(0, &["SIGUSR2: started", "as the new master"]);
    let silent = pid_in(&started);
    pool.wait_for_line(0, &["upgrade failed: the new master is not ready after"]);
    pool.wait_for_line(0, &["is gone"]);
    assert!(has_exited(silent), "the silent new master is still there");
    load.wait_answers(ANSWERS_PER_PHASE);
    assert!(
        pool.child.try_wait().expect("try_wait").is_none(),
        "the old master exited"
    );
    let tally = load.finish();
    tally.assert_clean();
}

#[test]
fn the_old_masters_waiters_get_the_drains_503_and_the_new_master_serves_waits() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let args = [
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--inner",
        "threading",
    ];
    let mut pool = Pool::start(&example_path("comet"), &args);
    let mut waiters = util::start_waiters(pool.addr, 3);
    util::wait_for_waiters(pool.addr, 3);
    kill(pool.pid(), "-USR2");
    let new = pid_in(&pool.wait_for_line(0, &["is ready after"]));
    for waiter in &mut waiters {
        let reply = util::read_reply(waiter);
        assert_eq!(reply.status, 503, "{}", reply.text());
    }
    pool.wait_exit();
    // The new master's own objects: a fresh wait and notify.
    util::comet_contract(pool.addr, 2);
    kill(new, "-TERM");
    wait_until("the new master to stop", LONG, || has_exited(new));
}

#[test]
fn reuseport_refuses_the_upgrade_and_serves_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let args = [
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "reuseport",
    ];
    let pool = Pool::start(&example_path("hello"), &args);
    // Served: the master's signal handlers are in place.
    assert_eq!(get(pool.addr, "/").status, 200);
    kill(pool.pid(), "-USR2");
    pool.wait_for_line(0, &["SIGUSR2 ignored: Accept::ReusePort"]);
    assert_eq!(get(pool.addr, "/").status, 200);
    let children = util::children_of(pool.pid());
    assert_eq!(children.len(), 2, "only the two workers: {children:?}");
}
