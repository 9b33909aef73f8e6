//! [`Scheduled`]: stackful coroutines on a mio loop — one process holds ten thousand
//! waiting clients, and the handler is still plain blocking code.

mod serve_loop;
mod turns;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::conn::Conn;
use crate::mixin::MixIn;
use crate::mixin::settings::settings;
use crate::rt::{self, Runtime, RuntimeConfig};
use crate::server::source::Source;
use crate::server::{ConfigCheck, ConfigError, Context};

/// One coroutine per connection on a single-threaded loop (or one loop per thread).
///
/// An accept coroutine takes connections off the listener and starts a coroutine for
/// each, running the unchanged [`Handler`](crate::Handler). When the handler blocks —
/// reading or writing its [`Conn`], `sleep`, a [`Broadcast`](crate::sync::Broadcast) or
/// [`Channel`](crate::sync::Channel) wait — the coroutine parks and the loop runs the
/// others. This is the c10k model: a parked connection costs a stack (64 KiB of address
/// space, a few KiB resident) and an fd, not a thread.
///
/// # Rules for handler code on a coroutine
///
/// A coroutine shares its thread with every other connection of its loop, so anything
/// that blocks the *thread* stalls them all:
///
/// - block only through the crate: `Conn` I/O, [`rt::sleep`](crate::rt::sleep),
///   `Broadcast`/`Channel`; never `std::thread::sleep`, a crossbeam or std channel
///   `recv`, blocking DNS (`ToSocketAddrs`), or a std socket of your own;
/// - never hold a `std::sync::Mutex` guard across one of those calls: another
///   coroutine of the same thread that takes the lock deadlocks the whole loop;
/// - never hold a `RefCell` borrow across them: another coroutine's borrow panics;
/// - keep deep recursion and large stack arrays off the coroutine: the stack is
///   [`stack_size`](Scheduled::stack_size) bytes (64 KiB by default, with a guard page;
///   an overflow kills the process). Below 32 KiB a panic printing a backtrace
///   overflows it, so smaller stacks are refused.
///
/// # Limits
///
/// Each coroutine stack is two kernel mappings, and Linux allows `vm.max_map_count`
/// (65,530 by default) per process: about 32,000 coroutines. The model therefore caps
/// live connections ([`max_connections`](Scheduled::max_connections), default 25,000)
/// and closes connections past the cap at once, counting them
/// ([`ScheduledStats::refused`]), instead of failing an allocation. Scale past it with
/// processes (`Preforked` with a scheduled inner model). One connection slot is kept
/// free of shared-object waits, so a notify can always be served.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// Stack size and coroutine cap of each loop.
    runtime: RuntimeConfig,
    /// Loops (one per thread) sharing the listener.
    threads: usize,
    /// Live connections allowed in the process, over all loops.
    max_connections: usize,
    /// Counters, shared with the loops and with readers.
    stats: ScheduledStats,
}

/// Counters of a [`Scheduled`] model, readable while it serves.
#[derive(Debug, Clone, Default)]
pub struct ScheduledStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    live: AtomicUsize,
}

impl ScheduledStats {
    /// Connections accepted and served (or being served).
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed at once because the cap was reached or no coroutine could
    /// be started.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Connections being served now.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }
}

settings!(Scheduled {
    /// Sets each coroutine's stack size in bytes (default 64 KiB; at least 32 KiB).
    fn stack_size(bytes: usize) { runtime.stack_size = bytes }
    /// Caps live connections in the process (default 25,000). With every loop's two
    /// own coroutines and the 1,024 stacks kept for reuse, it must fit the 30,000
    /// stacks a process may hold: at most 28,976 − 2 × `threads`.
    fn max_connections(max: usize) { max_connections = max }
    /// Runs `n` loops on `n` threads sharing the listener, to use more cores in one
    /// process (default 1). Each connection stays on the loop that accepted it.
    fn threads(n: usize) { threads = n }
    /// Reports a handler that keeps its loop's thread longer than `threshold` between
    /// two switches: a `log::warn!` naming the connection and the time held, counted in
    /// [`rt::stall_count`](crate::rt::stall_count). Default 100 ms; `None` turns the
    /// detector off.
    fn stall_threshold(threshold: Option<std::time::Duration>) { runtime.stall_threshold = threshold }
    /// Sets the wake-up moderation nap (default 100 µs; `None` turns it off): see
    /// [`RuntimeConfig::moderation_nap`](crate::rt::RuntimeConfig::moderation_nap).
    fn moderation_nap(nap: Option<std::time::Duration>) { runtime.moderation_nap = nap }
});

impl Scheduled {
    /// The default cap on live connections: well under the ~32,000 guarded stacks
    /// `vm.max_map_count` allows a process.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 25_000;

    /// The smallest stack allowed: a panic printing a backtrace needs about 32 KiB.
    pub const MIN_STACK_SIZE: usize = 32 * 1024;

    /// The largest stack allowed (256 MiB): larger ones cannot be mapped for many
    /// connections, and one near `usize::MAX` overflows the stack's own size sum.
    pub const MAX_STACK_SIZE: usize = 256 * 1024 * 1024;

    /// The most loops (`threads`) allowed: each takes two coroutines of the process's
    /// stack budget and a thread.
    pub const MAX_THREADS: usize = 1024;

    /// One loop, 64 KiB stacks, at most [`DEFAULT_MAX_CONNECTIONS`](Self::DEFAULT_MAX_CONNECTIONS).
    pub fn new() -> Scheduled {
        Scheduled {
            runtime: RuntimeConfig::default(),
            threads: 1,
            max_connections: Scheduled::DEFAULT_MAX_CONNECTIONS,
            stats: ScheduledStats::default(),
        }
    }

    /// The counters, to read while the server runs or after it stopped.
    pub fn stats(&self) -> ScheduledStats {
        self.stats.clone()
    }
}

impl MixIn for Scheduled {
    fn name(&self) -> &'static str {
        "scheduled"
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let stack = self.runtime.stack_size;
        let check = ConfigCheck(self.name());
        check.within(
            "stack_size",
            stack,
            Scheduled::MIN_STACK_SIZE..=Scheduled::MAX_STACK_SIZE,
        )?;
        check.within("threads", self.threads, 1..=Scheduled::MAX_THREADS)?;
        if let Some(nap) = self.runtime.moderation_nap {
            // A nap is a pause of microseconds before the loop looks at epoll again.
            let most = std::time::Duration::from_secs(1);
            check.require(
                "moderation_nap",
                nap <= most,
                format!("is {nap:?}, must be at most {most:?}"),
            )?;
        }
        // Every stack the process may hold fits the per-process budget (each stack is
        // two of the `vm.max_map_count` mappings): the connections, two coroutines per
        // loop (accept, watch), and the idle stacks kept for reuse (split among loops).
        let reserve = (2 * self.threads).saturating_add(self.runtime.max_idle_stacks);
        let most = self.runtime.max_coroutines.saturating_sub(reserve);
        check.within("max_connections", self.max_connections, 1..=most)
    }

    /// One loop per thread over the server's source; inside a preforked worker a
    /// feeder thread takes the worker's connections while the loops have room.
    fn serve_forever(&mut self, ctx: &Arc<Context>) -> io::Result<()> {
        let (counters, max) = (Arc::clone(&self.stats.inner), self.max_connections);
        let room = Arc::new(move |queued: usize| {
            counters.live.load(Ordering::SeqCst).saturating_add(queued) < max
        });
        let source = Arc::new(Source::open(ctx, None)?.fed(room)?);
        let mut runtime = self.runtime.clone();
        // The loops share the process's budget of idle stacks (see `validate`).
        runtime.max_idle_stacks = (runtime.max_idle_stacks / self.threads).max(1);
        let settings = serve_loop::Settings {
            runtime,
            max_connections: self.max_connections,
            counters: Arc::clone(&self.stats.inner),
            source,
        };
        if self.threads == 1 {
            return serve_loop::run(ctx, &settings, true);
        }
        std::thread::scope(|scope| {
            let mut others = Vec::with_capacity(self.threads - 1);
            for _ in 1..self.threads {
                // `Scope::spawn` would panic when the system refuses a thread.
                let loop_thread = std::thread::Builder::new()
                    .name("mixserve-loop".into())
                    .spawn_scoped(scope, || serve_loop::run(ctx, &settings, false));
                match loop_thread {
                    Ok(handle) => others.push(handle),
                    Err(error) => {
                        // Not short-handed: the loops already running stop too.
                        ctx.shutdown.request();
                        others.into_iter().for_each(|handle| drop(handle.join()));
                        let why = format!("scheduled: cannot start loop thread: {error}");
                        return Err(io::Error::new(error.kind(), why));
                    }
                }
            }
            let mine = serve_loop::run(ctx, &settings, true);
            // Every loop stops on the same shutdown; report the first failure.
            others
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("a loop panicked")))
                })
                .fold(mine, |first, next| first.and(next))
        })
    }

    /// Serves one connection outside the loop (for `Server::handle_request`): on a
    /// coroutine it starts another; on a plain thread it runs a loop just for it.
    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        let ctx = Arc::clone(ctx);
        if rt::in_coroutine() {
            return rt::spawn(move || ctx.finish_request(conn)).map_err(io::Error::other);
        }
        let mut runtime = Runtime::new(self.runtime.clone())?;
        runtime
            .spawn(move || ctx.finish_request(conn))
            .map_err(io::Error::other)?;
        runtime.run()
    }

    fn max_blocked(&self) -> Option<usize> {
        Some(self.max_connections - 1)
    }

    fn in_flight(&self) -> usize {
        self.stats.live()
    }
}
