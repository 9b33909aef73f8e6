//! A configuration the HTTP adapter or an example's own flags refuse stops a program
//! at start-up: exit status 2 and a line naming the setting, before anything listens.

mod util;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Runs `example` with `args` plus `--addr 127.0.0.1:0`; a server that starts instead
/// of refusing is killed after a few seconds. Returns the exit code (`None` if killed),
/// stdout and stderr.
fn run_briefly(example: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(util::example_path(example))
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {example}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().expect("try_wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A wait, poll or stop of no time, NaN, a negative or a value no duration holds:
/// before, zero started a server whose long polls answered at once (clients polling
/// in a tight loop) or whose stop closed waiters without their `503`, and NaN was
/// refused without naming the option.
#[test]
fn a_duration_of_no_time_or_no_number_stops_the_examples_naming_the_option() {
    let options = [
        ("comet", "--wait-limit"),
        ("chat", "--poll-secs"),
        ("jobs", "--poll-secs"),
        ("comet", "--shutdown-timeout"),
        ("hello", "--shutdown-timeout"),
    ];
    for (example, option) in options {
        for value in ["0", "0.0000000001", "nan", "-1", "inf", "1e300", "soon"] {
            let flag = format!("{option}={value}");
            let (code, stdout, stderr) = run_briefly(example, &[&flag]);
            assert_eq!(code, Some(2), "{example} {flag}: {stderr}");
            assert!(stderr.contains(option), "{example} {flag}: {stderr}");
            assert!(!stdout.contains("listening"), "{example} {flag}: {stdout}");
        }
    }
}
