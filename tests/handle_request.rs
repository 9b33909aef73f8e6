//! `Server::handle_request` serves one connection at a time on the caller's thread or
//! on the model's: it keeps the model's cap, and the caller's thread is no handler's
//! once the server is gone.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mixserve::handler::from_fn;
use mixserve::sync::Broadcast;
use mixserve::{Conn, Iterative, Server, Threading};

/// Two calls with `max_threads(1)`: the second waits until the first handler ended (it
/// used to start a second thread, past the cap).
#[test]
fn handle_request_keeps_the_thread_cap() {
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let mut server = Server::builder(Threading::new().max_threads(1))
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(move || {
            let (r, m) = (Arc::clone(&r), Arc::clone(&m));
            from_fn(move |conn: &mut Conn| -> io::Result<()> {
                m.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                let _ = conn.read_to_end(&mut Vec::new());
                r.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
        })
        .unwrap();
    let addr = server.local_addr().unwrap();
    let first = TcpStream::connect(addr).unwrap();
    let second = TcpStream::connect(addr).unwrap();
    server.handle_request().unwrap();
    let give_up = Instant::now() + Duration::from_secs(20);
    while running.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < give_up, "the first handler never ran");
        thread::sleep(Duration::from_millis(5));
    }
    // The first handler runs until its client closes: closed a moment from now, the
    // second call can then take the second connection.
    let closer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        drop(first);
    });
    server.handle_request().unwrap();
    closer.join().unwrap();
    drop(second);
    drop(server);
    assert_eq!(most.load(Ordering::SeqCst), 1, "two handlers at once");
}

/// After an `Iterative` server served a connection on this thread and was dropped,
/// this thread is no handler's: no live status, and a wait blocks until its send (it
/// failed at once with `NoOtherWorker`, the dead server's rule).
#[test]
fn the_callers_thread_forgets_the_server_it_served() {
    let mut server = Server::builder(Iterative::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(|| from_fn(|conn: &mut Conn| conn.write_all(b"x")))
        .unwrap();
    let client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    server.handle_request().unwrap();
    drop(client);
    drop(server);
    assert!(mixserve::status::current().is_none());
    let news: Broadcast<u32> = Broadcast::new();
    let sender = news.clone();
    let sending = thread::spawn(move || {
        while sender.waiting() == 0 {
            thread::sleep(Duration::from_millis(5));
        }
        sender.send(7)
    });
    assert_eq!(news.wait_timeout(Duration::from_secs(20)), Ok(7));
    assert_eq!(sending.join().unwrap(), Ok(1));
}
