//! Behind a real nginx: the examples speak SCGI (`--protocol scgi`) to Debian's
//! `nginx` (package `nginx-light`), started by the test on a free loopback port with a
//! generated configuration, under every model family: `hello` through nginx, a POST
//! body, the comet contract (200 waiters released by one notify), and bad requests
//! answered by nginx or mixserve without a hang.
//!
//! Without nginx the tests fail under `CI=true` (with an install hint) and otherwise
//! print a loud SKIP and pass.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::{ServerProcess, comet_contract, connect, read_reply};

/// The model families, each as the example's arguments.
const FAMILIES: &[&[&str]] = &[
    &["--mixin", "threading"],
    &["--mixin", "scheduled"],
    &["--mixin", "forking"],
    &["--mixin", "preforked"],
    &["--mixin", "preforked", "--inner", "scheduled"],
    &["--mixin", "prethreaded"],
];

/// Where nginx is, or `None` after saying why the test is skipped.
fn nginx_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let hint = "nginx not found: install it with `apt-get install -y nginx-light` \
                    (.ci/run does)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{hint}");
        eprintln!("\n*** SKIP: {hint} ***\n");
    }
    found
}

/// An nginx of our own: foreground, one process, everything under a temp dir.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx on a free loopback port, passing every request to the SCGI `backend`.
    fn start(binary: &Path, backend: SocketAddr, name: &str) -> Nginx {
        let dir =
            std::env::temp_dir().join(format!("mixserve-nginx-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Bind port 0 to learn a free port, then let nginx have it (retried below if
        // someone else took it meanwhile).
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            std::fs::write(dir.join("nginx.conf"), config(&dir, addr, backend)).unwrap();
            let child = Command::new(binary)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
            let mut nginx = Nginx {
                child,
                dir: dir.clone(),
                addr,
            };
            if nginx.wait_until_listening() {
                return nginx;
            }
        }
        panic!(
            "nginx did not start; its log: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }

    /// Polls the port until this nginx answers (true) or exits (false).
    ///
    /// A bare connect is not proof: another test's nginx may hold the same port (both
    /// learned it from `bind(0)`), and ours then exits with EADDRINUSE just after the
    /// probe, so the test would talk to a stranger that stops mid-test. Asking for the
    /// answering process's pid tells ours from theirs.
    fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let ours = self.child.id().to_string();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if answering_pid(self.addr).is_some_and(|pid| pid == ours) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful; then make sure.
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The generated configuration: the README's "Behind nginx" snippet in a minimal
/// foreground server.
fn config(dir: &Path, listen: SocketAddr, backend: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 8192;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 8m;
    server {{
        listen {listen};
        # Which nginx answers on this port (see `wait_until_listening`).
        location = {PID_PATH} {{ return 200 \"$pid\"; }}
        location / {{
            scgi_param REQUEST_METHOD  $request_method;
            scgi_param REQUEST_URI     $request_uri;
            scgi_param QUERY_STRING    $query_string;
            scgi_param CONTENT_TYPE    $content_type;
            scgi_param SERVER_PROTOCOL $server_protocol;
            scgi_param REMOTE_ADDR     $remote_addr;
            scgi_param REMOTE_PORT     $remote_port;
            scgi_param SERVER_PORT     $server_port;
            scgi_param SERVER_NAME     $server_name;
            scgi_param HTTP_HOST       $host;
            scgi_param SCGI            1;
            scgi_pass {backend};
            # Long-polls wait longer than any test does.
            scgi_read_timeout 300s;
        }}
    }}
}}
"
    )
}

/// The test-only location where nginx answers with its own pid.
const PID_PATH: &str = "/mixserve-test/nginx-pid";

/// The pid of the nginx answering on `addr`, if one answers.
fn answering_pid(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {PID_PATH} HTTP/1.0\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.trim().to_string())
}

/// One request on a fresh connection through nginx, with a body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> util::Reply {
    let mut stream = connect(addr);
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    read_reply(&mut BufReader::new(stream))
}

/// Sends `raw` and reads until nginx closes; the status code of the answer.
fn raw_status(addr: SocketAddr, raw: &[u8]) -> u16 {
    let mut stream = connect(addr);
    // No half-close: nginx takes it for a client that left and answers nothing.
    let _ = stream.write_all(raw);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| {
            let start = String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
            panic!("no answer to {start:?}...: {text:?}")
        })
}

fn hello_and_bodies(nginx: &Path, family: &[&str]) {
    let mut args = vec!["--protocol", "scgi"];
    args.extend_from_slice(family);
    let mut hello = ServerProcess::start("hello", &args);
    let front = Nginx::start(nginx, hello.addr, &format!("hello-{}", family.join("-")));
    let reply = request(front.addr, "GET", "/", b"");
    assert_eq!(
        (reply.status, reply.text()),
        (200, util::HELLO.into()),
        "{family:?}"
    );
    let big = request(front.addr, "GET", "/bytes/300000", b"");
    assert_eq!((big.status, big.body.len()), (200, 300_000), "{family:?}");
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = request(front.addr, "POST", "/echo", &body);
    assert_eq!(echoed.status, 200, "{family:?}");
    assert!(
        echoed.body == body,
        "{family:?}: the POST body came back changed"
    );

    // A field the client repeats: nginx before 1.23 passes each line as its own
    // variable, which the SCGI adapter takes as repeated fields.
    let repeated = raw_status(
        front.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nAccept: a\r\nAccept: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(repeated, 200, "{family:?}");

    // Bad requests: one nginx refuses itself, one that reaches mixserve and is over its
    // body limit. Either answer will do, as long as one comes (read timeouts bound it).
    let garbage = raw_status(front.addr, b"GARBAGE\x01 / HTTP/1.1\r\n\r\n");
    assert_eq!(garbage, 400, "{family:?}");
    let too_big = vec![b'x'; 2 * 1024 * 1024];
    let status = raw_status(
        front.addr,
        &[
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                too_big.len()
            )
            .as_bytes(),
            &too_big,
        ]
        .concat(),
    );
    assert!(
        status == 413 || status == 502,
        "{family:?}: a body over mixserve's limit got {status}"
    );
    // Still serving.
    assert_eq!(
        request(front.addr, "GET", "/", b"").status,
        200,
        "{family:?}"
    );
    drop(front);
    assert!(hello.stop().is_some(), "{family:?}: hello did not stop");
}

fn comet_through_nginx(nginx: &Path, family: &[&str]) {
    let mut args = vec!["--protocol", "scgi"];
    args.extend_from_slice(family);
    let mut comet = ServerProcess::start("comet", &args);
    let front = Nginx::start(nginx, comet.addr, &format!("comet-{}", family.join("-")));
    comet_contract(front.addr, 200);
    drop(front);
    assert!(comet.stop().is_some(), "{family:?}: comet did not stop");
}

fn family(index: usize) {
    let Some(nginx) = nginx_binary() else {
        return;
    };
    hello_and_bodies(&nginx, FAMILIES[index]);
    comet_through_nginx(&nginx, FAMILIES[index]);
}

#[test]
fn threading_behind_nginx() {
    family(0);
}

#[test]
fn scheduled_behind_nginx() {
    family(1);
}

#[test]
fn forking_behind_nginx() {
    family(2);
}

#[test]
fn preforked_behind_nginx() {
    family(3);
}

#[test]
fn preforked_scheduled_behind_nginx() {
    family(4);
}

#[test]
fn prethreaded_behind_nginx() {
    family(5);
}
