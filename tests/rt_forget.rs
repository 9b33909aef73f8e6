//! A coroutine parked on an fd that another coroutine forgets (deregisters, before it
//! closes it) wakes: no edge can come for it any more.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mixserve::rt::{self, Interest, Runtime, RuntimeConfig};

#[test]
fn forgetting_an_fd_wakes_the_coroutines_parked_on_it() {
    let (ours, _peer) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let fd = ours.as_raw_fd();
    let woke: Rc<Cell<Option<bool>>> = Rc::new(Cell::new(None));
    let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let seen = Rc::clone(&woke);
    runtime
        .spawn(move || {
            // Nothing will ever arrive: only the forget, or this guard, ends the wait.
            let guard = Instant::now() + Duration::from_secs(30);
            let waited = rt::wait_fd(fd, Interest::Readable, Some(guard));
            seen.set(Some(waited.is_ok()));
        })
        .unwrap();
    runtime
        .spawn(move || {
            rt::yield_now();
            rt::forget_fd(fd);
        })
        .unwrap();
    runtime.run().unwrap();
    assert_eq!(woke.get(), Some(true), "woken, not timed out");
}
