//! `TCP_NODELAY` on served connections: on by default (a streamed response written in
//! pieces would otherwise wait for delayed acknowledgements, up to 40 ms a piece), off
//! when the builder says so. In-process, with the iterative model.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use mixserve::handler::from_fn;
use mixserve::{Conn, Iterative, Server};

/// Answers "1" when the accepted socket has `TCP_NODELAY`, "0" when not.
fn report_nodelay(conn: &mut Conn) -> io::Result<()> {
    let on = socket2::SockRef::from(&*conn).tcp_nodelay()?;
    conn.write_all(if on { b"1" } else { b"0" })
}

fn nodelay_seen_by_handler(builder_nodelay: Option<bool>) -> String {
    let mut builder = Server::builder(Iterative::new()).bind("127.0.0.1:0");
    if let Some(on) = builder_nodelay {
        builder = builder.tcp_nodelay(on);
    }
    let mut server = builder
        .build(|| from_fn(report_nodelay as fn(&mut Conn) -> io::Result<()>))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let client = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    });
    server.handle_request().unwrap();
    client.join().unwrap()
}

#[test]
fn accepted_connections_have_nagle_off_by_default() {
    assert_eq!(nodelay_seen_by_handler(None), "1");
}

#[test]
fn the_builder_can_leave_nagle_on() {
    assert_eq!(nodelay_seen_by_handler(Some(false)), "0");
}
