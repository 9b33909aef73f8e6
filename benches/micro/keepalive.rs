//! **HTTP keep-alive on a coroutine**: one client sends `GET`, waits for the answer and
//! sends the next (a closed loop, as `wrk` drives each connection) to the real [`Http`]
//! handler running on a coroutine of a [`Runtime`] — the path every request takes under
//! `Scheduled`: the idle wait, one read, the application, the answer, one send, a park.
//! Reported per request: the serving thread's CPU time and its heap allocations (counted
//! by this binary's global allocator), the figures that hold the hot path in place.

use std::cell::Cell;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use mixserve::http::{Http, Request, Response};
use mixserve::rt::{Runtime, RuntimeConfig};
use mixserve::{Conn, Handler, MakeHandler};

use super::counting::allocations;

/// Round trips per run.
const ROUND_TRIPS: usize = 20_000;
/// What the client sends: a typical small `GET`.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// One run: round trips per second (wall time, noisy on a shared machine), and the
/// serving thread's CPU microseconds and allocations per request.
pub fn run() -> io::Result<(f64, f64, f64)> {
    // Client and server on one CPU: each round trip is then two plain context
    // switches, not wake-ups across cores, whose cost varies fivefold on a VM.
    let previous = super::pin_to_one_cpu();
    let result = round_trips();
    if let Some(previous) = previous {
        super::set_cpus(&previous);
    }
    result
}

fn round_trips() -> io::Result<(f64, f64, f64)> {
    let (client, server) = UnixStream::pair()?;
    let serving = thread::spawn(move || -> io::Result<(Duration, u64)> {
        let mut runtime = Runtime::new(RuntimeConfig::default())?;
        let outcome = Rc::new(Cell::new(None));
        let reported = Rc::clone(&outcome);
        runtime
            .spawn(move || {
                let serve = || -> io::Result<()> {
                    let app = Http::with_config(
                        |_: &mut Request| Response::text(200, "hello"),
                        super::one_long_connection(),
                    );
                    let mut conn = Conn::from_unix(server)?;
                    let mut handler = app.make_handler();
                    handler.setup(&mut conn)?;
                    handler.handle(&mut conn)?;
                    conn.flush()
                };
                reported.set(Some(serve()));
            })
            .map_err(io::Error::other)?;
        let (cpu, allocated) = (super::thread_cpu(), allocations());
        runtime.run()?;
        let spent = (super::thread_cpu() - cpu, allocations() - allocated);
        outcome.take().unwrap_or(Ok(()))?;
        Ok(spent)
    });
    // The first answer gives the (fixed) size of every answer.
    let mut reader = BufReader::new(client.try_clone()?);
    (&client).write_all(REQUEST)?;
    let size = super::read_response(&mut reader)?;
    let mut answer = vec![0u8; size];
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        (&client).write_all(REQUEST)?;
        reader.read_exact(&mut answer)?;
    }
    let elapsed = started.elapsed();
    client.shutdown(std::net::Shutdown::Both)?;
    let (cpu, allocated) = serving.join().expect("server thread")?;
    let requests = (ROUND_TRIPS + 1) as f64;
    Ok((
        ROUND_TRIPS as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / requests,
        allocated as f64 / requests,
    ))
}
