//! mixserve (crate doc written with the core).
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

pub mod rt;
mod sys;
mod sync;
pub mod conn;
pub mod handler;
pub mod http;
pub mod scgi;

pub use conn::{Conn, PeerAddr};
pub use handler::{Handler, MakeHandler};
