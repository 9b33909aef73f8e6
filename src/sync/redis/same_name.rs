//! The objects of one name in one process: each `Redis::broadcast(name)` or
//! `Redis::channel(name)` call makes a new one, and every one takes part in the
//! protocol under that name.

use std::sync::{Arc, Weak};

/// Every object made with one name, held weakly (a dropped object leaves).
pub(crate) struct SameName<T: ?Sized>(Vec<Weak<T>>);

impl<T: ?Sized> Default for SameName<T> {
    fn default() -> Self {
        SameName(Vec::new())
    }
}

impl<T: ?Sized> SameName<T> {
    /// Adds `object`, forgetting those already dropped.
    pub(crate) fn join(&mut self, object: Weak<T>) {
        self.0.retain(|other| other.strong_count() > 0);
        self.0.push(object);
    }

    /// The objects still alive, in the order they joined.
    pub(crate) fn live(&self) -> Vec<Arc<T>> {
        self.0.iter().filter_map(Weak::upgrade).collect()
    }
}
