//! `Prethreaded`: growth to the limit then 503, statistics, and clean shutdown, under
//! both hand-overs (each server in its own process).

mod util;

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use mixserve::handler::from_fn;
use mixserve::mixin::PoolAccept;
use mixserve::{Conn, Prethreaded, Server};
use util::{
    IO_TIMEOUT, ServerProcess, get, read_reply, start_closing_waiters, start_waiters,
    wait_for_waiters,
};

/// A hand-over pool at its limit (one thread) waits for a free thread; the thread that
/// frees wakes it, so the next connection does not wait for the loop's poll interval
/// (an hour here: without the wake the second client would time out).
#[test]
fn a_full_handoff_pool_accepts_again_as_soon_as_a_thread_frees() {
    let model = Prethreaded::new()
        .threads(1)
        .max_threads(1)
        .accept(PoolAccept::Handoff);
    let mut server = Server::builder(model)
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .poll_interval(Duration::from_secs(3600))
        .build(|| {
            from_fn(|conn: &mut Conn| -> io::Result<()> {
                let mut line = String::new();
                BufReader::new(&mut *conn).read_line(&mut line)?;
                conn.write_all(line.as_bytes())
            })
        })
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    for name in ["first", "second", "third"] {
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        client.write_all(format!("{name}\n").as_bytes()).unwrap();
        let mut echoed = String::new();
        BufReader::new(client).read_line(&mut echoed).unwrap();
        assert_eq!(echoed, format!("{name}\n"));
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
            assert_eq!(get(server.addr, "/").text(), "hello");
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
