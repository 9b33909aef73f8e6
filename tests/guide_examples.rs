//! The guide's examples — the chat room (`examples/chat.rs`, on `Broadcast`) and the job
//! queue (`examples/jobs.rs`, on `Channel`) — run unchanged under every model family,
//! each server as its own process.

mod util;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use util::{Reply, ServerProcess, connect, get, read_reply, wait_until};

/// One of each model family; pools with each inner model.
const FAMILIES: &[&[&str]] = &[
    &["--mixin", "iterative"],
    &["--mixin", "threading"],
    &["--mixin", "forking"],
    &["--mixin", "scheduled"],
    &["--mixin", "preforked", "--workers", "3"],
    &[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--inner",
        "threading",
    ],
    &[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--inner",
        "scheduled",
        "--accept",
        "passed",
    ],
    &["--mixin", "prethreaded", "--threads", "4"],
];

/// Sends a request (asking the server to close after it) and returns the connection.
fn send(addr: SocketAddr, method: &str, path: &str, form: &str) -> BufReader<TcpStream> {
    let mut stream = connect(addr);
    let content = if form.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        )
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{content}Connection: close\r\n\r\n{form}"
    )
    .unwrap();
    BufReader::new(stream)
}

fn post(addr: SocketAddr, path: &str, form: &str) -> Reply {
    read_reply(&mut send(addr, "POST", path, form))
}

fn start(example: &str, family: &[&str], poll_secs: &str) -> ServerProcess {
    let mut args = family.to_vec();
    args.extend(["--poll-secs", poll_secs]);
    ServerProcess::start(example, &args)
}

/// Stops the server with SIGTERM (its workers with it) and checks it exited.
fn stop(server: &mut ServerProcess, family: &[&str]) {
    let status = server.stop();
    assert!(status.is_some(), "{family:?}: did not stop on SIGTERM");
}

#[test]
fn chat_room_under_every_model() {
    for family in FAMILIES {
        let mut server = start("chat", family, "60");
        let addr = server.addr;
        let said = post(addr, "/say", "who=ann&text=nobody+hears");
        assert_eq!(
            (said.status, said.text()),
            (200, "0\n".into()),
            "{family:?}"
        );
        assert_eq!(post(addr, "/say", "who=bob").status, 400, "{family:?}");
        if family[1] == "iterative" {
            stop(&mut server, family);
            continue; // one connection at a time: nobody could speak while one listens
        }
        let mut listeners: Vec<_> = (0..2).map(|_| send(addr, "GET", "/listen", "")).collect();
        wait_until("two listeners", Duration::from_secs(60), || {
            get(addr, "/").text() == "2\n"
        });
        let said = post(addr, "/say", "who=bob&text=hello%2C+all");
        assert_eq!(
            (said.status, said.text()),
            (200, "2\n".into()),
            "{family:?}"
        );
        for listener in &mut listeners {
            let reply = read_reply(listener);
            assert_eq!(reply.text(), "bob: hello, all\n", "{family:?}");
        }
        stop(&mut server, family);
    }
}

#[test]
fn job_queue_under_every_model() {
    for family in FAMILIES {
        let mut server = start("jobs", family, "1");
        let addr = server.addr;
        for form in ["task=resize&arg=cat.jpg&arg=200", "task=mail&arg=ann"] {
            let queued = post(addr, "/jobs", form);
            assert_eq!(queued.status, 202, "{family:?}: {}", queued.text());
        }
        assert_eq!(get(addr, "/").text(), "2\n", "{family:?}");
        assert_eq!(
            get(addr, "/work").text(),
            "resize cat.jpg 200\n",
            "{family:?}"
        );
        assert_eq!(get(addr, "/work").text(), "mail ann\n", "{family:?}");
        // An empty queue: the poll waits, and times out; under `iterative`, where nobody
        // could post a job while it waits, it is refused at once instead.
        let empty = if family[1] == "iterative" { 503 } else { 204 };
        assert_eq!(get(addr, "/work").status, empty, "{family:?}");
        if family[1] == "iterative" {
            stop(&mut server, family);
            continue; // a waiting worker would hold the only connection
        }
        // A worker already waiting gets a job posted after it started waiting (or, if
        // its wait ran out first, the next poll does).
        let mut worker = send(addr, "GET", "/work", "");
        let queued = post(addr, "/jobs", "task=late");
        assert_eq!(queued.status, 202, "{family:?}");
        let reply = read_reply(&mut worker);
        if reply.status == 204 {
            assert_eq!(get(addr, "/work").text(), "late \n", "{family:?}");
        } else {
            assert_eq!(reply.text(), "late \n", "{family:?}");
        }
        assert_eq!(post(addr, "/jobs", "arg=x").status, 400, "{family:?}");
        stop(&mut server, family);
    }
}
