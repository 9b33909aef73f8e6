//! `Prethreaded`: growth to the limit then 503, statistics, and clean shutdown, under
//! both hand-overs (each server in its own process).

mod util;

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use mixserve::handler::from_fn;
use mixserve::mixin::PoolAccept;
use mixserve::{Conn, Hooks, PeerAddr, Prethreaded, Server};
use util::{
    IO_TIMEOUT, ServerProcess, get, read_reply, start_closing_waiters, start_waiters,
    wait_for_waiters,
};

/// A line echo server under `model`, with `hooks`, served on a thread.
fn echo_server<H: Hooks>(model: Prethreaded, hooks: H) -> Server<Prethreaded> {
    Server::builder(model)
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .poll_interval(Duration::from_secs(3600))
        .hooks(hooks)
        .build(|| {
            from_fn(|conn: &mut Conn| -> io::Result<()> {
                let mut line = String::new();
                BufReader::new(&mut *conn).read_line(&mut line)?;
                conn.write_all(line.as_bytes())
            })
        })
        .unwrap()
}

/// Sends `line` on a new connection and returns what comes back (empty at a close).
fn echo(addr: std::net::SocketAddr, line: &str) -> String {
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.write_all(line.as_bytes()).unwrap();
    let mut echoed = String::new();
    let _ = BufReader::new(client).read_line(&mut echoed);
    echoed
}

struct NoHooks;

impl Hooks for NoHooks {}

/// Says when `verify_request` runs, then holds it until told to go on.
struct Gate {
    entered: Mutex<Sender<()>>,
    go: Mutex<Receiver<()>>,
}

impl Hooks for Gate {
    fn verify_request(&self, _: &PeerAddr) -> bool {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.go.lock().unwrap().recv_timeout(IO_TIMEOUT);
        true
    }
}

/// A connection a `Locked` thread took just before a graceful stop is served: the
/// drain counts it from the accept on, also while the hooks look at it.
#[test]
fn a_connection_accepted_as_the_stop_comes_is_served() {
    let (entered, entered_rx) = channel();
    let (go_tx, go) = channel();
    let gate = Gate {
        entered: Mutex::new(entered),
        go: Mutex::new(go),
    };
    let model = Prethreaded::new().threads(1).accept(PoolAccept::Locked);
    let mut server = echo_server(model, gate);
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let client = thread::spawn(move || echo(addr, "late\n"));
    entered_rx.recv_timeout(IO_TIMEOUT).unwrap();
    handle.shutdown();
    // The stop is under way (a drain that missed the connection ends at once); the
    // hook lets the connection on only now.
    thread::sleep(Duration::from_millis(300));
    go_tx.send(()).unwrap();
    assert_eq!(client.join().unwrap(), "late\n");
    serving.join().unwrap().unwrap();
}

/// A hand-over pool at its limit (one thread) waits for a free thread; the thread that
/// frees wakes it, so the next connection does not wait for the loop's poll interval
/// (an hour here: without the wake the second client would time out).
#[test]
fn a_full_handoff_pool_accepts_again_as_soon_as_a_thread_frees() {
    let model = Prethreaded::new()
        .threads(1)
        .max_threads(1)
        .accept(PoolAccept::Handoff);
    let mut server = echo_server(model, NoHooks);
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    for name in ["first", "second", "third"] {
        assert_eq!(echo(addr, &format!("{name}\n")), format!("{name}\n"));
    }
    handle.shutdown();
    serving.join().unwrap().unwrap();
}

/// 2 threads growing to 4: 3 waits block, the 4th gets 503 at once, and a notify is
/// still served.
#[test]
fn the_pool_grows_to_its_limit_then_answers_503() {
    for accept in ["locked", "handoff"] {
        let server = ServerProcess::start(
            "comet",
            &[
                "--mixin",
                "prethreaded",
                "--accept",
                accept,
                "--threads",
                "2",
                "--max-workers",
                "4",
            ],
        );
        let mut waiters = start_waiters(server.addr, 3);
        wait_for_waiters(server.addr, 3);
        let mut refused = start_closing_waiters(server.addr, 1);
        assert_eq!(read_reply(&mut refused[0]).status, 503, "{accept}");
        assert_eq!(get(server.addr, "/notify").text(), "3", "{accept}");
        for waiter in &mut waiters {
            assert_eq!(read_reply(waiter).text(), "3", "{accept}");
        }
    }
}

/// `--stats` prints one row per thread that served, and the totals add up.
#[test]
fn stats_print_the_per_thread_distribution() {
    for accept in ["locked", "handoff"] {
        let mut server = ServerProcess::start(
            "hello",
            &[
                "--mixin",
                "prethreaded",
                "--accept",
                accept,
                "--threads",
                "3",
                "--stats",
            ],
        );
        for _ in 0..30 {
            assert_eq!(get(server.addr, "/").text(), util::HELLO);
        }
        assert!(server.stop().is_some_and(|s| s.success()), "{accept}");
        let out = server.rest_of_stdout();
        assert!(
            out.contains("| worker | pid | connections | requests | wasted wakeups |"),
            "{out}"
        );
        let total = out
            .lines()
            .find(|l| l.starts_with("| total |"))
            .unwrap_or_else(|| panic!("{accept}: no total row in {out}"));
        assert!(
            total.starts_with("| total | - | 30 | 30 |"),
            "{accept}: {total}"
        );
    }
}
