//! A server of this test process, served on a thread of its own (for models that never
//! fork: the test harness has threads).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use mixserve::{MixIn, Server, ShutdownHandle};

/// Builds the server `build` makes on a new thread and serves it there until it stops:
/// its address, its stop, and the thread (which panics if building or serving fails).
pub fn serve_on_thread<M: MixIn + 'static>(
    build: impl FnOnce() -> Server<M> + Send + 'static,
) -> (SocketAddr, ShutdownHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let serving = thread::spawn(move || {
        let mut server = build();
        tx.send((server.local_addr().unwrap(), server.shutdown_handle()))
            .unwrap();
        server.serve_forever().unwrap();
    });
    let (addr, handle) = rx.recv().expect("the server was built");
    (addr, handle, serving)
}
