//! [`Runtime`]: one scheduler loop per thread, its configuration and its remote handle.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::SpawnError;
use super::scheduler::{Core, WakeReason};
use super::waker::Remote;
use super::{clock, context};

/// Resumes between two looks at epoll while coroutines stay runnable.
const RESUMES_PER_POLL: usize = 128;

/// Settings of a [`Runtime`].
///
/// Build one from the default: `RuntimeConfig { stack_size: 128 * 1024, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Usable bytes of each coroutine stack; a guard page comes on top. Default 64 KiB.
    ///
    /// Below 32 KiB a panic that prints a backtrace overflows the stack, and an overflow
    /// hits the guard page and kills the process with `SIGSEGV` (after a message on
    /// stderr saying so). Deep recursion needs more.
    pub stack_size: usize,
    /// Most coroutines alive at once (running, parked, or waiting without a stack for
    /// input on an idle connection), and most coroutine stacks in existence (the live
    /// coroutines' plus idle pooled ones). Default 30,000.
    ///
    /// Each stack is two kernel mappings and Linux allows `vm.max_map_count` (65530 by
    /// default) per process, shared with everything else the process maps, so about
    /// 32,000 is the ceiling; spawning past this cap returns [`SpawnError::AtCapacity`].
    /// Scale further with more processes.
    pub max_coroutines: usize,
    /// Most finished coroutines' stacks kept for reuse (their touched pages stay
    /// resident). Default 1,024. More are unmapped a batch at a time when the loop has
    /// nothing to run, not in the burst of work that freed them.
    pub max_idle_stacks: usize,
    /// Readiness events taken from epoll per poll. Default 1,024.
    pub events_capacity: usize,
    /// A coroutine that keeps the thread longer than this between two switches is
    /// reported (`log::warn!`, target `mixserve::rt::stall`) and counted in
    /// [`stall_count`](super::stall_count). Default 100 ms; `None` turns the detector
    /// off (it then reads no clock).
    pub stall_threshold: Option<Duration>,
    /// Wake-up moderation: when nearly every peer takes at least ten times this long to
    /// send its next request, a loop that ran dry after finding work sleeps this long
    /// (plus the thread's timer slack, 50 µs by default) before it looks at epoll
    /// again, rather than blocking and being woken by the next arrival. Requests then
    /// gather and are answered in one batch: under many busy keep-alive connections
    /// that costs the clients fewer wake-ups and raises throughput (c=1000 hello,
    /// +10 %). A peer that comes back faster turns it off, so it adds at most about a
    /// tenth to a connection's round trip. Naps are counted in
    /// [`Runtime::nap_count`] and [`nap_count`](super::nap_count) (and, under a server,
    /// in its live status as `mixserve_loop_naps_total`). Default 100 µs; `None` turns
    /// it off (the loop then always blocks at once).
    pub moderation_nap: Option<Duration>,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            stack_size: 64 * 1024,
            max_coroutines: 30_000,
            max_idle_stacks: 1_024,
            events_capacity: 1_024,
            stall_threshold: Some(Duration::from_millis(100)),
            moderation_nap: Some(Duration::from_micros(100)),
        }
    }
}

/// A single-threaded scheduler of stackful coroutines with a mio reactor and timers.
///
/// Create one per thread, [`spawn`](Runtime::spawn) the first coroutines, then
/// [`run`](Runtime::run) until they have all finished (or a [`RuntimeHandle`] stops it).
/// A `Runtime` is `!Send`; its coroutines never leave its thread.
///
/// # Dropping
///
/// Dropping a runtime whose coroutines have not finished (after
/// [`RuntimeHandle::stop`], or without calling `run`) drops each of them: a coroutine
/// that never started just drops its closure; a suspended one is force-unwound, running
/// the destructors on its stack. While that happens, a destructor that parks returns at
/// once ([`IoSource::wait`](super::IoSource::wait) returns an error) and spawning fails
/// with [`SpawnError::ShuttingDown`]. The unwind is not a panic: code that catches
/// unwinds must let it go on (the server's handler boundaries do). Prefer waking
/// coroutines with an error and letting `run` finish them.
///
/// A runtime cannot be sent to another thread:
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<mixserve::rt::Runtime>();
/// ```
pub struct Runtime {
    core: Rc<Core>,
    _not_send: PhantomData<*const ()>,
}

impl Runtime {
    /// Creates a runtime (an epoll instance and an eventfd; stacks are mapped on demand).
    ///
    /// # Errors
    ///
    /// An error when the epoll instance or the eventfd cannot be created.
    pub fn new(config: RuntimeConfig) -> io::Result<Runtime> {
        Ok(Runtime {
            core: Rc::new(Core::new(&config)?),
            _not_send: PhantomData,
        })
    }

    /// Queues a coroutine running `f`; it starts once [`run`](Runtime::run) runs.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] at the configured cap or when a stack cannot be mapped.
    pub fn spawn<F: FnOnce() + 'static>(&self, f: F) -> Result<(), SpawnError> {
        self.core.spawn(f).map(drop)
    }

    /// Runs coroutines until none remain or [`RuntimeHandle::stop`] is called.
    ///
    /// # Errors
    ///
    /// An error when another runtime is already running on this thread, or when epoll
    /// fails.
    pub fn run(&mut self) -> io::Result<()> {
        let _entered = context::enter(&self.core)?;
        if let Err(error) = crate::sys::stack_guard::watch_this_thread() {
            log::warn!("no message on coroutine stack overflow: {error}");
        }
        let core = &*self.core;
        clock::refresh();
        let mut found_work = false;
        loop {
            if core.remote.take_stop() {
                return Ok(());
            }
            core.run_ready(RESUMES_PER_POLL);
            if core.live() == 0 {
                return Ok(());
            }
            // Stacks freed past the pool's size go a batch per quiet turn: a loop that
            // still has some to unmap only looks at epoll before the next batch.
            let trimming = core.run_queue_is_empty() && core.trim_stacks();
            let mut timeout = if trimming {
                Some(Duration::ZERO)
            } else if core.run_queue_is_empty() {
                let next = core.timers.borrow().next_deadline();
                next.map(|deadline| deadline.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if timeout != Some(Duration::ZERO) {
                let moderation = &core.reactor.moderation;
                if let Some(nap) = moderation.nap_before_blocking(clock::now(), found_work, timeout)
                {
                    std::thread::sleep(nap);
                    timeout = Some(Duration::ZERO);
                }
            }
            if timeout != Some(Duration::ZERO) && !core.remote.prepare_to_block() {
                timeout = Some(Duration::ZERO);
            }
            found_work = core.reactor.poll(timeout, |ticket| {
                core.wake(ticket, WakeReason::Woken);
            })?;
            core.drain_remote();
            core.fire_timers(clock::now());
        }
    }

    /// A handle to stop this runtime's loop from another thread.
    pub fn handle(&self) -> RuntimeHandle {
        RuntimeHandle {
            remote: Arc::clone(&self.core.remote),
        }
    }

    /// Live (not yet finished) coroutines.
    pub fn coroutine_count(&self) -> usize {
        self.core.live()
    }

    /// How many times this runtime's loop has napped instead of blocking (see
    /// [`RuntimeConfig::moderation_nap`]).
    pub fn nap_count(&self) -> u64 {
        self.core.reactor.moderation.naps()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.core.remote.close();
        // Also on a coroutine of another runtime, whose state comes back afterwards.
        let borrowed = context::enter_for_teardown(&self.core);
        self.core.tear_down();
        drop(borrowed);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("coroutines", &self.core.live())
            .field("registered_fds", &self.core.reactor.registered())
            .field("timers", &self.core.timers.borrow().len())
            .finish()
    }
}

/// Stops a [`Runtime`]'s loop from any thread.
#[derive(Debug, Clone)]
pub struct RuntimeHandle {
    remote: Arc<Remote>,
}

impl RuntimeHandle {
    /// Makes [`Runtime::run`] return soon, leaving unfinished coroutines suspended
    /// (a later `run` continues them; dropping the runtime unwinds them). A stop
    /// requested while the loop is not running makes the next `run` return at once.
    pub fn stop(&self) {
        self.remote.request_stop();
    }
}
