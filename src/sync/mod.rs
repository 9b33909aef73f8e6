//! Model-aware shared objects: [`Channel`] and [`Broadcast`], and the single place that
//! decides how to block (`park`).

pub(crate) mod park;
