//! The hub: shared objects across the processes of a process-based model.
//!
//! A `Broadcast` or `Channel` lives in the process that created it (the master). A
//! worker forked from it that uses the object sends a request over a Unix socket to
//! the master's hub ([`HubServer`]), which the master serves from its own event loop;
//! waits become pending replies there. The worker's side (`client`) blocks in the
//! worker's own model — a scheduled worker parks the coroutine, not the process.
//!
//! Connections: a scheduled loop multiplexes all its coroutines' calls over one
//! connection (`mux`: replies carry the call's id, a call is withdrawn by id), so the
//! master holds one fd per worker loop however many waits are pending; a plain thread
//! (`threading`, `prethreaded`, `iterative`, `forking` workers) uses one pooled
//! connection per call in progress, as a blocked thread is the unit of concurrency
//! there anyway.
//!
//! This is the seam for other backends (a broker across machines): an object asks
//! `client::call` only when it is not at home.
//!
//! Trust: only the master's own live workers, running as its user, may connect (see
//! `peer`); a value crossing the hub is at most [`MAX_VALUE_BYTES`] encoded; a
//! `Channel` value reaches exactly one worker that acknowledged it (a receiver that
//! dies first gives it back), and a retried send is not sent twice.

#[cfg(test)]
mod bounds_tests;
pub(crate) mod client;
#[cfg(test)]
mod load_tests;
mod mux;
mod peer;
pub(crate) mod protocol;
#[cfg(test)]
mod redis_tests;
mod reply;
mod sends;
mod server;
mod status;
#[cfg(test)]
mod tests;

pub use protocol::MAX_VALUE_BYTES;
pub(crate) use reply::{RemoteReply, encode_shared};
pub use server::HubServer;
pub use status::HubStatus;

/// In a freshly forked worker: forget connections inherited from the parent.
pub(crate) fn after_fork_in_child() {
    client::forget_pool();
    crate::sync::redis::driver::after_fork_in_child();
}
