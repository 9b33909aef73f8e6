//! Blocking a caller on a bridge reply: the caller parks in its own model (a thread
//! blocks, a coroutine parks and its loop runs others) until the bridge's driver
//! delivers the result from wherever it runs.

use std::sync::Arc;
use std::time::Instant;

use crate::sync::waiters::Slot;

/// Starts an operation with a completion callback and parks until it completes or
/// `deadline` passes (`None` then).
pub(crate) fn block_on<R: Send + 'static>(
    deadline: Instant,
    start: impl FnOnce(Box<dyn FnOnce(R) + Send>),
) -> Option<R> {
    let slot: Arc<Slot<R>> = Slot::new();
    let filler = Arc::clone(&slot);
    start(Box::new(move |result| filler.fill(Ok(result))));
    match slot.wait(Some(deadline)) {
        Ok(Ok(result)) => Some(result),
        _ => None,
    }
}
