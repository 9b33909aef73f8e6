//! [`SendLog`]: the replies to recent sends, by id, so a send a worker retries on a
//! fresh connection (its first connection failed after the hub acted) is answered again
//! without acting twice.

use std::collections::{HashMap, VecDeque};

/// How many recent sends are remembered. A worker retries at once, so only the
/// latest few per worker matter; this covers many workers retrying together.
pub(crate) const REMEMBERED: usize = 4096;

/// Recent sends' replies, oldest forgotten first.
#[derive(Debug, Default)]
pub(crate) struct SendLog {
    replies: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
}

impl SendLog {
    /// The reply already given to send `id`, if it is remembered.
    pub(crate) fn reply_to(&self, id: u64) -> Option<&[u8]> {
        self.replies.get(&id).map(Vec::as_slice)
    }

    /// Remembers the reply to send `id`, forgetting the oldest beyond [`REMEMBERED`].
    pub(crate) fn record(&mut self, id: u64, frame: &[u8]) {
        if self.replies.insert(id, frame.to_vec()).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_sends_only() {
        let mut log = SendLog::default();
        log.record(1, b"one");
        assert_eq!(log.reply_to(1), Some(&b"one"[..]));
        assert_eq!(log.reply_to(2), None);
        for id in 2..=REMEMBERED as u64 + 1 {
            log.record(id, b"x");
        }
        assert_eq!(log.reply_to(1), None);
        assert_eq!(log.replies.len(), REMEMBERED);
    }
}
