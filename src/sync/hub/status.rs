//! [`HubStatus`]: what the master's model reads of its hub.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counters the master's model reads to decide whether every worker is blocked.
#[derive(Debug, Clone, Default)]
pub struct HubStatus {
    blocked: Arc<AtomicUsize>,
}

impl HubStatus {
    /// The counter the hub keeps.
    pub(crate) fn blocked(&self) -> &AtomicUsize {
        &self.blocked
    }

    /// Worker connections with a wait pending in the hub right now.
    pub fn blocked_clients(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }
}
