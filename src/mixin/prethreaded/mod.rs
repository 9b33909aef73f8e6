//! [`Prethreaded`]: a pool of threads started before connections arrive (UNP §30.11–30.12).
//!
//! - `mod.rs` — the configuration and the [`MixIn`] implementation;
//! - `pool.rs` — the pool: its threads, growth, the accept lock, the hand-off channel,
//!   and stopping.

mod pool;
#[cfg(test)]
mod pool_tests;

use std::io;
use std::sync::Arc;

use crate::conn::Conn;
use crate::mixin::MixIn;
use crate::mixin::pool_stats::{PoolStats, Scoreboard};
use crate::mixin::serve_loop::{self, Takes};
use crate::mixin::settings::settings;
use crate::server::source::Source;
use crate::server::{ConfigCheck, ConfigError, Context};

use pool::Pool;

/// How connections reach the threads of a [`Prethreaded`] pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PoolAccept {
    /// Each pool thread takes a mutex, waits for and accepts one connection, releases
    /// the mutex and serves it (UNP row 7).
    #[default]
    Locked,
    /// The main thread accepts and hands each connection to an idle pool thread over
    /// a channel (UNP row 8).
    Handoff,
}

/// A pool of threads started up front, growing when every thread is busy.
///
/// When every thread serves a connection, the pool starts another, up to
/// [`max_threads`](Prethreaded::max_threads). One thread is always kept free of
/// shared-object waits: a `/wait` that would take the last one fails at once (`503`),
/// so a `/notify` can still be served — the pool never hangs on its own waiters.
///
/// ```no_run
/// use mixserve::{Prethreaded, Server};
/// use mixserve::mixin::PoolAccept;
/// use mixserve::http::{Http, Request, Response};
///
/// let model = Prethreaded::new()
///     .threads(8)
///     .accept(PoolAccept::Handoff)
///     .max_threads(64);
/// let app = |_req: &mut Request| Response::text(200, "hello\n");
/// let mut server = Server::builder(model).bind("127.0.0.1:8000").build(Http::new(app))?;
/// server.serve_forever()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Prethreaded {
    /// How connections reach the threads.
    accept: PoolAccept,
    /// Threads started up front.
    threads: usize,
    /// The pool grows up to this many.
    max_threads: usize,
    /// Per-thread counters.
    board: Option<Arc<Scoreboard>>,
    /// The running pool (between the start of `serve_forever` and `server_close`).
    pool: Option<Pool>,
}

settings!(Prethreaded {
    /// Sets how connections reach the threads.
    fn accept(accept: PoolAccept) { accept = accept }
    /// Sets how far the pool may grow.
    fn max_threads(max: usize) { max_threads = max }
});

impl Prethreaded {
    /// Default growth limit.
    pub const DEFAULT_MAX_THREADS: usize = 512;
    /// The largest `max_threads` accepted.
    pub const MAX_THREADS: usize = 1024;

    /// Default number of threads started up front.
    pub const DEFAULT_THREADS: usize = 8;

    /// A pool of [`DEFAULT_THREADS`](Self::DEFAULT_THREADS) threads with a locked
    /// accept, growing up to [`DEFAULT_MAX_THREADS`](Self::DEFAULT_MAX_THREADS).
    pub fn new() -> Prethreaded {
        Prethreaded {
            accept: PoolAccept::default(),
            threads: Prethreaded::DEFAULT_THREADS,
            max_threads: Prethreaded::DEFAULT_MAX_THREADS,
            board: Scoreboard::new(Prethreaded::MAX_THREADS).ok().map(Arc::new),
            pool: None,
        }
    }

    /// Sets how many threads start up front (at least 1; the pool grows past them
    /// when every thread is busy).
    pub fn threads(mut self, threads: usize) -> Prethreaded {
        self.threads = threads;
        self.max_threads = self.max_threads.max(threads);
        self
    }

    /// A handle on the per-thread counters (connections, wasted wake-ups).
    pub fn stats(&self) -> PoolStats {
        PoolStats::new(self.board.clone())
    }

    fn start(&mut self, ctx: &Arc<Context>, source: &Arc<Source>) -> io::Result<()> {
        let board = match ctx.worker_seat() {
            // Inside a preforked worker the mapping made before the fork is shared by
            // every worker: each pool counts on its own (the pool's table shows workers).
            Some(_) => Arc::new(Scoreboard::new(self.max_threads)?),
            None => self
                .board
                .clone()
                .ok_or_else(|| io::Error::other("prethreaded: no statistics memory"))?,
        };
        let pool = Pool::start(
            ctx,
            source,
            board,
            self.accept,
            self.threads,
            self.max_threads,
        )?;
        self.pool = Some(pool);
        Ok(())
    }
}

impl MixIn for Prethreaded {
    fn name(&self) -> &'static str {
        "prethreaded"
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let (check, most) = (ConfigCheck(self.name()), Prethreaded::MAX_THREADS);
        check.within("threads", self.threads, 1..=most)?;
        check.within("max_threads", self.max_threads, self.threads..=most)?;
        check.require("stats", self.board.is_some(), "cannot map the counters")
    }

    /// The common loop over the server's source: under `Handoff` it takes each
    /// connection and hands it to the pool; under `Locked` the pool's threads take
    /// them and the loop only watches for shutdown. Either way it ends with the
    /// common drain, then stops the pool.
    fn serve_forever(&mut self, ctx: &Arc<Context>) -> io::Result<()> {
        let source = Arc::new(Source::open(ctx, None)?);
        self.start(ctx, &source)?;
        let takes = match self.accept {
            PoolAccept::Handoff => Takes::Connections,
            PoolAccept::Locked => Takes::Nothing,
        };
        serve_loop::serve(self, ctx, &source, takes);
        Ok(())
    }

    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        match self.pool.as_mut() {
            Some(pool) => pool.hand_off(conn),
            None => {
                // `Server::handle_request` without a running pool: serve inline.
                ctx.finish_request(conn);
                Ok(())
            }
        }
    }

    fn can_accept(&self) -> bool {
        self.pool.as_ref().is_none_or(Pool::can_take_one)
    }

    fn max_blocked(&self) -> Option<usize> {
        Some(self.max_threads - 1)
    }

    fn in_flight(&self) -> usize {
        self.pool.as_ref().map_or(0, Pool::in_flight)
    }

    fn server_close(&mut self, _ctx: &Arc<Context>) {
        if let Some(pool) = self.pool.take() {
            pool.stop();
        }
    }
}
