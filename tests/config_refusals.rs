//! A configuration the HTTP adapter refuses stops a program at start-up: exit status 2
//! and a line naming the setting, before anything listens.

mod util;

use std::process::Command;

#[test]
fn a_zero_body_deadline_stops_the_comet_example_at_start_up() {
    for protocol in ["http", "scgi"] {
        let out = Command::new(util::example_path("comet"))
            .args(["--protocol", protocol, "--addr", "127.0.0.1:0"])
            .args(["--body-deadline", "0"])
            .output()
            .expect("run comet");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{protocol}: {stderr}");
        let says = "invalid configuration: http: body_deadline is zero";
        assert!(stderr.contains(says), "{protocol}: {stderr}");
        assert!(
            !stdout.contains("listening"),
            "{protocol} listened: {stdout}"
        );
    }
}
