//! mixserve (crate doc written with the core).
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

pub mod conn;
pub mod handler;
pub mod http;
pub mod mixin;
pub mod rt;
pub mod scgi;
pub mod server;
pub mod sync;
mod sys;

pub use conn::{Conn, PeerAddr};
pub use handler::{Handler, MakeHandler};
pub use mixin::{Forking, Iterative, MixIn, Preforked, Prethreaded, Threading};
pub use server::{
    Context, Hooks, ListenAddr, Listener, Server, ServerBuilder, ShutdownHandle, StartError,
};
