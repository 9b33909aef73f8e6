//! A panicking error hook must not leave the connection's fd number tracked: the
//! forced end of a shutdown would then shut down whatever socket took the number
//! next. (One test in its own binary: no other test takes fds meanwhile.)

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::Duration;

use mixserve::handler::from_fn;
use mixserve::{Conn, Hooks, PeerAddr, Server, Threading};

struct PanickingHook;

impl Hooks for PanickingHook {
    fn handle_error(&self, _: &PeerAddr, error: &io::Error) {
        panic!("the hook panics on {error}");
    }
}

#[test]
fn a_panicking_error_hook_leaves_a_reused_fd_alone() {
    let served_fd = Arc::new(AtomicI32::new(-1));
    let seen = Arc::clone(&served_fd);
    let mut server = Server::builder(Threading::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .shutdown_timeout(Duration::ZERO)
        .hooks(PanickingHook)
        .build(move || {
            let seen = Arc::clone(&seen);
            from_fn(move |conn: &mut Conn| -> io::Result<()> {
                seen.store(conn.as_raw_fd(), Ordering::SeqCst);
                Err(io::Error::other("the handler fails"))
            })
        })
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());

    let mut doomed = TcpStream::connect(addr).unwrap();
    doomed
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut nothing = Vec::new();
    doomed.read_to_end(&mut nothing).unwrap(); // the server closed its end
    let fd: RawFd = served_fd.load(Ordering::SeqCst);
    assert!(fd >= 0, "the handler ran");

    // The lowest free number goes to the next socket: find the pair that took `fd`.
    let mut others = Vec::new();
    let (mut victim, mut peer) = loop {
        let (a, b) = UnixStream::pair().unwrap();
        if a.as_raw_fd() == fd {
            break (a, b);
        }
        if b.as_raw_fd() == fd {
            break (b, a);
        }
        others.push((a, b));
        assert!(others.len() < 64, "fd {fd} was not taken again");
    };
    handle.shutdown();
    serving.join().unwrap().unwrap();
    victim
        .write_all(b"still open")
        .expect("the socket now holding the number was not shut down");
    let mut got = [0u8; 10];
    peer.read_exact(&mut got).unwrap();
}
