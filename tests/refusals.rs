//! A wait refused by the reserve rule says which model refused and its limit, under
//! every model (the comet example answers `503` with the error's text), and a wait with
//! a timeout is refused as one without.

mod util;

use std::time::Duration;

use util::{ServerProcess, get, read_reply, start_waiters, wait_for_waiters, wait_until};

/// Each capped model (two workers: one may wait) and the start of its refusal.
const CAPPED: &[(&[&str], &str)] = &[
    (
        &["--mixin", "iterative"],
        "the iterative model lets no handler wait here",
    ),
    (
        &["--mixin", "threading", "--max-workers", "2"],
        "the threading model lets at most 1",
    ),
    (
        &["--mixin", "forking", "--max-workers", "2"],
        "the forking model lets at most 1",
    ),
    (
        &["--mixin", "scheduled", "--max-workers", "2"],
        "the scheduled model lets at most 1",
    ),
    (
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--max-workers",
            "2",
        ],
        "the preforked model lets at most 1",
    ),
    (
        &[
            "--mixin",
            "prethreaded",
            "--threads",
            "2",
            "--max-workers",
            "2",
        ],
        "the prethreaded model lets at most 1",
    ),
];

/// Fills the waits `args`' model allows, checks that one more is refused with
/// `expected`, then that a notify releases the waits that were let in.
fn refuses_the_wait_past_the_reserve(args: &[&str], expected: &str) {
    let server = ServerProcess::start("comet", args);
    let waiting = if args[1] == "iterative" { 0 } else { 1 };
    let mut waiters = start_waiters(server.addr, waiting);
    wait_for_waiters(server.addr, waiting);
    let refused = get(server.addr, "/wait");
    assert_eq!(refused.status, 503, "{args:?}: {}", refused.text());
    assert!(
        refused.text().contains(expected),
        "{args:?}: {}",
        refused.text()
    );
    assert!(!refused.text().contains("iterative") || args[1] == "iterative");
    assert_eq!(
        get(server.addr, "/notify").text(),
        waiting.to_string(),
        "{args:?}"
    );
    for waiter in &mut waiters {
        assert_eq!(read_reply(waiter).text(), "1", "{args:?}");
    }
}

#[test]
fn a_refused_wait_names_the_model_that_refused() {
    for (args, expected) in CAPPED {
        refuses_the_wait_past_the_reserve(args, expected);
    }
}

/// A timed wait on the last free worker would hold it until its timeout, with the
/// notify that should release the others queued behind it: the notify would then find
/// nobody to release (lost), and the waits would all end `204`.
#[test]
fn a_wait_with_a_timeout_is_refused_as_one_without() {
    for (args, expected) in CAPPED {
        let timed = [args, &["--wait-limit", "10"][..]].concat();
        refuses_the_wait_past_the_reserve(&timed, expected);
    }
}

/// A pool of iterative workers under `reuseport` refuses every wait (each worker takes
/// only its own queue, where the notify may land): the refusal once said the model
/// "serves one connection at a time", false of a pool of four, and nothing warned at
/// start-up that such waits cannot be served.
#[test]
fn a_reuseport_pool_of_iterative_workers_warns_at_start_up_and_refuses_truthfully() {
    let args = [
        "--mixin",
        "preforked",
        "--workers",
        "4",
        "--accept",
        "reuseport",
    ];
    let (mut server, mut log) = ServerProcess::start_logged("comet", &args, false);
    let warning = "every wait will be refused";
    wait_until("the start-up warning", Duration::from_secs(20), || {
        log.text().contains(warning)
    });
    let refused = get(server.addr, "/wait");
    assert_eq!(refused.status, 503, "{}", refused.text());
    let text = refused.text();
    assert!(
        text.contains("the preforked model lets no handler wait here"),
        "{text}"
    );
    assert!(!text.contains("one connection at a time"), "{text}");
    assert!(server.stop().is_some_and(|s| s.success()));
    let log = log.finish();
    assert_eq!(log.matches(warning).count(), 1, "{log}");
}
