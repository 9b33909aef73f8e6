//! A shared object used in a process, then a fork: the child must know it is not the
//! object's home (the object's waiters live in the parent), even though the parent
//! looked up its own process id before the fork (the crate keeps it, to spare a
//! `getpid(2)` per operation). Without a server, the child's remote call fails.
//!
//! No test harness: the harness runs tests on threads, and this test forks, which is
//! only safe from a process with one thread.

use mixserve::sync::Broadcast;

fn main() {
    let news: Broadcast<usize> = Broadcast::new();
    // At home: a local count, and the process id is now known.
    assert_eq!(news.send_count(), Ok(0));
    // SAFETY: this process has one thread (no harness); the child only calls the
    // crate and exits.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            // Away from home: the count goes to a hub, and there is none.
            let code = if news.send_count().is_err() { 0 } else { 1 };
            // SAFETY: ends the child at once, with no atexit handlers of the parent's.
            unsafe { libc::_exit(code) };
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for the child just forked; `status` is valid for writes.
            assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
            assert!(
                libc::WIFEXITED(status),
                "the child did not exit: {status:#x}"
            );
            assert_eq!(
                libc::WEXITSTATUS(status),
                0,
                "the forked child took itself for the object's home"
            );
            assert_eq!(news.send_count(), Ok(0), "still at home in the parent");
            println!("forked_home: ok");
        }
    }
}
