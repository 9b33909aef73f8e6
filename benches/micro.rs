//! Micro-benchmarks of single costs, printed as one Markdown table:
//!
//! - **HTTP per request**: the real [`Http`] handler serving pipelined `GET`s over a
//!   socketpair in batches — head parsing, the application call and response writing,
//!   per request, with no connection set-up in the way;
//! - **HTTP keep-alive on a coroutine** (`micro/keepalive.rs`): one request at a time
//!   to the handler on a coroutine, as under `Scheduled`; the serving thread's CPU and
//!   heap allocations per request;
//! - **file bodies**: a 1 MiB response sent from memory (`Body::Bytes`) and from a file
//!   (`Body::File`, by `sendfile`) over TCP loopback;
//! - **the hub round trip**: sequential keep-alive `GET /` against the `comet` example,
//!   whose `/` asks the shared `Broadcast` for its waiter count — answered in-process
//!   under `threading`, but by a message to the master's hub from the forked child under
//!   `forking`. The `hello` example under `forking` (same child, no hub) is the
//!   baseline, so `comet − hello` under `forking` is the round trip itself.
//!
//! Each figure is the median of several runs. The coroutine switch is measured by
//! `cargo bench --bench rt`, not here.
//!
//! Run with `cargo bench --bench micro` (it builds the examples in release mode first).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mixserve::http::{Body, Http, HttpConfig, Request, Response};
use mixserve::{Conn, Handler, MakeHandler};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

#[path = "micro/counting.rs"]
mod counting;
#[path = "micro/keepalive.rs"]
mod keepalive;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// How many times each measurement is repeated; the median is reported.
const RUNS: usize = 5;
/// Pipelined requests per run of the HTTP benchmark, and per write.
const HTTP_REQUESTS: usize = 100_000;
const HTTP_BATCH: usize = 1_000;
/// The request the HTTP benchmark sends: a typical small `GET`.
const REQUEST: &[u8] =
    b"GET /hello?x=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: micro\r\nAccept: */*\r\n\r\n";
/// Size of the file body, and responses per run.
const FILE_SIZE: usize = 1024 * 1024;
const FILE_RESPONSES: usize = 200;
/// Sequential requests per run of the hub benchmark, after a warm-up: together fewer
/// than the examples' cap of 1,000 requests per connection, so one connection serves all.
const HUB_REQUESTS: usize = 800;
const HUB_WARMUP: usize = 100;

/// One line of the result table.
struct Row {
    name: String,
    median: f64,
    unit: &'static str,
    note: String,
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// CPU time (user and system) the calling thread has used.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill; the clock id is a constant.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if result != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Serves one connection with `app` on a new thread, as a server would; the thread
/// returns the CPU time it spent.
fn serve_one<A: mixserve::http::HttpHandler>(
    app: Http<A>,
    conn: Conn,
) -> thread::JoinHandle<io::Result<Duration>> {
    thread::spawn(move || {
        let started = thread_cpu();
        let mut conn = conn;
        let mut handler = app.make_handler();
        handler.setup(&mut conn)?;
        handler.handle(&mut conn)?;
        conn.flush()?;
        Ok(thread_cpu() - started)
    })
}

/// Requests per second of the `Http` handler on pipelined batches over a socketpair,
/// and the serving thread's CPU microseconds per request.
fn http_pipelined() -> io::Result<(f64, f64)> {
    let (client, server) = UnixStream::pair()?;
    let app = Http::with_config(
        |_: &mut Request| Response::text(200, "hello"),
        one_long_connection(),
    );
    let serving = serve_one(app, Conn::from_unix(server)?);
    let mut reader = BufReader::with_capacity(256 * 1024, client.try_clone()?);
    // One request first, to learn the (fixed) size of a response.
    (&client).write_all(REQUEST)?;
    let response_len = read_response(&mut reader)?;
    let batch = REQUEST.repeat(HTTP_BATCH);
    let mut writer = client.try_clone()?;
    let started = Instant::now();
    let writing = thread::spawn(move || -> io::Result<()> {
        for _ in 0..HTTP_REQUESTS / HTTP_BATCH {
            writer.write_all(&batch)?;
        }
        Ok(())
    });
    discard(
        &mut reader,
        (HTTP_REQUESTS / HTTP_BATCH * HTTP_BATCH * response_len) as u64,
    )?;
    let elapsed = started.elapsed();
    writing.join().expect("writer")?;
    client.shutdown(std::net::Shutdown::Both)?;
    drop(reader);
    let cpu = serving.join().expect("server thread")?;
    let per_request = cpu.as_secs_f64() * 1e6 / (HTTP_REQUESTS + 1) as f64;
    Ok((HTTP_REQUESTS as f64 / elapsed.as_secs_f64(), per_request))
}

/// The default configuration, but with no cap on requests per connection: each run sends
/// all its requests on one connection (the default cap, 1,000, would close it midway).
fn one_long_connection() -> HttpConfig {
    let mut config = HttpConfig::default();
    config.max_requests_per_connection = usize::MAX;
    config
}

/// Reads one response with a `Content-Length` body; returns its size on the wire.
fn read_response(reader: &mut impl BufRead) -> io::Result<usize> {
    let mut size = 0;
    let mut length = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        size += n;
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(io::Error::other)?;
        }
        if line == "\r\n" {
            break;
        }
    }
    discard(reader, length as u64)?;
    Ok(size + length)
}

/// Reads and drops exactly `count` bytes.
fn discard(reader: &mut impl Read, count: u64) -> io::Result<()> {
    let copied = io::copy(&mut reader.take(count), &mut io::sink())?;
    if copied < count {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// GiB/s of 1 MiB responses over TCP loopback, from memory or by `sendfile`, and the
/// serving thread's CPU milliseconds per GiB.
fn file_bodies(path: &PathBuf, by_sendfile: bool) -> io::Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    let memory = std::fs::read(path)?;
    let path = path.clone();
    let app = Http::new(move |_: &mut Request| {
        if by_sendfile {
            match File::open(&path).and_then(|f| Response::file(200, "application/octet-stream", f))
            {
                Ok(response) => response,
                Err(error) => Response::text(500, error.to_string()),
            }
        } else {
            Response::status(200)
                .with_header("Content-Type", "application/octet-stream")
                .with_body(Body::Bytes(memory.clone()))
        }
    });
    let serving = serve_one(app, Conn::from_tcp(server)?);
    let mut reader = BufReader::with_capacity(256 * 1024, client.try_clone()?);
    let started = Instant::now();
    (&client).write_all(&b"GET /f HTTP/1.1\r\nHost: bench\r\n\r\n".repeat(FILE_RESPONSES))?;
    for _ in 0..FILE_RESPONSES {
        read_response(&mut reader)?;
    }
    let elapsed = started.elapsed();
    client.shutdown(std::net::Shutdown::Both)?;
    drop(reader);
    let cpu = serving.join().expect("server thread")?;
    let gib = (FILE_RESPONSES * FILE_SIZE) as f64 / (1u64 << 30) as f64;
    Ok((gib / elapsed.as_secs_f64(), cpu.as_secs_f64() * 1e3 / gib))
}

/// An example server in its own process group; killed with the group on drop.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Example {
    fn start(name: &str, mixin: &str) -> io::Result<Example> {
        let mut child = Command::new(examples_dir().join(name))
            .args(["--mixin", mixin, "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(Example { child, addr }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!("{name}: bad first line {line:?}")))
            }
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The release examples beside this bench binary (`target/release/examples`).
fn examples_dir() -> PathBuf {
    let mut dir = std::env::current_exe().expect("bench binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples")
}

/// Median microseconds of a sequential keep-alive `GET /` against a running example.
fn get_latency(addr: SocketAddr) -> io::Result<f64> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut samples = Vec::with_capacity(HUB_REQUESTS);
    for i in 0..HUB_WARMUP + HUB_REQUESTS {
        let started = Instant::now();
        (&stream).write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        read_response(&mut reader)?;
        if i >= HUB_WARMUP {
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(median(samples))
}

/// The servers the hub rows compare: example, model, what `GET /` does there.
const HUB_SERVERS: [(&str, &str, &str); 4] = [
    ("comet", "threading", "waiter count read in-process"),
    ("hello", "threading", "no shared object"),
    ("comet", "forking", "waiter count asked of the master's hub"),
    ("hello", "forking", "forked child, no hub (baseline)"),
];

/// Pins the calling thread (and the processes it spawns from now on) to the first CPU
/// it may run on; returns the previous set, to restore with [`set_cpus`].
fn pin_to_one_cpu() -> Option<libc::cpu_set_t> {
    // SAFETY: a cpu_set_t is plain bits; all zero is the empty set.
    let mut previous: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `previous` is a writable cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut previous) } != 0 {
        return None;
    }
    // SAFETY: every index is below CPU_SETSIZE, the number of bits in the set.
    let cpu =
        (0..libc::CPU_SETSIZE as usize).find(|&c| unsafe { libc::CPU_ISSET(c, &previous) })?;
    // SAFETY: as above.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    set_cpus(&one).then_some(previous)
}

/// Sets the calling thread's CPU affinity; false if the kernel refused.
fn set_cpus(cpus: &libc::cpu_set_t) -> bool {
    // SAFETY: `cpus` is a valid cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), cpus) == 0 }
}

/// The hub rows. The client and all four servers (with their forked children) share one
/// CPU, so each figure is the CPU path of a request — context switches included — and
/// not the cross-CPU wake-up latency of a shared machine, which varies by tens of µs
/// from run to run. All four servers run at once and each run visits them in turn, so
/// load from elsewhere falls on all alike; the round trip is the median of the per-run
/// differences.
fn hub_rows(rows: &mut Vec<Row>) -> io::Result<()> {
    let previous = pin_to_one_cpu();
    let result = measure_hub(rows);
    if let Some(previous) = previous {
        set_cpus(&previous);
    }
    result
}

fn measure_hub(rows: &mut Vec<Row>) -> io::Result<()> {
    let servers = HUB_SERVERS
        .iter()
        .map(|(example, mixin, _)| Example::start(example, mixin))
        .collect::<io::Result<Vec<_>>>()?;
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
    for _ in 0..RUNS {
        for (server, samples) in servers.iter().zip(&mut runs) {
            samples.push(get_latency(server.addr)?);
        }
    }
    let round_trips: Vec<f64> = runs[2].iter().zip(&runs[3]).map(|(c, h)| c - h).collect();
    let ratios: Vec<f64> = runs[2].iter().zip(&runs[0]).map(|(f, t)| f / t).collect();
    for ((example, mixin, note), samples) in HUB_SERVERS.iter().zip(runs) {
        rows.push(Row {
            name: format!("`GET /` keep-alive, {example} --mixin {mixin}"),
            median: median(samples),
            unit: "µs",
            note: (*note).into(),
        });
    }
    rows.push(Row {
        name: "hub round trip (comet − hello, both forking)".into(),
        median: median(round_trips),
        unit: "µs",
        note: format!(
            "comet forking / comet threading = {:.2}× (median of per-run ratios)",
            median(ratios)
        ),
    });
    Ok(())
}

fn build_examples() -> io::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--examples", "--quiet"])
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("building the examples: {status}")));
    }
    Ok(())
}

fn run() -> io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let (rates, cpus): (Vec<f64>, Vec<f64>) = (0..RUNS)
        .map(|_| http_pipelined())
        .collect::<io::Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let rate = median(rates);
    rows.push(Row {
        name: format!("HTTP `GET` pipelined, batches of {HTTP_BATCH}, socketpair"),
        median: rate,
        unit: "requests/s",
        note: format!(
            "{:.2} µs per request; server thread CPU {:.2} µs per request",
            1e6 / rate,
            median(cpus)
        ),
    });

    let runs = (0..RUNS)
        .map(|_| keepalive::run())
        .collect::<io::Result<Vec<_>>>()?;
    let column = |pick: fn(&(f64, f64, f64)) -> f64| median(runs.iter().map(pick).collect());
    rows.push(Row {
        name: "HTTP `GET` keep-alive, one at a time, on a coroutine, socketpair".to_owned(),
        median: column(|run| run.0),
        unit: "round trips/s",
        note: format!(
            "server thread CPU {:.2} µs and {:.1} heap allocations per request",
            column(|run| run.1),
            column(|run| run.2)
        ),
    });

    let path = std::env::temp_dir().join(format!("mixserve-micro-{}.bin", std::process::id()));
    std::fs::write(&path, vec![b'x'; FILE_SIZE])?;
    let file_rows = [false, true].map(|by_sendfile| {
        (0..RUNS)
            .map(|_| file_bodies(&path, by_sendfile))
            .collect::<io::Result<Vec<_>>>()
            .map(|runs| {
                let (speeds, cpus): (Vec<f64>, Vec<f64>) = runs.into_iter().unzip();
                (median(speeds), median(cpus))
            })
    });
    let _ = std::fs::remove_file(&path);
    let [memory, sendfile] = file_rows;
    let (memory, sendfile) = (memory?, sendfile?);
    for (name, (speed, cpu)) in [("Body::Bytes", memory), ("Body::File (sendfile)", sendfile)] {
        rows.push(Row {
            name: format!("1 MiB body, {name}, TCP loopback"),
            median: speed,
            unit: "GiB/s",
            note: format!("server thread CPU {cpu:.0} ms per GiB; {FILE_RESPONSES} pipelined responses per run"),
        });
    }
    rows.last_mut().expect("row").note += &format!(
        "; {:.2}× the speed, {:.2}× the CPU of Body::Bytes",
        sendfile.0 / memory.0,
        sendfile.1 / memory.1
    );

    build_examples()?;
    hub_rows(&mut rows)?;
    Ok(rows)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(rows) => {
            println!("| benchmark | median of {RUNS} runs | unit | note |");
            println!("|---|---:|---|---|");
            for row in rows {
                println!(
                    "| {} | {:.2} | {} | {} |",
                    row.name, row.median, row.unit, row.note
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("micro: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
