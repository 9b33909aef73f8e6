//! Under `Scheduled`, an HTTP connection idle between requests holds no coroutine stack
//! (`Handler::handle_until_idle`): it waits as an epoll entry and a timer, and its next
//! request runs on a pooled stack. These tests hold that, and that the idle rules are
//! those of a connection that keeps its stack: the idle timeout counts from the end of
//! the last answer, empty lines do not restart it, a head may arrive in pieces, and
//! pipelined requests are answered in order.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use mixserve::http::{Http, HttpConfig, Request, Response};
use mixserve::{Scheduled, Server, ShutdownHandle};
use util::in_thread::serve_on_thread;
use util::read_reply;

/// A client's patience: only a broken server uses it up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

fn start(idle_timeout: Duration) -> (SocketAddr, ShutdownHandle, thread::JoinHandle<()>) {
    let mut config = HttpConfig::default();
    config.idle_timeout = idle_timeout;
    config.header_timeout = Duration::from_secs(60);
    let app = |req: &mut Request| Response::text(200, req.target().to_owned());
    serve_on_thread(move || {
        Server::builder(Scheduled::new())
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .build(Http::with_config(app, config))
            .unwrap()
    })
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    BufReader::new(stream)
}

fn ask(client: &mut BufReader<TcpStream>, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    client.get_mut().write_all(request.as_bytes()).unwrap();
    let reply = read_reply(client);
    assert_eq!(reply.status, 200);
    reply.text()
}

/// Kernel mappings of this process: a coroutine stack is two (the guard page and the
/// stack), so a stack per idle connection shows here.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// True once the server closed `client` (end of stream), false if it answered
/// anything or `limit` passed.
fn closed_within(client: &mut BufReader<TcpStream>, limit: Duration) -> bool {
    client.get_ref().set_read_timeout(Some(limit)).unwrap();
    let mut rest = Vec::new();
    matches!(client.read_until(b'\n', &mut rest), Ok(0))
}

#[test]
fn idle_keep_alive_connections_hold_no_stack_and_serve_their_next_request() {
    let (addr, handle, serving) = start(Duration::from_secs(60));
    let mut clients: Vec<_> = (0..4).map(|_| connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(ask(client, &format!("/warm/{i}")), format!("/warm/{i}"));
    }
    let before = mappings();
    let more = 300;
    for i in 0..more {
        let mut client = connect(addr);
        assert_eq!(
            ask(&mut client, &format!("/first/{i}")),
            format!("/first/{i}")
        );
        clients.push(client);
    }
    // One at a time, they all ran on the same few pooled stacks.
    let grown = mappings().saturating_sub(before);
    assert!(
        grown < more / 2,
        "{grown} more mappings for {more} idle connections: a stack each"
    );
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(ask(client, &format!("/next/{i}")), format!("/next/{i}"));
    }
    handle.shutdown();
    serving.join().unwrap();
}

#[test]
fn an_idle_connection_closes_at_its_idle_timeout() {
    let (addr, handle, serving) = start(Duration::from_millis(200));
    let mut client = connect(addr);
    assert_eq!(ask(&mut client, "/a"), "/a");
    let idle = Instant::now();
    assert!(closed_within(&mut client, CLIENT_TIMEOUT), "still open");
    assert!(
        idle.elapsed() >= Duration::from_millis(150),
        "closed before its idle timeout"
    );
    handle.shutdown();
    serving.join().unwrap();
}

/// A CRLF every 50 ms wakes the idle connection each time; it still closes at the idle
/// timeout of its first wait (200 ms), within the ten seconds the trickle would last.
#[test]
fn empty_lines_trickled_do_not_keep_an_idle_connection() {
    let (addr, handle, serving) = start(Duration::from_millis(200));
    let mut client = connect(addr);
    assert_eq!(ask(&mut client, "/a"), "/a");
    client
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut ended = false;
    for _ in 0..200 {
        let mut rest = Vec::new();
        match client.read_until(b'\n', &mut rest) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(_) => panic!("it answered the empty lines: {rest:?}"),
            Err(_) => {}
        }
        if client.get_mut().write_all(b"\r\n").is_err() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the trickle kept the connection for 10 s");
    handle.shutdown();
    serving.join().unwrap();
}

#[test]
fn a_head_in_pieces_and_pipelined_requests_after_an_idle_wait() {
    let (addr, handle, serving) = start(Duration::from_secs(60));
    let mut client = connect(addr);
    assert_eq!(ask(&mut client, "/a"), "/a");
    // The first piece wakes the idle connection; the rest comes later.
    client.get_mut().write_all(b"GET /b HT").unwrap();
    thread::sleep(Duration::from_millis(50));
    client
        .get_mut()
        .write_all(b"TP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    for path in ["/b", "/c"] {
        let reply = read_reply(&mut client);
        assert_eq!((reply.status, reply.text()), (200, path.to_owned()));
    }
    assert_eq!(ask(&mut client, "/d"), "/d");
    handle.shutdown();
    serving.join().unwrap();
}
