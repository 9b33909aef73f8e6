//! The pool driven by hand, with no serving loop: what happens to a connection queued
//! when the forced end comes, to one handed to a `Locked` pool after shutdown began,
//! and a thread that grows the pool while it starts.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::PoolAccept;
use super::pool::Pool;
use crate::conn::{Conn, PeerAddr};
use crate::handler::from_fn;
use crate::mixin::Iterative;
use crate::mixin::pool_stats::Scoreboard;
use crate::server::Server;
use crate::server::source::Source;

thread_local! {
    /// Run by `Pool::start` before each spawn of its start-up loop, on its thread.
    static BEFORE_START_SPAWN: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
}

/// `Pool::start`'s test seam.
pub(super) fn before_start_spawn() {
    BEFORE_START_SPAWN.with(|hook| {
        if let Some(hook) = hook.borrow_mut().as_mut() {
            hook();
        }
    });
}

/// A server whose handler counts its connections, says when the first one starts,
/// and holds that one until its socket reads end of file.
fn counting_server(served: &Arc<AtomicUsize>, entered: Sender<()>) -> Server<Iterative> {
    let served = Arc::clone(served);
    Server::builder(Iterative::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(move || {
            let (served, entered) = (Arc::clone(&served), entered.clone());
            from_fn(move |conn: &mut Conn| -> io::Result<()> {
                if served.fetch_add(1, Ordering::SeqCst) == 0 {
                    let _ = entered.send(());
                    io::copy(conn, &mut io::sink())?;
                }
                Ok(())
            })
        })
        .unwrap()
}

fn unix_conn() -> (UnixStream, Conn) {
    let (client, server) = UnixStream::pair().unwrap();
    (client, Conn::from_fd(server.into(), PeerAddr::Unix(None)))
}

/// A counting server, a pool of one thread taking its connections by `accept`, and
/// what the server's handler reports.
struct OneThread {
    server: Server<Iterative>,
    pool: Pool,
    served: Arc<AtomicUsize>,
    entered_rx: Receiver<()>,
}

fn one_thread_pool(accept: PoolAccept) -> OneThread {
    let served = Arc::new(AtomicUsize::new(0));
    let (entered, entered_rx) = bounded(1);
    let server = counting_server(&served, entered);
    let ctx = server.context();
    let source = Arc::new(Source::open(ctx, None).unwrap());
    let board = Arc::new(Scoreboard::new(1).unwrap());
    let pool = Pool::start(ctx, &source, board, accept, 1, 1).unwrap();
    OneThread {
        server,
        pool,
        served,
        entered_rx,
    }
}

#[test]
fn a_connection_still_queued_at_the_forced_end_is_closed_unserved() {
    let OneThread {
        server: _server,
        mut pool,
        served,
        entered_rx,
    } = one_thread_pool(PoolAccept::Handoff);
    let (_a, a) = unix_conn();
    pool.hand_off(a).unwrap();
    entered_rx.recv().unwrap(); // the only thread serves `a`
    let (mut b_client, b) = unix_conn();
    pool.hand_off(b).unwrap(); // queued behind it
    pool.stop(); // shuts `a` down: its thread's next connection is `b`
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "b was served after the end"
    );
    let mut rest = Vec::new();
    assert_eq!(b_client.read_to_end(&mut rest).unwrap(), 0, "b is closed");
}

/// What a stopping reuseport worker took from its own listener reaches a `Locked` pool
/// after shutdown began, when its threads no longer accept: they serve it.
#[test]
fn a_locked_pool_serves_what_is_handed_over_after_shutdown() {
    let OneThread {
        server,
        mut pool,
        served,
        entered_rx,
    } = one_thread_pool(PoolAccept::Locked);
    server.shutdown_handle().shutdown();
    let (client, leftover) = unix_conn();
    pool.hand_off(leftover).unwrap();
    // Bounded only so that a failure ends: the thread takes it at once.
    let taken = entered_rx.recv_timeout(std::time::Duration::from_secs(30));
    drop(client); // ends the handler's read
    pool.stop();
    assert!(taken.is_ok(), "the handed-over connection was never served");
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pool_grown_to_its_limit_while_starting_has_started() {
    let served = Arc::new(AtomicUsize::new(0));
    let (entered, entered_rx) = bounded(1);
    let server = counting_server(&served, entered);
    let ctx = server.context();
    let client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    let source = Arc::new(Source::open(ctx, None).unwrap());
    let board = Arc::new(Scoreboard::new(2).unwrap());
    // The second spawn of the start-up loop waits until the first thread has taken
    // the waiting client, which makes it grow the pool to its limit (2) first.
    let mut spawns = 0;
    BEFORE_START_SPAWN.with(|hook| {
        *hook.borrow_mut() = Some(Box::new(move || {
            spawns += 1;
            if spawns == 2 {
                entered_rx.recv().unwrap();
            }
        }))
    });
    let started = Pool::start(ctx, &source, board, PoolAccept::Locked, 2, 2);
    BEFORE_START_SPAWN.with(|hook| hook.borrow_mut().take());
    drop(client);
    server.shutdown_handle().shutdown();
    started
        .expect("a spawn refused for want of a slot is no failure")
        .stop();
}

/// At the thread limit the pool serves with the threads it has: it takes no more
/// connections than they can serve and lets all but one block in a wait, so a notify
/// finds a thread; once a thread starts again it grows as before. (It went on taking
/// connections into its queue, and every thread could block in a wait.)
#[test]
fn a_pool_that_cannot_start_a_thread_holds_at_the_threads_it_has() {
    let served = Arc::new(AtomicUsize::new(0));
    let (entered, entered_rx) = bounded(1);
    let server = counting_server(&served, entered);
    let ctx = server.context();
    let source = Arc::new(Source::open(ctx, None).unwrap());
    let board = Arc::new(Scoreboard::new(3).unwrap());
    ctx.scope().set_max_blocked(Some(2));
    let mut pool = Pool::start(ctx, &source, board, PoolAccept::Handoff, 1, 3).unwrap();
    pool.fail_spawns(true);
    let (a_client, a) = unix_conn();
    pool.hand_off(a).unwrap();
    entered_rx.recv().unwrap(); // the only thread serves `a`, and fails to grow
    assert!(!pool.can_take_one(), "full at the one thread it has");
    assert_eq!(
        ctx.scope().max_blocked(),
        0,
        "no wait may block its last thread"
    );
    pool.fail_spawns(false);
    let (_b_client, b) = unix_conn();
    pool.hand_off(b).unwrap(); // grows the pool: a thread starts again
    assert!(pool.can_take_one(), "it may grow to its limit again");
    assert_eq!(ctx.scope().max_blocked(), 2, "the cap from before");
    drop(a_client);
    pool.stop();
}
