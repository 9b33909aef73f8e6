//! How reading a request can fail: an answer the client gets, or a silent close.

use std::io;

/// A request refused with an error status; the connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reject {
    /// The status sent, e.g. `400`.
    pub(crate) status: u16,
    /// The short text body sent, saying what was wrong.
    pub(crate) message: &'static str,
}

impl Reject {
    pub(crate) const fn new(status: u16, message: &'static str) -> Reject {
        Reject { status, message }
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Answer with an error status, then close.
    Reject(Reject),
    /// Close without answering: the peer went away, or an idle connection timed out.
    Close,
    /// A socket error worth reporting to the server.
    Io(io::Error),
}

impl From<Reject> for Failure {
    fn from(reject: Reject) -> Failure {
        Failure::Reject(reject)
    }
}

/// Sorts an I/O error met while reading a request: `timeout` is what a timed-out read
/// means at this point; a vanished peer is a quiet close; anything else is reported.
pub(crate) fn read_failure(error: io::Error, timeout: Failure) -> Failure {
    match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timeout,
        kind if peer_gone(kind) => Failure::Close,
        _ => Failure::Io(error),
    }
}

/// True for errors that only mean the peer closed or reset the connection.
pub(crate) fn peer_gone(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}
