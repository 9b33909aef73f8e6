//! Blocking a caller on a bridge reply: the caller parks in its own model (a thread
//! blocks, a coroutine parks and its loop runs others) until the bridge's driver
//! delivers the result from wherever it runs.

use std::sync::Arc;
use std::time::Instant;

use crate::sync::waiters::Slot;
use crate::sync::watch;

/// Starts an operation with a completion callback and parks until it completes or
/// `deadline` passes (`None` then). The watched client leaving does not end it: every
/// caller (a send, a count, a `try_recv`) is a call whose effect in Redis happens
/// anyway, so giving up early would lose what it took or report a send that was made
/// as failed. Its deadline bounds it.
pub(crate) fn block_on<R: Send + 'static>(
    deadline: Instant,
    start: impl FnOnce(Box<dyn FnOnce(R) + Send>),
) -> Option<R> {
    watch::unwatched(|| {
        let slot: Arc<Slot<R>> = Slot::new();
        let filler = Arc::clone(&slot);
        start(Box::new(move |result| filler.fill(Ok(result))));
        match slot.wait(Some(deadline)) {
            Ok(Ok(result)) => Some(result),
            _ => None,
        }
    })
}
