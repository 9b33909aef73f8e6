//! The waiters a Redis `Broadcast` release takes, as the pub/sub protocol sees them:
//! a batch set aside for one generation, released, failed, put back when its release
//! never comes, or answered when its server closes; and the release of those put back,
//! should it come late.

use std::time::Instant;

use crate::sync::WaitError;

/// The waiters of one `Broadcast` in this process, as the protocol sees them.
pub(crate) trait Waiters: Send + Sync {
    /// How many wait now.
    fn count(&self) -> usize;
    /// Takes every current waiter off the list, into a batch.
    fn detach(&self) -> Box<dyn Batch>;
}

/// What runs outside the bridge's lock.
pub(crate) type Then = Box<dyn FnOnce() + Send>;

/// Waiters detached for one generation.
pub(crate) trait Batch: Send {
    /// How many.
    fn len(&self) -> usize;
    /// Releases them all with the value in `bytes` (an error if it does not decode).
    fn release(self: Box<Self>, bytes: &[u8]);
    /// Answers them all with `error`.
    fn fail(self: Box<Self>, error: WaitError);
    /// Takes out the waiters of server `scope` (it is closing), into a batch of their
    /// own.
    fn take_scope(&mut self, scope: usize) -> Box<dyn Batch>;
    /// Puts the waiters back on their lists (their release never came). Returns what
    /// is left to do outside the bridge's lock (a worker's wait whose deadline passed
    /// is answered `TimedOut`), and the release of those put back, should it come late.
    fn restore(self: Box<Self>, now: Instant) -> (Then, Box<dyn Late>);
}

/// Waiters put back after their release did not come in time: a release that comes
/// after all still reaches those that wait on.
pub(crate) trait Late: Send {
    /// Releases those still waiting with the value in `bytes`.
    fn release(self: Box<Self>, bytes: &[u8]);
}

/// The batches of several objects with one name, released together.
pub(crate) struct Batches(pub(crate) Vec<Box<dyn Batch>>);

impl Batch for Batches {
    fn len(&self) -> usize {
        self.0.iter().map(|batch| batch.len()).sum()
    }

    fn release(self: Box<Self>, bytes: &[u8]) {
        self.0.into_iter().for_each(|batch| batch.release(bytes));
    }

    fn fail(self: Box<Self>, error: WaitError) {
        self.0
            .into_iter()
            .for_each(|batch| batch.fail(error.clone()));
    }

    fn take_scope(&mut self, scope: usize) -> Box<dyn Batch> {
        let taken = self.0.iter_mut().map(|batch| batch.take_scope(scope));
        Box::new(Batches(taken.collect()))
    }

    fn restore(self: Box<Self>, now: Instant) -> (Then, Box<dyn Late>) {
        let (thens, lates): (Vec<Then>, Vec<Box<dyn Late>>) =
            self.0.into_iter().map(|batch| batch.restore(now)).unzip();
        let then: Then = Box::new(move || thens.into_iter().for_each(|then| then()));
        (then, Box::new(Lates(lates)))
    }
}

/// The late releases of several objects with one name.
struct Lates(Vec<Box<dyn Late>>);

impl Late for Lates {
    fn release(self: Box<Self>, bytes: &[u8]) {
        self.0.into_iter().for_each(|late| late.release(bytes));
    }
}
