//! The scheduled model: many waiters in one process, panics and timers on coroutines,
//! the connection cap. No forking here, so servers may run in-process.

mod util;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use mixserve::handler::from_fn;
use mixserve::{Conn, Scheduled, Server, ShutdownHandle};
use util::{ServerProcess, comet_contract, connect};

#[test]
fn two_thousand_comet_waiters_on_one_scheduled_server() {
    let server = ServerProcess::start("comet", &["--mixin", "scheduled"]);
    comet_contract(server.addr, 2000);
}

/// Starts an in-process scheduled server with `model` and `handler`; returns its address
/// and a handle that stops it.
fn start<F>(
    model: Scheduled,
    handler: F,
) -> (std::net::SocketAddr, ShutdownHandle, thread::JoinHandle<()>)
where
    F: Fn(&mut Conn) -> io::Result<()> + Clone + Send + Sync + 'static,
{
    util::in_thread::serve_on_thread(move || {
        let make = move || from_fn(handler.clone());
        Server::builder(model)
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .shutdown_timeout(Duration::from_millis(500))
            .build(make)
            .unwrap()
    })
}

/// Reads one line from the connection, answers it upper-cased; panics on "panic".
fn shout(conn: &mut Conn) -> io::Result<()> {
    let mut line = String::new();
    while conn.read_line(&mut line)? > 0 {
        if line.trim() == "panic" {
            panic!("the handler was asked to panic");
        }
        conn.write_all(line.to_uppercase().as_bytes())?;
        conn.flush()?;
        line.clear();
    }
    Ok(())
}

fn ask(stream: &mut BufReader<TcpStream>, line: &str) -> String {
    stream.get_mut().write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_line(&mut reply).unwrap();
    reply
}

#[test]
fn a_panicking_handler_closes_its_connection_and_the_loop_lives_on() {
    let (addr, handle, serving) = start(Scheduled::new(), shout);
    let mut calm = BufReader::new(connect(addr));
    assert_eq!(ask(&mut calm, "before\n"), "BEFORE\n");
    let mut doomed = connect(addr);
    doomed.write_all(b"panic\n").unwrap();
    let mut rest = Vec::new();
    let _ = doomed.read_to_end(&mut rest); // closed (EOF or reset), not hung
    assert!(rest.is_empty());
    assert_eq!(ask(&mut calm, "after\n"), "AFTER\n");
    let mut fresh = BufReader::new(connect(addr));
    assert_eq!(ask(&mut fresh, "new\n"), "NEW\n");
    handle.shutdown();
    serving.join().unwrap();
}

#[test]
fn sleeping_handlers_run_concurrently_and_wake_in_timer_order() {
    // Each connection names how long to sleep; the shorter sleep answers first even
    // though it arrived second, which only concurrent coroutines with timers can do.
    let nap = |conn: &mut Conn| {
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let millis: u64 = line.trim().parse().unwrap_or(0);
        mixserve::rt::sleep(Duration::from_millis(millis));
        conn.write_all(format!("slept {millis}\n").as_bytes())
    };
    let (addr, handle, serving) = start(Scheduled::new(), nap);
    let (tx, rx) = mpsc::channel();
    for millis in [600u64, 10] {
        let tx = tx.clone();
        let mut stream = BufReader::new(connect(addr));
        stream
            .get_mut()
            .write_all(format!("{millis}\n").as_bytes())
            .unwrap();
        thread::spawn(move || {
            let mut reply = String::new();
            stream.read_line(&mut reply).unwrap();
            tx.send(reply).unwrap();
        });
        thread::sleep(Duration::from_millis(50)); // the long sleeper starts first
    }
    let order: Vec<String> = rx.iter().take(2).collect();
    assert_eq!(order, ["slept 10\n", "slept 600\n"]);
    handle.shutdown();
    serving.join().unwrap();
}

#[test]
fn connections_over_the_cap_are_refused_while_the_others_keep_working() {
    let model = Scheduled::new().max_connections(2);
    let stats = model.stats();
    let (addr, handle, serving) = start(model, shout);
    let mut first = BufReader::new(connect(addr));
    let mut second = BufReader::new(connect(addr));
    assert_eq!(ask(&mut first, "one\n"), "ONE\n");
    assert_eq!(ask(&mut second, "two\n"), "TWO\n");
    let mut third = connect(addr);
    let _ = third.write_all(b"three\n");
    let mut rest = Vec::new();
    let _ = third.read_to_end(&mut rest);
    assert!(rest.is_empty(), "a connection past the cap was served");
    assert_eq!(stats.refused(), 1);
    assert_eq!(ask(&mut first, "still\n"), "STILL\n");
    assert_eq!(ask(&mut second, "here\n"), "HERE\n");
    drop((first, second));
    handle.shutdown();
    serving.join().unwrap();
    assert_eq!(stats.live(), 0);
}

#[test]
fn several_loops_share_one_listener() {
    let (addr, handle, serving) = start(Scheduled::new().threads(2), shout);
    let mut streams: Vec<_> = (0..20).map(|_| BufReader::new(connect(addr))).collect();
    for (n, stream) in streams.iter_mut().enumerate() {
        assert_eq!(ask(stream, &format!("n{n}\n")), format!("N{n}\n"));
    }
    drop(streams);
    handle.shutdown();
    serving.join().unwrap();
}

#[test]
fn bad_scheduled_configuration_is_refused() {
    let tiny = Server::builder(Scheduled::new().stack_size(8 * 1024))
        .bind("127.0.0.1:0")
        .build(|| from_fn(shout));
    assert!(matches!(tiny, Err(mixserve::StartError::Config(_))));
    let huge = Server::builder(Scheduled::new().max_connections(1_000_000))
        .bind("127.0.0.1:0")
        .build(|| from_fn(shout));
    assert!(matches!(huge, Err(mixserve::StartError::Config(_))));
    // Each loop's own coroutines and the stacks kept for reuse count against the same
    // per-process budget as the connections: what fits one loop does not fit eight.
    let build = |model: Scheduled| {
        Server::builder(model)
            .bind("127.0.0.1:0")
            .build(|| from_fn(shout))
            .map(drop)
    };
    let most_for_one = 30_000 - 1_024 - 2;
    assert!(build(Scheduled::new().max_connections(most_for_one)).is_ok());
    let eight = build(Scheduled::new().threads(8).max_connections(most_for_one));
    assert!(matches!(eight, Err(mixserve::StartError::Config(_))));
}

/// serde_json recurses once per nesting level; on a 64 KiB coroutine stack a short
/// deep body used to overflow and take the whole loop down. It is parsed on the loop's
/// stack now. (`IgnoredAny`: a deep `Value` the handler drops recurses on its own stack.)
#[test]
fn deeply_nested_json_is_answered_without_overflowing_a_coroutine_stack() {
    use mixserve::http::{Http, Request, Response};
    let app = |req: &mut Request| match req.json::<serde::de::IgnoredAny>() {
        Ok(_) => Response::text(200, "parsed"),
        Err(error) => error.to_response(),
    };
    let (tx, rx) = mpsc::channel();
    let serving = thread::spawn(move || {
        let mut server = Server::builder(Scheduled::new())
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .shutdown_timeout(Duration::from_millis(500))
            .build(Http::new(app))
            .unwrap();
        tx.send((server.local_addr().unwrap(), server.shutdown_handle()))
            .unwrap();
        server.serve_forever().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    for depth in [126, 200] {
        let body = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let mut stream = connect(addr);
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "depth {depth}: {answer:?}"
        );
    }
    handle.shutdown();
    serving.join().unwrap();
}

/// Hooks whose `service_actions`, which the loop's watch coroutine runs, panics.
struct PanickingHooks;

impl mixserve::Hooks for PanickingHooks {
    fn service_actions(&self) {
        panic!("service_actions panics");
    }
}

/// Runs a scheduled server with `hooks` on its own thread, makes one connection, and
/// returns what `serve_forever` returned (a hang fails the test after 30 s).
fn serve_with_panicking(hooks: PanickingHooks) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut server = Server::builder(Scheduled::new())
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .poll_interval(Duration::from_millis(20))
            .shutdown_timeout(Duration::ZERO)
            .hooks(hooks)
            .build(|| from_fn(shout))
            .unwrap();
        addr_tx.send(server.local_addr().unwrap()).unwrap();
        let _ = tx.send(server.serve_forever());
    });
    let _client = TcpStream::connect(addr_rx.recv().unwrap()).unwrap();
    rx.recv_timeout(Duration::from_secs(30))
        .expect("serve_forever returned")
}

#[test]
fn a_panic_in_a_hook_the_loop_runs_stops_the_server_with_an_error() {
    // Before: the coroutine died with the panic, and the server never stopped (nobody
    // watched the stop). A panicking `verify_request` only refuses its connection
    // (tests/server.rs).
    let error = serve_with_panicking(PanickingHooks).expect_err("a failed loop is an error");
    assert!(error.to_string().contains("service_actions"), "{error}");
}

#[test]
fn a_coroutine_a_handler_left_running_does_not_hold_the_shutdown() {
    let (addr, handle, serving) = start(Scheduled::new(), |conn: &mut Conn| {
        mixserve::rt::spawn(|| {
            loop {
                mixserve::rt::sleep(Duration::from_secs(3600));
            }
        })
        .map_err(io::Error::other)?;
        conn.write_all(b"started\n")
    });
    let mut client = BufReader::new(connect(addr));
    let mut line = String::new();
    client.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    handle.shutdown();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(serving.join());
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("serve_forever returned")
        .unwrap();
}

/// Refuses the connection that comes from one client port.
struct RefuseFromPort(Arc<AtomicU16>);

impl mixserve::Hooks for RefuseFromPort {
    fn verify_request(&self, peer: &mixserve::PeerAddr) -> bool {
        !matches!(peer, mixserve::PeerAddr::Tcp(addr) if addr.port() == self.0.load(Ordering::SeqCst))
    }
}

#[test]
fn a_connection_a_hook_refuses_does_not_hold_up_the_ones_queued_behind_it() {
    // Both connect while a handler keeps the loop asleep, so one listener edge stands
    // for both: after the refusal the loop must look again at once, not wait for an
    // edge that will not come (the poll interval, its other way out, is an hour here).
    let refused = Arc::new(AtomicU16::new(0));
    let (tx, rx) = mpsc::channel();
    let hooks = RefuseFromPort(Arc::clone(&refused));
    let serving = thread::spawn(move || {
        let handler = |conn: &mut Conn| {
            let mut line = String::new();
            conn.read_line(&mut line)?;
            if line == "sleep\n" {
                conn.write_all(b"sleeping\n")?;
                conn.flush()?;
                // Blocks the whole loop, on purpose.
                thread::sleep(Duration::from_millis(500));
            }
            conn.write_all(line.to_uppercase().as_bytes())?;
            conn.flush()
        };
        let mut server = Server::builder(Scheduled::new())
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .poll_interval(Duration::from_secs(3600))
            .shutdown_timeout(Duration::from_millis(500))
            .hooks(hooks)
            .build(move || from_fn(handler))
            .unwrap();
        tx.send((server.local_addr().unwrap(), server.shutdown_handle()))
            .unwrap();
        server.serve_forever().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    let mut sleeper = BufReader::new(connect(addr));
    assert_eq!(ask(&mut sleeper, "sleep\n"), "sleeping\n");
    let mut turned_away = connect(addr);
    refused.store(turned_away.local_addr().unwrap().port(), Ordering::SeqCst);
    let mut queued = BufReader::new(connect(addr));
    assert_eq!(ask(&mut queued, "behind\n"), "BEHIND\n");
    let mut rest = Vec::new();
    let _ = turned_away.read_to_end(&mut rest); // closed (EOF or reset), not hung
    assert!(rest.is_empty());
    handle.shutdown();
    serving.join().unwrap();
}
