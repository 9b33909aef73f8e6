//! Edges of the binary upgrade (`SIGUSR2`) that the load tests in `upgrade.rs` do not
//! reach: a new binary built with another model, and the upgrade's variables seen by
//! a process they were not meant for.

mod upgrade_support;
mod util;

use upgrade_support::{ANSWERS_PER_PHASE, Installed, LONG, Load, Pool, has_exited, kill, pid_in};
use util::{example_path, get, wait_until};

/// One server pool at a time: a 2-core box.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A new release that serves with a single-process model can never report ready: it
/// says so and declines at once, instead of serving beside the old master until the
/// upgrade timeout (here far beyond the test's deadline) runs out.
#[test]
fn a_new_binary_with_another_model_declines_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let installed = Installed::new("upgrade-model");
    let args = ["--mixin", "preforked", "--workers", "2"];
    let mut pool = Pool::start_with(
        &installed.program(),
        &args,
        &[("MIXSERVE_TEST_UPGRADE_TIMEOUT_MS", "3600000")],
    );
    let load = Load::start(pool.addr);
    load.wait_answers(ANSWERS_PER_PHASE);
    installed.replace_with_script(&format!(
        "#!/bin/sh\nexec '{}' --mixin threading --addr 127.0.0.1:0\n",
        example_path("hello").display()
    ));
    kill(pool.pid(), "-USR2");
    pool.wait_for_line(0, &["started by a binary upgrade", "threading"]);
    pool.wait_for_line(0, &["upgrade failed"]);
    pool.wait_for(0, "the declining new master reaped", |line| {
        line.contains("before it was ready") || line.contains("is gone")
    });
    load.wait_answers(ANSWERS_PER_PHASE);
    assert!(
        pool.child.try_wait().expect("try_wait").is_none(),
        "the old master exited"
    );
    load.finish().assert_clean();
}

/// `MIXSERVE_UPGRADE_READY_FD` left in the environment of a process the upgrade did
/// not start (a program run by a master whose environment could not be cleaned) is
/// ignored, as `LISTEN_FDS` is when `LISTEN_PID` names another process.
#[test]
fn upgrade_variables_meant_for_another_process_are_ignored() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let installed = Installed::new("upgrade-stale-env");
    installed.replace_with_script(&format!(
        "#!/bin/sh\nMIXSERVE_UPGRADE_READY_FD=4 LISTEN_FDS=1 LISTEN_PID=1 exec '{}' \"$@\"\n",
        example_path("hello").display()
    ));
    let pool = Pool::start(&installed.program(), &["--mixin", "threading"]);
    assert_eq!(get(pool.addr, "/").status, 200);
}

/// A new master that is not ready yet ignores `SIGUSR2` (logged): were it to start a
/// third master, its own ready report would mark the socket as its alone, and its
/// drain, once the third one is ready, would shut the socket all three share.
#[test]
fn a_new_master_not_ready_yet_ignores_sigusr2() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let installed = Installed::new("upgrade-not-ready");
    let gate = installed.dir.join("gate");
    let args = ["--mixin", "preforked", "--workers", "2"];
    let gate_text = gate.to_string_lossy().into_owned();
    let mut pool = Pool::start_with(
        &example_path("hello"),
        &args,
        &[("MIXSERVE_TEST_UPGRADE_HOLD_READY", gate_text.as_str())],
    );
    let load = Load::start(pool.addr);
    load.wait_answers(ANSWERS_PER_PHASE);
    kill(pool.pid(), "-USR2");
    let held = pool.wait_for_line(0, &["test hook: master (pid", "holds its ready report"]);
    let second = pid_in(&held);
    kill(second, "-USR2");
    pool.wait_for(0, "the second master ignoring SIGUSR2", |line| {
        line.contains("SIGUSR2 ignored") && line.contains(&format!(" {second}]"))
    });
    std::fs::write(&gate, b"").expect("open the gate");
    pool.wait_for_line(0, &["is ready after"]);
    pool.wait_exit();
    load.wait_answers(ANSWERS_PER_PHASE);
    load.finish().assert_clean();
    assert!(!has_exited(second), "the second master is gone");
    kill(second, "-TERM");
    wait_until("the second master to stop", LONG, || has_exited(second));
}
