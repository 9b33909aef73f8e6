//! Helpers of the runtime's tests (`rt.rs`, `rt_io.rs`): a runtime, coroutine bodies
//! whose failed assertions fail the test, and parking reads and writes.
#![allow(dead_code)]

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use mixserve::rt::{Interest, IoSource, Runtime, RuntimeConfig};

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

thread_local! {
    /// Coroutines of this test thread that panicked (the runtime contains panics, so an
    /// `assert!` inside a coroutine is only seen through this count).
    static PANICKED: Cell<usize> = const { Cell::new(0) };
}

/// Counts a panic that unwinds through it.
pub struct PanicCounter;

impl Drop for PanicCounter {
    fn drop(&mut self) {
        if thread::panicking() {
            PANICKED.set(PANICKED.get() + 1);
        }
    }
}

/// Wraps a coroutine body so that a failed assertion in it fails the test.
pub fn checked(f: impl FnOnce() + 'static) -> impl FnOnce() + 'static {
    move || {
        let counter = PanicCounter;
        f();
        drop(counter);
    }
}

/// Runs `runtime` to completion and fails if any checked coroutine panicked.
pub fn run(runtime: &mut Runtime) {
    runtime.run().expect("run");
    assert_eq!(
        PANICKED.get(),
        0,
        "a coroutine panicked (see its message above)"
    );
}

/// Reads until `buf` is full, parking on `WouldBlock`.
pub fn read_exact(
    stream: &mut UnixStream,
    source: &IoSource,
    mut buf: &mut [u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                source.wait(Interest::Readable, None)?
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf`, parking on `WouldBlock`.
pub fn write_all(stream: &mut UnixStream, source: &IoSource, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                source.wait(Interest::Writable, None)?
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn nonblocking_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}
