//! The guard against stale example binaries (tests/util/fresh.rs): a binary older than
//! a source its dep-info names is caught, one newer than all of them passes, and the
//! examples this run uses are fresh.

mod util;

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use util::fresh::newer_source;

/// Writes `path` with `text` and sets its modification time to `at`.
fn file_at(path: &Path, text: &str, at: SystemTime) {
    std::fs::write(path, text).expect("write");
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(at))
        .expect("set mtime");
}

#[test]
fn a_binary_older_than_one_of_its_sources_is_stale() {
    let dir = util::scratch::Scratch::new("fresh");
    std::fs::create_dir_all(dir.join("with space")).expect("dir");
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let (old, new) = (dir.join("old.rs"), dir.join("with space/new.rs"));
    let binary = dir.join("example");
    file_at(&old, "", now - 3 * hour);
    file_at(&new, "", now - hour);
    let escaped = new.display().to_string().replace(' ', "\\ ");
    let depinfo = format!("{}: {} {escaped}\n", binary.display(), old.display());
    std::fs::write(binary.with_extension("d"), depinfo).expect("dep-info");

    file_at(&binary, "", now - 2 * hour);
    assert_eq!(
        newer_source(&binary),
        Some(new.clone()),
        "built before new.rs"
    );
    file_at(&binary, "", now);
    assert_eq!(newer_source(&binary), None, "built after both");
}

#[test]
fn the_examples_the_tests_start_are_up_to_date() {
    for name in [
        "comet",
        "hello",
        "echo",
        "chat",
        "jobs",
        "static",
        "overflow",
        "hub_probe",
    ] {
        let path = util::example_path(name);
        assert!(path.exists(), "{} is built", path.display());
    }
}
