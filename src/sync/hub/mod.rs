//! The hub: shared objects across the processes of a process-based model.
//!
//! A `Broadcast` or `Channel` lives in the process that created it (the master). A
//! worker forked from it that uses the object sends a request over a Unix socket to
//! the master's hub ([`HubServer`]), which the master serves from its own event loop;
//! waits become pending replies there. The worker's side (`client`) blocks in the
//! worker's own model — a scheduled worker parks the coroutine, not the process.
//!
//! This is the seam for other backends (a broker across machines): an object asks
//! `client::call` only when it is not at home.

pub(crate) mod client;
pub(crate) mod protocol;
mod server;

pub(crate) use server::RemoteReply;
pub use server::{HubServer, HubStatus};

/// In a freshly forked worker: forget connections inherited from the parent.
pub(crate) fn after_fork_in_child() {
    client::forget_pool();
    crate::sync::redis::driver::after_fork_in_child();
}
