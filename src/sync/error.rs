//! Errors of the shared objects, one small type per operation (crossbeam style).

use crate::sync::wire::WireError;

/// Why a wait ([`Broadcast::wait`](crate::sync::Broadcast::wait),
/// [`Channel::recv`](crate::sync::Channel::recv)) ended without a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The server is shutting down (or the object was closed): answer and finish.
    #[error("the server is shutting down")]
    Closed,
    /// The timeout passed first.
    #[error("timed out")]
    TimedOut,
    /// Waiting would take the last worker that could serve the request releasing the
    /// wait (under `Iterative`, the only one; under `Preforked` with
    /// [`Accept::ReusePort`](crate::mixin::Accept::ReusePort), the last of the worker
    /// that owns the queue that request may land in), so it might never end. HTTP
    /// handlers answer `503`. The fields name the model that refused and its limit.
    #[error("{}", no_other_worker_message(model, *max_waiting))]
    NoOtherWorker {
        /// The model that refused, as [`MixIn::name`](crate::MixIn::name) gives it.
        model: &'static str,
        /// How many handlers it lets wait at once (workers − 1).
        max_waiting: usize,
    },
    /// The hub (the master process that owns the object) could not be reached or
    /// answered nonsense.
    #[error("shared-object hub: {0}")]
    Hub(String),
    /// The client of the connection this wait was made for closed or reset it, so
    /// nobody is left to answer: finish without writing. Only waits made inside a
    /// watch ([`Conn::watch`](crate::Conn::watch); the HTTP and SCGI adapters watch
    /// every request) end this way.
    #[error("the client closed its connection")]
    ClientGone,
}

/// The text of [`WaitError::NoOtherWorker`]. With no handler let wait, it must hold
/// for one iterative server and for a preforked pool of iterative workers under
/// `Accept::ReusePort` alike: the pool has other workers, but the request that ends
/// the wait may be queued on this worker's own listener, which only this worker takes.
fn no_other_worker_message(model: &str, max_waiting: usize) -> String {
    if max_waiting == 0 {
        format!(
            "the {model} model lets no handler wait here: the request that would end \
             this wait may be queued behind it, with no other worker to take it"
        )
    } else {
        format!(
            "the {model} model lets at most {max_waiting} handlers wait at once, keeping a \
             worker free for the request that releases them; this wait would take it"
        )
    }
}

impl From<WireError> for WaitError {
    fn from(error: WireError) -> WaitError {
        WaitError::Hub(error.to_string())
    }
}

/// Why a send did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The object was closed by a shutting-down server.
    #[error("the server is shutting down")]
    Closed,
    /// The hub could not be reached, or did not confirm the send (it was asked twice;
    /// a repeated send is never queued twice).
    #[error("shared-object hub: {0}")]
    Hub(String),
    /// The value's wire form is larger than a shared object carries between
    /// processes, through the hub or Redis
    /// ([`MAX_VALUE_BYTES`](crate::sync::hub::MAX_VALUE_BYTES)); nothing was sent.
    #[error(
        "a value of {size} bytes is larger than the {limit} bytes a shared object carries \
         between processes"
    )]
    TooLarge {
        /// The encoded value's size.
        size: usize,
        /// The hub's limit.
        limit: usize,
    },
}

/// Why [`Channel::try_recv`](crate::sync::Channel::try_recv) returned no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing is queued now.
    #[error("the channel is empty")]
    Empty,
    /// The object was closed.
    #[error("the channel is closed")]
    Closed,
    /// The hub could not be reached.
    #[error("shared-object hub: {0}")]
    Hub(String),
}
