//! Errors of the runtime's operations.

use std::io;

/// Why a coroutine could not be spawned.
///
/// Spawning never crashes the process: at the cap or when the kernel refuses a stack the
/// caller gets this error and may shed the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The runtime already holds [`RuntimeConfig::max_coroutines`] stacks.
    ///
    /// [`RuntimeConfig::max_coroutines`]: super::RuntimeConfig::max_coroutines
    #[error("coroutine limit reached ({max} stacks); shed load or run more processes")]
    AtCapacity {
        /// The configured limit.
        max: usize,
    },
    /// `mmap`/`mprotect` of a new stack failed (out of memory or `vm.max_map_count`).
    #[error("could not allocate a coroutine stack: {0}")]
    StackAllocation(#[source] io::Error),
    /// [`spawn`](super::spawn) was called with no runtime running on this thread.
    #[error("no coroutine runtime is running on this thread")]
    NoRuntime,
    /// The runtime is being dropped and accepts no new coroutines.
    #[error("the coroutine runtime is shutting down")]
    ShuttingDown,
}
