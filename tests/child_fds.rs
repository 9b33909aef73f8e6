//! A forked child keeps none of its parent's private files: a preforked worker shares
//! only the listener with its master, and a forking model's child, serving one waiting
//! client, shares nothing with its parent. Not the master's wake-up pipe, its epoll
//! instances or its spare fd: each would outlive the master in every worker, and cost
//! every worker fds it never uses. Servers run as their own processes (the harness is
//! multithreaded; these models fork).

mod util;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use util::{ServerProcess, live_children, start_waiters, wait_for_waiters, wait_until};

const LONG: Duration = Duration::from_secs(30);

/// What each fd of `pid` (but 0, 1 and 2) refers to: `socket:[inode]`, `pipe:[inode]`,
/// `anon_inode:[eventpoll]` or a path.
fn open_files(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .parse::<u32>()
                .unwrap_or(0)
                > 2
        })
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect()
}

/// The files `child` holds that its `parent` holds too, leaving out those this test
/// process holds (what both inherited from it) and the ones that have no identity of
/// their own (an epoll instance reads the same in every process; it is counted apart).
fn shared_with_parent(parent: u32, child: u32) -> BTreeSet<String> {
    let ours: BTreeSet<String> = open_files(std::process::id()).into_iter().collect();
    let parents: BTreeSet<String> = open_files(parent).into_iter().collect();
    open_files(child)
        .into_iter()
        .filter(|f| f.contains(":[") && !f.starts_with("anon_inode:"))
        .filter(|f| parents.contains(f) && !ours.contains(f))
        .collect()
}

/// How many epoll instances `pid` holds.
fn epolls(pid: u32) -> usize {
    open_files(pid)
        .iter()
        .filter(|f| f.as_str() == "anon_inode:[eventpoll]")
        .count()
}

#[test]
fn a_preforked_worker_shares_only_the_listener_with_its_master() {
    // Iterative workers make no epoll instance of their own: any a worker holds came
    // from the master. Workers hold no spare fd of their master's either.
    let server = ServerProcess::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--max-workers",
            "2",
        ],
    );
    let master = server.child.id();
    wait_until("2 workers", LONG, || live_children(master).len() == 2);
    assert!(epolls(master) > 0, "the master polls with epoll");
    // A worker just forked still holds everything for a moment: what is checked is
    // where each one settles (a worker that keeps a master's file never does).
    let deadline = Instant::now() + LONG;
    loop {
        let faults: Vec<String> = live_children(master)
            .into_iter()
            .filter_map(|worker| master_files_held(master, worker))
            .collect();
        if faults.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{faults:#?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// What `worker` holds of its `master`'s own files, beyond the listener; `None` if
/// nothing.
fn master_files_held(master: u32, worker: u32) -> Option<String> {
    let shared = shared_with_parent(master, worker);
    let devnull = |pid| {
        open_files(pid)
            .iter()
            .filter(|f| f.as_str() == "/dev/null")
            .count()
    };
    // Its own spare fd, and what this test process handed down.
    let spares_allowed = devnull(std::process::id()) + 1;
    let clean = shared.len() == 1
        && shared.iter().all(|f| f.starts_with("socket:"))
        && epolls(worker) == 0
        && devnull(worker) <= spares_allowed;
    (!clean).then(|| {
        format!(
            "worker {worker} shares {shared:?} with its master and holds {:?}",
            open_files(worker)
        )
    })
}

#[test]
fn a_forking_child_shares_nothing_with_its_parent() {
    let server = ServerProcess::start("comet", &["--mixin", "forking"]);
    let parent = server.child.id();
    let _waiter = start_waiters(server.addr, 1);
    wait_for_waiters(server.addr, 1);
    // The children that answered the polls of `wait_for_waiters` are on their way out.
    wait_until("only the waiter's child left", LONG, || {
        live_children(parent).len() == 1
    });
    let children = live_children(parent);
    let child = *children.iter().next().unwrap();
    let shared = shared_with_parent(parent, child);
    assert!(shared.is_empty(), "the child holds its parent's {shared:?}");
    assert_eq!(
        epolls(child),
        0,
        "the child holds its parent's epoll: {:?}",
        open_files(child)
    );
}
