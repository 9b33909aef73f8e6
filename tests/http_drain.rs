//! A graceful stop closes keep-alive connections idle between requests at once,
//! instead of waiting out their idle timeout (here a minute, as is the server's forced
//! stop: longer than the client waits, so only the drain can close them); and so it
//! does a connection that has not sent its first request (a browser's speculative
//! connection), instead of waiting out its header timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use mixserve::http::{Http, HttpConfig, Request, Response};
use mixserve::{MixIn, Scheduled, Server, Threading};

fn idle_connections_close_when_the_drain_begins(model: impl MixIn + 'static) {
    let mut config = HttpConfig::default();
    config.idle_timeout = Duration::from_secs(60);
    config.header_timeout = Duration::from_secs(60);
    let app = |_: &mut Request| Response::text(200, "hi");
    let mut server = Server::builder(model)
        .bind("127.0.0.1:0")
        // Nor may the forced end of a stop close them within the client's patience.
        .shutdown_timeout(Duration::from_secs(60))
        .build(Http::with_config(app, config))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());

    // Accepted before the others (one accept loop takes them in order), so it waits
    // for its first request by the time they are answered.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut idle: Vec<BufReader<TcpStream>> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut status = String::new();
            reader.read_line(&mut status).unwrap();
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            reader
        })
        .collect();
    // The rest of each answer: headers, then the two-byte body.
    for reader in &mut idle {
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut body = [0u8; 2];
        reader.read_exact(&mut body).unwrap();
    }

    handle.shutdown();
    for reader in &mut idle {
        let mut rest = Vec::new();
        // EOF, not the 20 s read timeout (an error) nor the minute-long idle timeout.
        reader
            .read_to_end(&mut rest)
            .expect("the drain closes an idle connection");
        assert!(rest.is_empty(), "nothing more is sent");
    }
    let mut rest = Vec::new();
    silent
        .read_to_end(&mut rest)
        .expect("the drain closes a connection that sent nothing yet");
    assert!(rest.is_empty(), "closed without a word");
    serving.join().unwrap().unwrap();
}

#[test]
fn threading_closes_idle_connections_on_drain() {
    idle_connections_close_when_the_drain_begins(Threading::new());
}

#[test]
fn scheduled_closes_idle_connections_on_drain() {
    idle_connections_close_when_the_drain_begins(Scheduled::new());
}
