//! Zero-downtime binary upgrade of `preforked` (`SIGUSR2`): under a bounded load loop
//! the old master starts the new binary on the same listening socket, the new master
//! reports ready, the old one drains and exits — no connection refused, reset or cut
//! short. A new binary that fails to start leaves the old master serving; a second
//! `SIGUSR2` during an upgrade is ignored; a binary replaced on disk is the one started.
//!
//! The server runs as its own process group (the new master is its child, then
//! outlives it), is told to log at `info`, and its stderr is collected to learn the new
//! master's pid.

mod upgrade_support;
mod util;

use std::collections::HashSet;
use std::sync::Mutex;

use upgrade_support::{
    ANSWERS_PER_PHASE, Installed, LONG, Load, Pool, fd_targets, has_exited, has_inode, kill, pid_in,
};
use util::{example_path, get, wait_until};

/// One upgrade at a time: each runs a pool and a load loop on a 2-core box.
static SERIAL: Mutex<()> = Mutex::new(());

/// The whole upgrade under load, with `args` for the example.
fn upgrade_under_load(args: &[&str]) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut pool = Pool::start(&example_path("hello"), args);
    assert_eq!(get(pool.addr, "/").status, 200);
    let old = pool.pid();
    let old_targets = fd_targets(old);
    let old_fds: HashSet<String> = old_targets.iter().map(|(_, t)| t.clone()).collect();
    let load = Load::start(pool.addr);
    load.wait_answers(ANSWERS_PER_PHASE);
    kill(old, "-USR2");
    let ready = pool.wait_for_line(0, &["is ready after"]);
    let new = pid_in(&ready);
    assert_ne!(new, old);
    load.wait_answers(ANSWERS_PER_PHASE);
    pool.wait_exit();
    load.wait_answers(ANSWERS_PER_PHASE);
    let tally = load.finish();
    tally.assert_clean();
    eprintln!(
        "{args:?}: {} answers across the upgrade, none failed",
        tally.ok()
    );
    // The new master serves alone now, on the very socket the old one had.
    assert!(!has_exited(new), "the new master is gone");
    assert_eq!(get(pool.addr, "/").status, 200);
    let new_fds = fd_targets(new);
    let listener = new_fds
        .iter()
        .find(|(n, _)| *n == 3)
        .map(|(_, t)| t.clone());
    assert!(
        listener.as_ref().is_some_and(|l| old_fds.contains(l)),
        "fd 3 of the new master is not the old listener: {new_fds:?} / {old_fds:?}"
    );
    // Nothing else of the old master crossed the exec: no socket or pipe of its own
    // (hub, worker sockets, signal pipes) …
    let leaked: Vec<_> = new_fds
        .iter()
        .filter(|(n, target)| *n != 3 && has_inode(target) && old_fds.contains(target))
        .collect();
    assert!(
        leaked.is_empty(),
        "fds of the old master leaked: {leaked:?}"
    );
    // … and no more of the others (epoll, /dev/null, lock files) than a fresh master
    // of the same pool holds.
    for (_, target) in new_fds.iter().filter(|(_, t)| !has_inode(t)) {
        let count = |fds: &[(u32, String)]| fds.iter().filter(|(_, t)| t == target).count();
        assert!(
            count(&new_fds) <= count(&old_targets),
            "more {target} in the new master than in the old: {new_fds:?} / {old_targets:?}"
        );
    }
    kill(new, "-TERM");
    wait_until("the new master to stop", LONG, || has_exited(new));
}

#[test]
fn upgrade_with_shared_accept() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "shared",
    ]);
}

#[test]
fn upgrade_with_locked_accept() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "locked",
    ]);
}

#[test]
fn upgrade_with_passed_accept() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "passed",
    ]);
}

#[test]
fn upgrade_with_scheduled_workers() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "shared",
        "--inner",
        "scheduled",
    ]);
}

#[test]
fn upgrade_with_passed_accept_and_scheduled_workers() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "passed",
        "--inner",
        "scheduled",
    ]);
}

#[test]
fn upgrade_with_locked_accept_and_threading_workers() {
    upgrade_under_load(&[
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "locked-mutex",
        "--inner",
        "threading",
    ]);
}

#[test]
fn an_upgraded_master_upgrades_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let args = ["--mixin", "preforked", "--workers", "2"];
    let mut pool = Pool::start(&example_path("hello"), &args);
    let load = Load::start(pool.addr);
    load.wait_answers(ANSWERS_PER_PHASE);
    kill(pool.pid(), "-USR2");
    let second = pid_in(&pool.wait_for_line(0, &["is ready after"]));
    pool.wait_exit();
    load.wait_answers(ANSWERS_PER_PHASE);
    // The second master was started by an upgrade; it passes the socket on the same way.
    let mark = pool.mark();
    kill(second, "-USR2");
    let third = pid_in(&pool.wait_for_line(mark, &["is ready after"]));
    assert_ne!(third, second);
    wait_until("the second master to exit", LONG, || has_exited(second));
    load.wait_answers(ANSWERS_PER_PHASE);
    load.finish().assert_clean();
    kill(third, "-TERM");
    wait_until("the third master to stop", LONG, || has_exited(third));
}

#[test]
fn a_new_binary_that_fails_leaves_the_old_master_serving() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let installed = Installed::new("upgrade-fails");
    let args = ["--mixin", "preforked", "--workers", "2"];
    let mut pool = Pool::start(&installed.program(), &args);
    let old = pool.pid();
    let load = Load::start(pool.addr);
    // Served: the master's signal handlers are in place.
    load.wait_answers(ANSWERS_PER_PHASE);

    // A file that cannot be executed: the exec error is reported.
    installed.replace_with_script("#!/nonexistent/interpreter\n");
    kill(old, "-USR2");
    pool.wait_for_line(0, &["upgrade failed: could not exec the new binary"]);
    pool.wait_for_line(0, &["is gone"]);
    load.wait_answers(ANSWERS_PER_PHASE);

    // A broken build: it exits at once.
    let mark = pool.mark();
    installed.replace_with_script("#!/bin/sh\nexit 1\n");
    kill(old, "-USR2");
    pool.wait_for_line(mark, &["upgrade failed"]);
    // Reaped (the master serves on alone), whichever it noticed first.
    pool.wait_for(mark, "the failed new master reaped", |line| {
        line.contains("exited (exit 1) before it was ready") || line.contains("is gone")
    });
    load.wait_answers(ANSWERS_PER_PHASE);
    assert!(
        pool.child.try_wait().expect("try_wait").is_none(),
        "the old master exited"
    );

    // A slow one, held at its start by a gate file: a second SIGUSR2 meanwhile is
    // ignored. Once let through it runs the real binary, and the upgrade completes.
    let gate = installed.dir.join("gate");
    let real = example_path("hello");
    installed.replace_with_script(&format!(
        "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.05; done\nexec '{}' \"$@\"\n",
        gate.display(),
        real.display()
    ));
    let mark = pool.mark();
    kill(old, "-USR2");
    let started = pool.wait_for_line(mark, &["SIGUSR2: started", "as the new master"]);
    let starting = pid_in(&started);
    kill(old, "-USR2");
    pool.wait_for_line(mark, &["SIGUSR2 ignored: an upgrade is in progress"]);
    std::fs::write(&gate, b"").expect("open the gate");
    let ready = pool.wait_for_line(mark, &["is ready after"]);
    assert_eq!(pid_in(&ready), starting);
    pool.wait_exit();
    load.wait_answers(ANSWERS_PER_PHASE);
    let tally = load.finish();
    tally.assert_clean();
    assert_eq!(get(pool.addr, "/").status, 200);
    kill(starting, "-TERM");
    wait_until("the new master to stop", LONG, || has_exited(starting));
}

#[test]
fn a_new_master_never_ready_is_stopped_and_the_old_one_serves_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let installed = Installed::new("upgrade-silent");
    let args = ["--mixin", "preforked", "--workers", "2"];
    let mut pool = Pool::start_with(
        &installed.program(),
        &args,
        &[("MIXSERVE_TEST_UPGRADE_TIMEOUT_MS", "1000")],
    );
    let old = pool.pid();
    let load = Load::start(pool.addr);
    load.wait_answers(ANSWERS_PER_PHASE);
    // A new binary that starts and never reports ready (it holds the socket).
    installed.replace_with_script("#!/bin/sh\nwhile :; do sleep 0.05; done\n");
    kill(old, "-USR2");
    let started = pool.wait_for_line(0, &["SIGUSR2: started", "as the new master"]);
    let silent = pid_in(&started);
    pool.wait_for_line(0, &["upgrade failed: the new master is not ready after"]);
    pool.wait_for_line(0, &["is gone"]);
    assert!(has_exited(silent), "the silent new master is still there");
    load.wait_answers(ANSWERS_PER_PHASE);
    assert!(
        pool.child.try_wait().expect("try_wait").is_none(),
        "the old master exited"
    );
    let tally = load.finish();
    tally.assert_clean();
}

#[test]
fn a_new_binary_with_another_kind_of_accept_refuses_to_start() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let installed = Installed::new("upgrade-accept");
    let args = [
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "shared",
    ];
    let mut pool = Pool::start(&installed.program(), &args);
    let load = Load::start(pool.addr);
    load.wait_answers(ANSWERS_PER_PHASE);
    // The new release lets its master accept: the shared listener's blocking flag
    // says the old workers accept, so it must not start.
    installed.replace_with_script(&format!(
        "#!/bin/sh\nexec '{}' --mixin preforked --workers 2 --accept passed --addr 127.0.0.1:0\n",
        example_path("hello").display()
    ));
    kill(pool.pid(), "-USR2");
    pool.wait_for_line(0, &["same kind of accept mode"]);
    pool.wait_for_line(0, &["upgrade failed"]);
    pool.wait_for(0, "the failed new master reaped", |line| {
        line.contains("exited (exit 1) before it was ready") || line.contains("is gone")
    });
    load.wait_answers(ANSWERS_PER_PHASE);
    assert!(
        pool.child.try_wait().expect("try_wait").is_none(),
        "the old master exited"
    );
    load.finish().assert_clean();
}

#[test]
fn the_old_masters_waiters_get_the_drains_503_and_the_new_master_serves_waits() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let args = [
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--inner",
        "threading",
    ];
    let mut pool = Pool::start(&example_path("comet"), &args);
    let mut waiters = util::start_waiters(pool.addr, 3);
    util::wait_for_waiters(pool.addr, 3);
    kill(pool.pid(), "-USR2");
    let new = pid_in(&pool.wait_for_line(0, &["is ready after"]));
    for waiter in &mut waiters {
        let reply = util::read_reply(waiter);
        assert_eq!(reply.status, 503, "{}", reply.text());
    }
    pool.wait_exit();
    // The new master's own objects: a fresh wait and notify.
    util::comet_contract(pool.addr, 2);
    kill(new, "-TERM");
    wait_until("the new master to stop", LONG, || has_exited(new));
}

#[test]
fn reuseport_refuses_the_upgrade_and_serves_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let args = [
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--accept",
        "reuseport",
    ];
    let pool = Pool::start(&example_path("hello"), &args);
    // Served: the master's signal handlers are in place.
    assert_eq!(get(pool.addr, "/").status, 200);
    kill(pool.pid(), "-USR2");
    pool.wait_for_line(0, &["SIGUSR2 ignored: Accept::ReusePort"]);
    assert_eq!(get(pool.addr, "/").status, 200);
    let children = util::children_of(pool.pid());
    assert_eq!(children.len(), 2, "only the two workers: {children:?}");
}
