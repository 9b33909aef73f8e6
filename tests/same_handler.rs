//! One handler, one set of assertions, every model: the examples' comet and hello
//! handlers run unchanged under each mix-in, each server in its own process.

mod util;

use std::io::{BufReader, Write};

use util::{MODELS, POOL_VARIANTS, ServerProcess, comet_contract, connect, get, read_reply};

#[test]
fn comet_releases_200_waiters_with_one_notify() {
    for &model in MODELS.iter().filter(|&&m| m != "iterative") {
        let mut server = ServerProcess::start("comet", &["--mixin", model]);
        comet_contract(server.addr, 200);
        assert!(
            server.stop().is_some_and(|s| s.success()),
            "{model}: unclean exit"
        );
    }
}

#[test]
fn comet_releases_200_waiters_under_every_pool_variant() {
    for &variant in POOL_VARIANTS {
        let mut server = ServerProcess::start("comet", variant);
        comet_contract(server.addr, 200);
        assert!(
            server.stop().is_some_and(|s| s.success()),
            "{variant:?}: unclean exit"
        );
    }
}

#[test]
fn comet_wait_under_iterative_answers_503_instead_of_hanging() {
    let server = ServerProcess::start("comet", &["--mixin", "iterative"]);
    let reply = get(server.addr, "/wait");
    assert_eq!(reply.status, 503);
    // The server is still serving.
    assert_eq!(get(server.addr, "/").text(), "0");
    assert_eq!(get(server.addr, "/notify").text(), "0");
}

#[test]
fn hello_keeps_alive_and_answers_pipelined_requests_in_order() {
    let models: Vec<Vec<&str>> = MODELS.iter().map(|&m| vec!["--mixin", m]).collect();
    for args in models
        .iter()
        .map(Vec::as_slice)
        .chain(POOL_VARIANTS.iter().copied())
    {
        let model = format!("{args:?}");
        let server = ServerProcess::start("hello", args);
        let mut stream = connect(server.addr);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        // Two requests, one after another, on one connection.
        for _ in 0..2 {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let reply = read_reply(&mut reader);
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (200, util::HELLO),
                "{model}"
            );
        }
        // Three pipelined in one write, answered in order.
        stream
            .write_all(
                b"GET /bytes/1 HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n",
            )
            .unwrap();
        for n in 1..=3 {
            let reply = read_reply(&mut reader);
            assert_eq!(
                reply.body.len(),
                n,
                "{model}: pipelined reply {n} out of order"
            );
        }
    }
}

#[test]
fn echo_handler_runs_unchanged_under_every_model() {
    let models: Vec<Vec<&str>> = MODELS.iter().map(|&m| vec!["--mixin", m]).collect();
    for args in models
        .iter()
        .map(Vec::as_slice)
        .chain(POOL_VARIANTS.iter().copied())
    {
        let model = format!("{args:?}");
        let server = ServerProcess::start("echo", args);
        let mut stream = connect(server.addr);
        stream.write_all(b"ping\n").unwrap();
        let mut reply = [0u8; 5];
        std::io::Read::read_exact(&mut stream, &mut reply).unwrap();
        assert_eq!(&reply, b"ping\n", "{model}");
    }
}
