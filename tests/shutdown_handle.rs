//! A shutdown handle may outlive its server; then it does nothing, in particular to
//! the socket that took the server's listener's fd number. (One test in its own
//! binary: no other test takes fds meanwhile.)

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use mixserve::handler::from_fn;
use mixserve::{Conn, Iterative, Server};

#[test]
fn a_handle_that_outlives_its_server_leaves_a_reused_fd_alone() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = listener.as_raw_fd();
    let server = Server::builder(Iterative::new())
        .listener(listener)
        .handle_signals(false)
        .build(|| from_fn(|_: &mut Conn| -> io::Result<()> { Ok(()) }))
        .unwrap();
    let handle = server.shutdown_handle();
    drop(server);
    // The lowest free number goes to the next socket: find the one that took `fd`.
    let mut others = Vec::new();
    let victim = loop {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        if other.as_raw_fd() == fd {
            break other;
        }
        others.push(other);
        assert!(others.len() < 64, "fd {fd} was not taken again");
    };
    handle.shutdown();
    let _client = TcpStream::connect(victim.local_addr().unwrap())
        .expect("the socket now holding the number still listens");
    victim.accept().expect("and accepts");
}
