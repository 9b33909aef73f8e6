//! The server core in-process (no forking here: the test harness is multithreaded):
//! start-up errors, listeners, hooks, shutdown.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use mixserve::handler::from_fn;
use mixserve::{Conn, Forking, Hooks, Iterative, PeerAddr, Server, StartError, Threading};

mod util;

fn echo_once() -> impl Fn() -> mixserve::handler::FnHandler<fn(&mut Conn) -> io::Result<()>> {
    fn serve(conn: &mut Conn) -> io::Result<()> {
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf)?;
        conn.write_all(&buf[..n])
    }
    || from_fn(serve as fn(&mut Conn) -> io::Result<()>)
}

/// A client of `addr` whose reads give up after 10 s (a guard against a hang, not a
/// timing the test relies on).
fn timed_client(addr: std::net::SocketAddr) -> TcpStream {
    let client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
}

fn round_trip(stream: &mut (impl Read + Write), message: &[u8]) -> Vec<u8> {
    stream.write_all(message).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    reply
}

#[test]
fn a_busy_address_is_a_clear_start_error() {
    let first = Server::builder(Iterative::new())
        .bind("127.0.0.1:0")
        .build(echo_once())
        .unwrap();
    let addr = first.local_addr().unwrap().to_string();
    let second = Server::builder(Iterative::new())
        .bind(addr.clone())
        .build(echo_once());
    match second {
        Err(StartError::Bind { addr: a, .. }) => assert_eq!(a, addr),
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[test]
fn bad_configuration_is_refused_at_start() {
    let no_addr = Server::builder(Iterative::new()).build(echo_once());
    assert!(matches!(no_addr, Err(StartError::NoAddress)));
    let backlog = Server::builder(Iterative::new())
        .bind("127.0.0.1:0")
        .backlog(0)
        .build(echo_once());
    assert!(matches!(backlog, Err(StartError::Config(_))));
    let threads = Server::builder(Threading::new().max_threads(0))
        .bind("127.0.0.1:0")
        .build(echo_once());
    assert!(matches!(threads, Err(StartError::Config(_))));
    let children = Server::builder(Forking::new().max_children(0))
        .bind("127.0.0.1:0")
        .build(echo_once());
    assert!(matches!(children, Err(StartError::Config(_))));
    let unresolvable = Server::builder(Iterative::new())
        .bind("no-such-host.invalid:80")
        .build(echo_once());
    assert!(matches!(unresolvable, Err(StartError::Resolve { .. })));
}

/// Each refusal names the part and the setting: the pool's own, and its inner model's.
#[test]
fn pool_configurations_name_the_setting_they_refuse() {
    use mixserve::mixin::Preforked;
    use mixserve::{ConfigError, Prethreaded};
    let refused = |model: Box<dyn mixserve::MixIn>| -> (&'static str, &'static str) {
        match Server::builder(model)
            .bind("127.0.0.1:0")
            .build(echo_once())
        {
            Err(StartError::Config(ConfigError { part, setting, .. })) => (part, setting),
            Err(other) => panic!("expected a configuration error, got {other}"),
            Ok(_) => panic!("expected a configuration error, the server started"),
        }
    };
    let forking_inside = Preforked::new().inner(Forking::new());
    assert_eq!(refused(Box::new(forking_inside)), ("preforked", "inner"));
    let bad_inner = Preforked::new().inner(Threading::new().max_threads(0));
    assert_eq!(refused(Box::new(bad_inner)), ("threading", "max_threads"));
    let no_threads = Prethreaded::new().threads(0);
    assert_eq!(refused(Box::new(no_threads)), ("prethreaded", "threads"));
    // A nap of centuries used to pass, then panic inside the runtime (an overflow).
    let endless_nap = mixserve::Scheduled::new().moderation_nap(Some(Duration::MAX));
    assert_eq!(
        refused(Box::new(endless_nap)),
        ("scheduled", "moderation_nap")
    );
}

/// The runtime takes any nap without panicking (its own users set it directly).
#[test]
fn a_runtime_takes_a_nap_of_any_length() {
    use mixserve::rt::{Runtime, RuntimeConfig};
    let config = RuntimeConfig {
        moderation_nap: Some(Duration::MAX),
        ..RuntimeConfig::default()
    };
    assert!(Runtime::new(config).is_ok());
}

#[test]
fn forking_refuses_to_fork_a_multithreaded_process() {
    let mut server = Server::builder(Forking::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(echo_once())
        .unwrap();
    let error = server
        .serve_forever()
        .expect_err("the test harness has threads");
    assert!(error.to_string().contains("threads"), "{error}");
}

#[test]
fn serves_a_unix_domain_socket_and_removes_it_on_close() {
    let dir = util::scratch::Scratch::new("test-unix");
    let path = dir.join("echo.sock");
    let mut server = Server::builder(Threading::new())
        .bind_unix(&path)
        .handle_signals(false)
        .build(echo_once())
        .unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || {
        server.serve_forever().unwrap();
        server
    });
    let mut client = UnixStream::connect(&path).unwrap();
    assert_eq!(round_trip(&mut client, b"over unix"), b"over unix");
    handle.shutdown();
    drop(serving.join().unwrap());
    assert!(!path.exists(), "socket file left behind");
}

/// A shutdown timeout of `Duration::MAX` ("wait however long") drains and returns.
#[test]
fn the_largest_shutdown_timeout_drains_and_returns() {
    let mut server = Server::builder(Threading::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .shutdown_timeout(Duration::MAX)
        .build(echo_once())
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let mut client = TcpStream::connect(addr).unwrap();
    assert_eq!(round_trip(&mut client, b"once"), b"once");
    handle.shutdown();
    serving.join().unwrap().unwrap();
}

#[derive(Default)]
struct Counting {
    timeouts: AtomicUsize,
    errors: AtomicUsize,
}

struct CountingHooks(Arc<Counting>);

impl Hooks for CountingHooks {
    fn verify_request(&self, peer: &PeerAddr) -> bool {
        // Refuse everyone: the client sees the connection closed with no reply.
        let _ = peer;
        false
    }
    fn handle_timeout(&self) {
        self.0.timeouts.fetch_add(1, Ordering::SeqCst);
    }
    fn handle_error(&self, _peer: &PeerAddr, _error: &io::Error) {
        self.0.errors.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn handle_request_times_out_and_verify_request_refuses() {
    let counts = Arc::new(Counting::default());
    let mut server = Server::builder(Iterative::new())
        .bind("127.0.0.1:0")
        .timeout(Duration::from_millis(50))
        .hooks(CountingHooks(Arc::clone(&counts)))
        .build(echo_once())
        .unwrap();
    server.handle_request().unwrap();
    assert_eq!(counts.timeouts.load(Ordering::SeqCst), 1);

    let addr = server.local_addr().unwrap();
    let client = thread::spawn(move || {
        let mut stream = timed_client(addr);
        let _ = stream.write_all(b"hello?");
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        reply
    });
    server.handle_request().unwrap();
    assert!(
        client.join().unwrap().is_empty(),
        "a refused client got a reply"
    );
    assert_eq!(counts.errors.load(Ordering::SeqCst), 0);
}

#[test]
fn shutdown_forces_idle_connections_after_the_timeout_and_joins_threads() {
    // A handler that waits for input for ever: only the forced shutdown ends it.
    let make = || from_fn(|conn: &mut Conn| io::copy(conn, &mut io::sink()).map(drop));
    let mut server = Server::builder(Threading::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .shutdown_timeout(Duration::from_millis(200))
        .build(make)
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    thread::spawn(move || done_tx.send(server.serve_forever().map_err(|e| e.to_string())));
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(b"still here").unwrap();
    thread::sleep(Duration::from_millis(100));
    handle.shutdown();
    let finished = done_rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(
        finished,
        Ok(Ok(())),
        "serve_forever did not return after the timeout"
    );
    // The server shut the socket down: EOF, never a hang.
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn a_panicking_handler_gives_its_thread_slot_back() {
    // One thread at most: if the panic leaked the slot, the second client would wait
    // for ever in the backlog.
    let make = || {
        from_fn(|conn: &mut Conn| {
            let mut first = [0u8; 1];
            conn.read_exact(&mut first)?;
            if first[0] == b'!' {
                panic!("asked to panic");
            }
            conn.write_all(b"ok")
        })
    };
    let mut server = Server::builder(Threading::new().max_threads(1))
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(make)
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let mut doomed = timed_client(addr);
    doomed.write_all(b"!").unwrap();
    let mut nothing = Vec::new();
    let _ = doomed.read_to_end(&mut nothing);
    for _ in 0..3 {
        let mut client = timed_client(addr);
        assert_eq!(round_trip(&mut client, b"?"), b"ok");
    }
    handle.shutdown();
    serving.join().unwrap().unwrap();
}

/// An error hook that panics: a user's bug, which must not cost the server anything
/// but the log line.
struct PanickingHook;

impl Hooks for PanickingHook {
    fn handle_error(&self, _: &PeerAddr, error: &io::Error) {
        panic!("the hook panics on {error}");
    }
}

#[test]
fn a_panicking_error_hook_gives_its_thread_slot_back() {
    // One thread at most, so a slot lost to the panic would leave the next client
    // waiting for ever in the backlog: checked for each thread model.
    let make = || {
        from_fn(|conn: &mut Conn| {
            let mut first = [0u8; 1];
            conn.read_exact(&mut first)?;
            if first[0] == b'!' {
                return Err(io::Error::other("asked to fail"));
            }
            conn.write_all(b"ok")
        })
    };
    let models: [Box<dyn mixserve::MixIn>; 2] = [
        Box::new(Threading::new().max_threads(1)),
        Box::new(mixserve::Prethreaded::new().threads(1).max_threads(1)),
    ];
    for model in models {
        let mut server = Server::builder(model)
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .hooks(PanickingHook)
            .build(make)
            .unwrap();
        let addr = server.local_addr().unwrap();
        let handle = server.shutdown_handle();
        let serving = thread::spawn(move || server.serve_forever());
        for _ in 0..3 {
            let mut doomed = timed_client(addr);
            assert_eq!(round_trip(&mut doomed, b"!"), b"");
            let mut client = timed_client(addr);
            assert_eq!(round_trip(&mut client, b"?"), b"ok");
        }
        handle.shutdown();
        serving.join().unwrap().unwrap();
    }
}

#[test]
fn a_server_stopped_serves_again_under_every_thread_model() {
    let models: [Box<dyn mixserve::MixIn>; 3] = [
        Box::new(Iterative::new()),
        Box::new(Threading::new()),
        Box::new(mixserve::Prethreaded::new().threads(2)),
    ];
    for model in models {
        let name = model.name();
        let mut server = Server::builder(model)
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .build(echo_once())
            .unwrap();
        let handle = server.shutdown_handle();
        for round in 0..2 {
            // Read each time: a port-0 listener gets a new port when it listens again.
            let addr = server.local_addr().unwrap();
            let serving = thread::spawn(move || {
                server.serve_forever().unwrap();
                server
            });
            let mut client = timed_client(addr);
            assert_eq!(
                round_trip(&mut client, b"hi"),
                b"hi",
                "{name}, round {round}"
            );
            handle.shutdown();
            server = serving.join().unwrap();
        }
    }
}

/// A `verify_request` hook that panics on the first connection it sees.
struct PanicsOnce(std::sync::atomic::AtomicBool);

impl Hooks for PanicsOnce {
    fn verify_request(&self, _: &PeerAddr) -> bool {
        assert!(self.0.swap(true, Ordering::SeqCst), "verify_request panics");
        true
    }
}

/// A panic in `verify_request` refuses the connection it looked at, under every model
/// that runs the hook on its own accept loop or pool thread, and the next connection
/// is served: it killed the serving thread (a Locked pool lost a thread for good, a
/// one-thread pool stopped accepting, Threading's loop unwound out of `serve_forever`).
#[test]
fn a_panic_in_verify_request_refuses_one_connection_and_serving_goes_on() {
    use mixserve::mixin::PoolAccept;
    let models: [Box<dyn mixserve::MixIn>; 5] = [
        Box::new(Iterative::new()),
        Box::new(Threading::new()),
        Box::new(mixserve::Prethreaded::new().threads(1).max_threads(1)),
        Box::new(
            mixserve::Prethreaded::new()
                .threads(1)
                .accept(PoolAccept::Handoff),
        ),
        Box::new(mixserve::Scheduled::new()),
    ];
    for model in models {
        let name = model.name();
        let mut server = Server::builder(model)
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .hooks(PanicsOnce(Default::default()))
            .build(echo_once())
            .unwrap();
        let addr = server.local_addr().unwrap();
        let handle = server.shutdown_handle();
        let serving = thread::spawn(move || server.serve_forever());
        // Closed unanswered: an end of file, or a reset for the unread request.
        let mut refused = timed_client(addr);
        let _ = refused.write_all(b"first");
        let mut reply = Vec::new();
        match refused.read_to_end(&mut reply) {
            Ok(_) => assert!(reply.is_empty(), "{name}: {reply:?}"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{name}"),
        }
        let mut served = timed_client(addr);
        assert_eq!(round_trip(&mut served, b"second"), b"second", "{name}");
        handle.shutdown();
        serving.join().unwrap().unwrap();
    }
}

/// What a handler wrote before it failed still goes out: the server flushes either way.
#[test]
fn a_failing_handler_s_last_words_are_flushed() {
    let mut server = Server::builder(Iterative::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(|| {
            from_fn(|conn: &mut Conn| {
                conn.write_all(b"ERR bad command\n")?;
                Err(io::Error::new(io::ErrorKind::InvalidData, "bad command"))
            })
        })
        .unwrap();
    let addr = server.local_addr().unwrap();
    let client = thread::spawn(move || {
        let mut stream = timed_client(addr);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        reply
    });
    server.handle_request().unwrap();
    assert_eq!(client.join().unwrap(), b"ERR bad command\n");
}
