//! The preforked pool's size stays within its bounds whatever the signals ask: SIGTTIN
//! grows it only up to `max_workers`, and a SIGHUP's replacements start beside the
//! workers still finishing only as far as the master's open-file limit fits them (the
//! rest start as those exit). Every server runs as its own process (the master forks).

mod util;

use std::time::Duration;

use util::logged::Logged;
use util::{get, live_children, read_reply, start_closing_waiters, wait_for_waiters, wait_until};

const LONG: Duration = Duration::from_secs(120);

#[test]
fn sigttin_grows_the_pool_only_up_to_max_workers() {
    let mut server = Logged::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--workers",
            "1",
            "--max-workers",
            "2",
        ],
        &[],
        None,
    );
    let pid = server.child.id();
    wait_until("one worker", LONG, || live_children(pid).len() == 1);
    server.signal("TTIN");
    wait_until("a second worker", LONG, || live_children(pid).len() == 2);
    server.signal("TTIN");
    // The master logs the refusal while it handles the signal, before it tends the
    // pool; a third worker would mean the target passed max_workers.
    wait_until("the refusal, or a third worker", LONG, || {
        server.log().contains("SIGTTIN ignored") || live_children(pid).len() > 2
    });
    assert_eq!(get(server.addr, "/").status, 200);
    let log = server.log();
    assert!(log.contains("already max_workers (2)"), "{log}");
    assert_eq!(live_children(pid).len(), 2, "{log}");
    server.stop();
}

/// The workers the master's fds fit alive at once, from its start-up warning.
fn fits(server: &Logged) -> Option<usize> {
    let log = server.log();
    let (_, rest) = log.split_once(" fits ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A comet server of two workers whose open-file limit fits exactly three (found by
/// trying: what the master has open at start varies a little).
fn fitting_three() -> Logged {
    let mut limit = 80;
    for _ in 0..6 {
        let nofile = format!("-n {limit}");
        let server = Logged::start(
            "comet",
            &[
                "--mixin",
                "preforked",
                "--inner",
                "scheduled",
                "--workers",
                "2",
                "--max-workers",
                "64",
                "--shutdown-timeout",
                "600",
            ],
            &[],
            Some(&nofile),
        );
        let mut fit = None;
        wait_until("the start-up cap or refusal", LONG, || {
            fit = fits(&server);
            fit.is_some() || server.log().contains("do not fit")
        });
        match fit {
            Some(3) => return server,
            Some(fit) => limit = limit + 6 - 2 * fit,
            None => limit += 4,
        }
    }
    panic!("no open-file limit near 80 fits exactly three workers");
}

#[test]
fn a_sighup_starts_only_the_replacements_the_masters_fds_fit() {
    let mut server = fitting_three();
    let pid = server.child.id();
    wait_until("two workers", LONG, || live_children(pid).len() == 2);
    let old = live_children(pid);
    let mut waiters = start_closing_waiters(server.addr, 4);
    wait_for_waiters(server.addr, 4);
    server.signal("HUP");
    // The master said at start that it replaces its two workers a few at a time. The
    // old workers hold their waiters (a wait stays until the next notify): one
    // replacement fits beside them, the other waits for them to exit.
    assert!(server.log().contains("a few at a time"), "{}", server.log());
    wait_until("the held-back start", LONG, || {
        server.log().contains("waits to start") || live_children(pid).len() > 3
    });
    let log = server.log();
    assert!(log.contains("2 of them finishing after a stop"), "{log}");
    wait_until("the replacement that fits", LONG, || {
        live_children(pid).len() == 3
    });
    let notify = get(server.addr, "/notify");
    assert_eq!((notify.status, notify.text()), (200, "4".to_string()));
    for waiter in &mut waiters {
        let reply = read_reply(waiter);
        assert_eq!((reply.status, reply.text()), (200, "4".to_string()));
    }
    wait_until("the old workers gone, two new ones", LONG, || {
        let now = live_children(pid);
        now.len() == 2 && now.is_disjoint(&old)
    });
    server.stop();
}
