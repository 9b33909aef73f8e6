//! [`Hooks`]: the socketserver methods a user may override, with their defaults.

use std::io;

use crate::conn::PeerAddr;

/// Server hooks, each with a default (socketserver's "methods that may be overridden").
///
/// The hooks run in the process and thread that accepts connections (`verify_request`,
/// `service_actions`, `handle_timeout`) or that ran the handler (`handle_error`), so they
/// must be `Send + Sync`.
///
/// ```
/// use mixserve::{Hooks, PeerAddr};
///
/// /// Serves only loopback clients.
/// struct LoopbackOnly;
///
/// impl Hooks for LoopbackOnly {
///     fn verify_request(&self, peer: &PeerAddr) -> bool {
///         matches!(peer, PeerAddr::Tcp(addr) if addr.ip().is_loopback())
///     }
/// }
/// ```
pub trait Hooks: Send + Sync + 'static {
    /// Decides whether to serve a newly accepted connection; `false` closes it at once,
    /// as a panic does (logged).
    fn verify_request(&self, peer: &PeerAddr) -> bool {
        let _ = peer;
        true
    }

    /// Reports a handler's error. The default logs it at `warn` level, except the
    /// ordinary ends of a connection (reset, broken pipe, timeout).
    fn handle_error(&self, peer: &PeerAddr, error: &io::Error) {
        use io::ErrorKind::*;
        match error.kind() {
            ConnectionReset | BrokenPipe | TimedOut | UnexpectedEof => {
                log::debug!("connection from {peer}: {error}")
            }
            _ => log::warn!("error serving {peer}: {error}"),
        }
    }

    /// Called by [`Server::handle_request`](crate::Server::handle_request) when no
    /// connection arrived within the server's timeout.
    fn handle_timeout(&self) {}

    /// Called on every turn of the accepting loop (at least every poll interval).
    fn service_actions(&self) {}
}

/// The hooks used when none are given: every default.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultHooks;

impl Hooks for DefaultHooks {}
