//! Edges of the binary upgrade (`SIGUSR2`) that the load tests in `upgrade.rs` do not
//! reach: a new binary built with another model, and the upgrade's variables seen by
//! a process they were not meant for.

mod upgrade_support;
mod util;

use upgrade_support::{ANSWERS_PER_PHASE, Installed, Load, Pool, kill};
use util::{example_path, get};

/// A new release that serves with a single-process model can never report ready: it
/// says so and declines at once, instead of serving beside the old master until the
/// upgrade timeout (here far beyond the test's deadline) runs out.
#[test]
fn a_new_binary_with_another_model_declines_at_once() {
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
    let installed = Installed::new("upgrade-stale-env");
    installed.replace_with_script(&format!(
        "#!/bin/sh\nMIXSERVE_UPGRADE_READY_FD=4 LISTEN_FDS=1 LISTEN_PID=1 exec '{}' \"$@\"\n",
        example_path("hello").display()
    ));
    let pool = Pool::start(&installed.program(), &["--mixin", "threading"]);
    assert_eq!(get(pool.addr, "/").status, 200);
}
