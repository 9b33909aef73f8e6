//! [`StackLabel`]: who runs on a coroutine stack, in words a fault handler can read.
//!
//! The label names the coroutine in the stack-overflow message (written from a signal
//! handler, see `stack_guard`) and in the stall warning. `Scheduled` sets it on every
//! request ("connection from PEER, METHOD PATH"), so setting it is cheap: the bytes are
//! joined in a local buffer and stored 8 to an atomic word, with the length 0 meanwhile,
//! so a fault in the middle of a rewrite (on the same thread, the only one that writes
//! it) prints no label rather than a torn one. Reading it is async-signal-safe.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, compiler_fence};

/// Words of a label.
const WORDS: usize = 14;

/// Bytes of a label kept (a longer one is cut).
pub(crate) const LABEL_MAX: usize = WORDS * 8;

/// A label of at most [`LABEL_MAX`] bytes, in atomics (it lives in a static table).
#[derive(Debug)]
pub(crate) struct StackLabel {
    /// Bytes in use; 0 while the words are rewritten.
    len: AtomicUsize,
    /// The bytes in native order, 8 to a word.
    words: [AtomicU64; WORDS],
}

impl StackLabel {
    /// An empty label.
    pub(crate) const fn new() -> StackLabel {
        StackLabel {
            len: AtomicUsize::new(0),
            words: [const { AtomicU64::new(0) }; WORDS],
        }
    }

    /// Sets the label to `label`, cut to [`LABEL_MAX`] bytes.
    pub(crate) fn set(&self, label: fmt::Arguments<'_>) {
        let mut buffer = Truncating::new();
        let _ = fmt::write(&mut buffer, label);
        self.store(&buffer);
    }

    /// Sets the label to `parts` joined, cut to [`LABEL_MAX`] bytes: no formatting
    /// machinery, for a label set on every request.
    pub(crate) fn set_parts(&self, parts: &[&str]) {
        let mut buffer = Truncating::new();
        for part in parts {
            buffer.push(part.as_bytes());
        }
        self.store(&buffer);
    }

    /// Empties the label.
    pub(crate) fn clear(&self) {
        self.len.store(0, Ordering::Release);
    }

    /// Copies the label into `bytes` and returns its length; async-signal-safe.
    pub(crate) fn read(&self, bytes: &mut [u8; LABEL_MAX]) -> usize {
        let len = self.len.load(Ordering::Acquire).min(LABEL_MAX);
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(&self.words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        len
    }

    /// The label as text (a character cut at the bound shows as U+FFFD).
    pub(crate) fn to_string_lossy(&self) -> String {
        let mut bytes = [0; LABEL_MAX];
        let len = self.read(&mut bytes);
        String::from_utf8_lossy(&bytes[..len]).into_owned()
    }

    /// Stores the words holding `buffer`'s bytes, the length 0 meanwhile: a fault
    /// handler interrupting this thread sees the old label, none, or the new one.
    fn store(&self, buffer: &Truncating) {
        self.len.store(0, Ordering::Relaxed);
        compiler_fence(Ordering::Release);
        let words = buffer.len.div_ceil(8);
        let chunks = buffer.bytes.chunks_exact(8);
        for (word, chunk) in self.words.iter().zip(chunks).take(words) {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(chunk);
            word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        }
        self.len.store(buffer.len, Ordering::Release);
    }
}

/// A label being joined in a fixed buffer that drops what does not fit.
struct Truncating {
    bytes: [u8; LABEL_MAX],
    len: usize,
}

impl Truncating {
    fn new() -> Truncating {
        Truncating {
            bytes: [0; LABEL_MAX],
            len: 0,
        }
    }

    fn push(&mut self, text: &[u8]) {
        let take = text.len().min(LABEL_MAX - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&text[..take]);
        self.len += take;
    }
}

impl fmt::Write for Truncating {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cut_at_the_bound() {
        let label = StackLabel::new();
        assert_eq!(label.to_string_lossy(), "");
        label.set(format_args!("{}", "x".repeat(500)));
        assert_eq!(label.to_string_lossy(), "x".repeat(LABEL_MAX));
        let path = format!("/{}", "p".repeat(200));
        label.set_parts(&["connection from 127.0.0.1:9, ", "GET", " ", &path]);
        let whole = format!("connection from 127.0.0.1:9, GET {path}");
        assert_eq!(label.to_string_lossy(), whole[..LABEL_MAX]);
        let exact = "y".repeat(LABEL_MAX);
        label.set_parts(&[&exact, "z"]);
        assert_eq!(label.to_string_lossy(), exact);
        // Cut inside a two-byte character: the half left over is replaced.
        let cut = format!("{}é", "y".repeat(LABEL_MAX - 1));
        label.set_parts(&[&cut]);
        assert_eq!(label.to_string_lossy(), format!("{}\u{fffd}", &exact[1..]));
    }

    #[test]
    fn a_shorter_label_replaces_a_longer_one_whole() {
        let label = StackLabel::new();
        label.set_parts(&["connection from 127.0.0.1:9, ", "POST", " ", "/a/long/path"]);
        label.set_parts(&["connection from 127.0.0.1:9, ", "GET", " ", "/"]);
        assert_eq!(
            label.to_string_lossy(),
            "connection from 127.0.0.1:9, GET /"
        );
        let mut bytes = [0; LABEL_MAX];
        let len = label.read(&mut bytes);
        assert_eq!(&bytes[..len], b"connection from 127.0.0.1:9, GET /");
        label.set(format_args!("job {}", 42));
        assert_eq!(label.to_string_lossy(), "job 42");
        label.clear();
        assert_eq!(label.read(&mut bytes), 0);
    }
}
