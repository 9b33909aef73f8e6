//! A private `redis-server` for a test: started on a free loopback port with no
//! persistence, stopped on drop. When the program is missing the test is skipped with
//! a loud message, or fails under `CI=true` with the install hint.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` this test owns.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

/// Starts one, or says why not (`None`: skip the test).
pub fn redis_or_skip(test: &str) -> Option<RedisServer> {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        let hint = "redis-server is not installed: apt-get install -y redis-server (.ci/run does)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: {hint}");
        }
        eprintln!("\n******** SKIP {test}: {hint} ********\n");
        return None;
    }
    // Another test may learn the same free port and start its own redis there first;
    // ours then exits (EADDRINUSE) and `launch` says so, so try another port.
    for _ in 0..5 {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
        };
        if server.launch() {
            return Some(server);
        }
    }
    panic!("{test}: redis-server did not start on any of five free ports");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and waits until it answers; panics if it cannot.
    pub fn start(&mut self) {
        assert!(
            self.launch(),
            "redis-server could not listen on 127.0.0.1:{} (taken?)",
            self.port
        );
    }

    /// Starts the server on its port and waits until it answers (true) or exits (false).
    ///
    /// An answer on the port is not proof: another test's redis may hold it. The
    /// answering server's `process_id` must be our child's.
    fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        let ours = format!("process_id:{}", child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            if let Ok(redis::Value::BulkString(info)) = self.try_query(&["INFO", "server"]) {
                if String::from_utf8_lossy(&info).lines().any(|l| l == ours) {
                    return true;
                }
            }
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts a fresh one (empty) on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: a Redis that stops answering.
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    fn try_query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn)
    }

    /// Runs one command on a fresh connection.
    pub fn query(&self, args: &[&str]) -> redis::Value {
        self.try_query(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// An integer reply.
    pub fn int(&self, args: &[&str]) -> i64 {
        match self.query(args) {
            redis::Value::Int(n) => n,
            other => panic!("redis {args:?}: not an integer: {other:?}"),
        }
    }

    /// How many connections are subscribed to `channel`.
    pub fn subscribers(&self, channel: &str) -> i64 {
        match self.query(&["PUBSUB", "NUMSUB", channel]) {
            redis::Value::Array(items) => match items.get(1) {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Waits (bounded) until `n` servers subscribe to the comet broadcast.
    pub fn wait_for_subscribers(&self, channel: &str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.subscribers(channel) != n {
            assert!(
                Instant::now() < deadline,
                "{channel}: never {n} subscribers"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.freeze(false);
        self.kill();
    }
}
