//! mixserve (crate doc written with the core).
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

pub mod rt;
