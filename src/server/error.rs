//! [`StartError`]: why a server could not start.

use std::io;

/// A configuration or start-up failure, reported by [`ServerBuilder::build`](crate::ServerBuilder::build).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (the message says which setting and why).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No address was given to bind.
    #[error("no address to listen on: call bind, bind_unix or listener")]
    NoAddress,
    /// The address could not be resolved.
    #[error("cannot resolve {addr:?}: {source}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// Binding or listening failed (address in use, permission denied …).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// Another system call failed at start-up.
    #[error("start-up failed: {0}")]
    Io(#[from] io::Error),
}
