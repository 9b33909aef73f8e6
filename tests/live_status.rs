//! The live status under every model, read through the examples' `--status-path`
//! (Prometheus text): requests are counted, the in-flight and waiter gauges see blocked
//! long-polls (also per named shared object), and a preforked pool's per-worker rows
//! sum to its total. The forking
//! models read the counters from shared memory, so every process shows up, and a
//! forking child or preforked worker killed mid-request gives its gauges back when it
//! is reaped.

mod util;

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use util::{
    MODELS, ServerProcess, children_of, get, live_children, read_reply, start_waiters, wait_until,
};

const STATUS: &str = "/_status";

/// The unlabelled sample of `name` (the server's total).
fn total(text: &str, name: &str) -> u64 {
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no total for {name} in:\n{text}"))
}

/// The `worker="N"` samples of `name`.
fn worker_rows(text: &str, name: &str) -> Vec<u64> {
    let prefix = format!("{name}{{worker=\"");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.rsplit_once(' '))
        .map(|(_, value)| value.parse().expect("a number"))
        .collect()
}

fn status(server: &ServerProcess) -> String {
    let reply = get(server.addr, STATUS);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.headers
    );
    reply.text()
}

fn start(model_args: &[&str]) -> ServerProcess {
    let mut args = model_args.to_vec();
    args.extend(["--status-path", STATUS]);
    ServerProcess::start("comet", &args)
}

/// Three plain requests, then the status: they are counted (the status request too),
/// and the status request itself is in flight while it is answered (an earlier
/// connection may still be closing, hence "at least").
fn counts_requests(server: &ServerProcess, model: &str) {
    for _ in 0..3 {
        assert_eq!(get(server.addr, "/").status, 200);
    }
    let text = status(server);
    assert_eq!(
        total(&text, "mixserve_requests_total"),
        4,
        "{model}:\n{text}"
    );
    assert_eq!(total(&text, "mixserve_connections_total"), 4, "{model}");
    assert!(total(&text, "mixserve_in_flight") >= 1, "{model}:\n{text}");
    assert!(
        text.contains(&format!("mixserve_info{{model=\"{model}\"}} 1")),
        "{text}"
    );
}

/// Two blocked long-polls show in the in-flight and waiter gauges, and leave them
/// once released.
fn gauges_follow_waiters(server: &ServerProcess, model: &str) {
    let mut waiters = start_waiters(server.addr, 2);
    wait_until(
        &format!("{model}: two waiters"),
        Duration::from_secs(60),
        || {
            let text = status(server);
            total(&text, "mixserve_waiters") == 2 && total(&text, "mixserve_in_flight") >= 3
        },
    );
    assert_eq!(get(server.addr, "/notify").status, 200);
    for waiter in &mut waiters {
        assert_eq!(read_reply(waiter).status, 200);
    }
    drop(waiters);
    wait_until(
        &format!("{model}: no waiter left"),
        Duration::from_secs(60),
        || {
            let text = status(server);
            total(&text, "mixserve_waiters") == 0 && total(&text, "mixserve_in_flight") == 1
        },
    );
}

#[test]
fn iterative_counts_requests() {
    let server = start(&["--mixin", "iterative"]);
    counts_requests(&server, "iterative");
}

#[test]
fn every_concurrent_model_counts_requests_and_waiters() {
    let models = MODELS.iter().filter(|m| **m != "iterative").copied();
    for model in models.chain(["prethreaded"]) {
        let server = start(&["--mixin", model]);
        counts_requests(&server, model);
        gauges_follow_waiters(&server, model);
        if model == "forking" {
            // The children's waits went through the hub.
            assert!(total(&status(&server), "mixserve_hub_round_trips_total") >= 2);
        }
    }
}

#[test]
fn preforked_worker_rows_sum_to_the_total() {
    for accept in ["shared", "passed"] {
        let server = start(&["--mixin", "preforked", "--workers", "3", "--accept", accept]);
        counts_requests(&server, "preforked");
        gauges_follow_waiters(&server, "preforked");
        let text = status(&server);
        for name in ["mixserve_requests_total", "mixserve_connections_total"] {
            let rows = worker_rows(&text, name);
            assert!(rows.len() >= 3, "{accept}: {rows:?}\n{text}");
            assert_eq!(
                rows.iter().sum::<u64>(),
                total(&text, name),
                "{accept}:\n{text}"
            );
        }
        assert!(
            total(&text, "mixserve_hub_round_trips_total") >= 2,
            "{text}"
        );
        let in_flight = worker_rows(&text, "mixserve_in_flight");
        assert_eq!(
            in_flight.iter().sum::<u64>(),
            total(&text, "mixserve_in_flight")
        );
    }
}

#[test]
fn preforked_counts_worker_restarts() {
    // Each worker retires after one connection, so slots are filled again.
    let server = start(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--max-requests",
        "1",
    ]);
    wait_until(
        "a worker restarted in its slot",
        Duration::from_secs(60),
        || {
            assert_eq!(get(server.addr, "/").status, 200);
            let text = status(&server);
            total(&text, "mixserve_worker_restarts_total") >= 1
        },
    );
    let text = status(&server);
    let rows = text
        .lines()
        .filter(|l| l.starts_with("mixserve_worker_restarts_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap());
    assert_eq!(
        rows.sum::<u64>(),
        total(&text, "mixserve_worker_restarts_total")
    );
}

/// A hundred keep-alive clients that each think 2 ms before their next request are all
/// slow beside the loop's 100 µs nap, so the loop's wake-up moderation naps. The naps
/// show while every connection is still open, the status reader's own too (the loop
/// reports them at each turn of its watch, not only when a connection ends). Only a
/// lower bound of time is relied on: a client that sleeps 2 ms comes back no sooner,
/// whatever the machine's load.
#[test]
fn scheduled_naps_show_while_connections_stay_open() {
    // No per-connection request limit: a connection closed by the server would report.
    let limit = ["--max-requests-per-connection", "100000000"];
    let server = start(&[&["--mixin", "scheduled"][..], &limit].concat());
    let mut reader = BufReader::new(util::connect(server.addr));
    let mut naps = || {
        let request = format!("GET {STATUS} HTTP/1.1\r\nHost: test\r\n\r\n");
        reader.get_mut().write_all(request.as_bytes()).unwrap();
        let reply = read_reply(&mut reader);
        assert_eq!(reply.status, 200);
        total(&reply.text(), "mixserve_loop_naps_total")
    };
    assert_eq!(naps(), 0);
    let mut clients: Vec<_> = (0..100)
        .map(|_| BufReader::new(util::connect(server.addr)))
        .collect();
    // One request on every client, then the think time. The rounds go on while the
    // status is read, so no client idles long enough for the server to close it.
    let mut round = || {
        for client in &mut clients {
            let request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
            client.get_mut().write_all(request).unwrap();
        }
        for client in &mut clients {
            assert_eq!(read_reply(client).status, 200);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    for _ in 0..40 {
        round();
    }
    wait_until("naps in the status", Duration::from_secs(60), || {
        round();
        naps() > 0
    });
}

/// The status text, or `None` when the server closed without an answer (refused).
fn try_status(server: &ServerProcess) -> Option<String> {
    let mut stream = util::connect(server.addr);
    let request = format!("GET {STATUS} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

#[test]
fn refusals_at_the_cap_are_counted() {
    let server = start(&["--mixin", "scheduled", "--max-workers", "2"]);
    // Two idle connections fill the cap; the third is closed unanswered.
    let holders = [util::connect(server.addr), util::connect(server.addr)];
    let mut refused = util::connect(server.addr);
    let mut rest = Vec::new();
    let _ = refused.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    drop(holders);
    wait_until("the refusal in the status", Duration::from_secs(60), || {
        try_status(&server).is_some_and(|text| total(&text, "mixserve_refused_total") >= 1)
    });
}

/// `SIGKILL` runs nothing in the child: what it counted in flight and waiting stays
/// counted unless the parent gives it back when it reaps the child.
#[test]
fn a_forking_child_killed_mid_request_gives_its_gauges_back() {
    let server = start(&["--mixin", "forking"]);
    let waiters = start_waiters(server.addr, 2);
    wait_until("two waiters", Duration::from_secs(60), || {
        let text = status(&server);
        total(&text, "mixserve_waiters") == 2 && total(&text, "mixserve_in_flight") >= 3
    });
    // Every child now: the two waiting, and any still ending after a status request.
    let children = children_of(server.child.id());
    assert!(children.len() >= 2, "{children:?}");
    for (pid, _) in children {
        // A child that ended meanwhile is no error.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
    wait_until(
        "the killed children's gauges given back",
        Duration::from_secs(60),
        || {
            let text = status(&server);
            total(&text, "mixserve_waiters") == 0 && total(&text, "mixserve_in_flight") == 1
        },
    );
    drop(waiters);
    // The server still serves, and counts a new waiter from zero.
    let mut waiter = start_waiters(server.addr, 1);
    wait_until("one new waiter", Duration::from_secs(60), || {
        total(&status(&server), "mixserve_waiters") == 1
    });
    assert_eq!(get(server.addr, "/notify").status, 200);
    assert_eq!(read_reply(&mut waiter[0]).status, 200);
}

/// The pid of the preforked worker whose row counts one waiter, if any.
fn pid_holding_the_waiter(text: &str) -> Option<u32> {
    let worker = text
        .lines()
        .filter_map(|line| line.strip_prefix("mixserve_waiters{worker=\""))
        .find_map(|rest| rest.strip_suffix("\"} 1"))?;
    let prefix = format!("mixserve_worker_restarts_total{{worker=\"{worker}\",pid=\"");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_once('"'))
        .and_then(|(pid, _)| pid.parse().ok())
}

/// A preforked worker killed while it holds a waiter cannot take its gauges back; the
/// master zeroes its row when it reaps it, also when no new worker takes the slot (the
/// pool had grown and is back at its size). The status is read over one keep-alive
/// connection, so its worker stays busy with it and no request makes the pool grow
/// back into the emptied slot (a new worker there would zero the row anyway).
#[test]
fn a_preforked_worker_killed_mid_request_gives_its_gauges_back_when_its_slot_stays_empty() {
    let server = start(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--max-workers",
        "3",
        "--max-requests-per-connection",
        "100000000",
    ]);
    let _waiter = start_waiters(server.addr, 1);
    let mut reader = BufReader::new(util::connect(server.addr));
    let mut read_status = || {
        let request = format!("GET {STATUS} HTTP/1.1\r\nHost: test\r\n\r\n");
        reader.get_mut().write_all(request.as_bytes()).unwrap();
        let reply = read_reply(&mut reader);
        assert_eq!(reply.status, 200);
        reply.text()
    };
    // The waiter's worker and the reader's are both busy: the pool grows by one.
    let mut killed = None;
    wait_until("a waiter in a grown pool", Duration::from_secs(60), || {
        killed = pid_holding_the_waiter(&read_status());
        killed.is_some() && live_children(server.child.id()).len() == 3
    });
    let killed = killed.unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-9", &killed.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success(), "{kill:?}");
    wait_until("the killed worker reaped", Duration::from_secs(60), || {
        children_of(server.child.id())
            .iter()
            .all(|&(pid, _)| pid != killed)
    });
    wait_until(
        "the killed worker's gauges given back",
        Duration::from_secs(10),
        || {
            let text = read_status();
            total(&text, "mixserve_waiters") == 0 && total(&text, "mixserve_in_flight") == 1
        },
    );
    assert_eq!(
        live_children(server.child.id()).len(),
        2,
        "the slot stayed empty"
    );
}
