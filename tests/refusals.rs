//! A wait refused by the reserve rule says which model refused and its limit, under
//! every model (the comet example answers `503` with the error's text).

mod util;

use util::{ServerProcess, get, read_reply, start_waiters, wait_for_waiters};

#[test]
fn a_refused_wait_names_the_model_that_refused() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--mixin", "iterative"],
            "the iterative model serves one connection at a time",
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
    for (args, expected) in cases {
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
        if waiting > 0 {
            assert_eq!(get(server.addr, "/notify").text(), "1", "{args:?}");
            for waiter in &mut waiters {
                assert_eq!(read_reply(waiter).text(), "1", "{args:?}");
            }
        }
    }
}
