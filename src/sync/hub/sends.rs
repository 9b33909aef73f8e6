//! [`SendLog`]: the replies to recent sends, by id, so a send a worker retries (its
//! first try timed out, or its connection failed after the hub acted) is answered
//! again without acting twice — also when the retry arrives while the first try is
//! still being served (a slow Redis, a read that held both copies).

use std::collections::{HashMap, VecDeque};

use mio::Token;

/// How many recent sends are remembered. A worker retries at once, so only the
/// latest few per worker matter; this covers many workers retrying together.
pub(crate) const REMEMBERED: usize = 4096;

/// Retries of one send in progress that wait for its reply. A worker retries after a
/// timeout, so a few is a slow Redis; more is a broken worker, whose further copies
/// get no reply (they time out and come again, to find the reply logged).
const WAITING_PER_SEND: usize = 64;

/// What the log knows of a send that arrives.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen<'a> {
    /// Never seen: serve it (it is now in progress).
    New,
    /// Being served: the connection that asked again gets the reply too.
    InProgress,
    /// Served: its reply.
    Answered(&'a [u8]),
}

/// Recent sends: their replies, or the connections waiting for one; oldest forgotten
/// first.
#[derive(Debug, Default)]
pub(crate) struct SendLog {
    replies: HashMap<u64, Vec<u8>>,
    /// Sends in progress, with the connections whose retries wait for the reply.
    waiting: HashMap<u64, Vec<Token>>,
    order: VecDeque<u64>,
}

impl SendLog {
    /// Looks send `id` (from `token`) up, and starts or joins it.
    pub(crate) fn begin(&mut self, id: u64, token: Token) -> Seen<'_> {
        if self.replies.contains_key(&id) {
            return Seen::Answered(&self.replies[&id]);
        }
        if let Some(tokens) = self.waiting.get_mut(&id) {
            if tokens.len() < WAITING_PER_SEND {
                tokens.push(token);
            }
            return Seen::InProgress;
        }
        self.waiting.insert(id, Vec::new());
        self.remember(id);
        Seen::New
    }

    /// Remembers the reply to send `id`; returns the connections whose retries wait
    /// for it too.
    pub(crate) fn record(&mut self, id: u64, frame: &[u8]) -> Vec<Token> {
        let waiting = self.waiting.remove(&id);
        if self.replies.insert(id, frame.to_vec()).is_none() && waiting.is_none() {
            self.remember(id);
        }
        waiting.unwrap_or_default()
    }

    fn remember(&mut self, id: u64) {
        self.order.push_back(id);
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
                self.waiting.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_waiting_for_one_send_are_bounded() {
        let mut log = SendLog::default();
        assert_eq!(log.begin(1, Token(7)), Seen::New);
        for _ in 0..1000 {
            assert_eq!(log.begin(1, Token(8)), Seen::InProgress);
        }
        assert_eq!(log.record(1, b"one").len(), WAITING_PER_SEND);
    }

    #[test]
    fn remembers_recent_sends_only() {
        let mut log = SendLog::default();
        assert_eq!(log.begin(1, Token(7)), Seen::New);
        assert!(log.record(1, b"one").is_empty());
        assert_eq!(log.begin(1, Token(8)), Seen::Answered(&b"one"[..]));
        for id in 2..=REMEMBERED as u64 + 1 {
            log.begin(id, Token(7));
            log.record(id, b"x");
        }
        assert_eq!(log.begin(1, Token(7)), Seen::New);
        assert!(log.replies.len() <= REMEMBERED);
        assert!(log.order.len() <= REMEMBERED);
    }

    #[test]
    fn a_retry_while_the_send_is_served_waits_for_its_reply() {
        let mut log = SendLog::default();
        assert_eq!(log.begin(5, Token(1)), Seen::New);
        assert_eq!(log.begin(5, Token(2)), Seen::InProgress);
        assert_eq!(log.begin(5, Token(1)), Seen::InProgress);
        assert_eq!(log.record(5, b"done"), vec![Token(2), Token(1)]);
        assert_eq!(log.begin(5, Token(3)), Seen::Answered(&b"done"[..]));
        assert_eq!(log.order.len(), 1);
    }
}
