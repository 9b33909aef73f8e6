//! Errors of the shared objects, one small type per operation (crossbeam style).

use crate::sync::wire::WireError;

/// Why a wait ([`Broadcast::wait`](crate::sync::Broadcast::wait),
/// [`Channel::recv`](crate::sync::Channel::recv)) ended without a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The server is shutting down (or the object was closed): answer and finish.
    #[error("the server is shutting down")]
    Closed,
    /// The timeout passed first.
    #[error("timed out")]
    TimedOut,
    /// No other connection can run while this one waits (the `Iterative` model), so
    /// the wait could never end. HTTP handlers answer `503`.
    #[error("no other connection can run while this one waits (iterative model)")]
    NoOtherWorker,
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

impl From<WireError> for WaitError {
    fn from(error: WireError) -> WaitError {
        WaitError::Hub(error.to_string())
    }
}

/// Why a send did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The object was closed by a shutting-down server.
    #[error("the server is shutting down")]
    Closed,
    /// The hub could not be reached.
    #[error("shared-object hub: {0}")]
    Hub(String),
}

/// Why [`Channel::try_recv`](crate::sync::Channel::try_recv) returned no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
