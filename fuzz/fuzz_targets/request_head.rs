//! The request head reader: never panics, stays within its limits, and decides the same
//! (where the head ends, what it says, or which status refuses it) however the bytes
//! are split across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mixserve::fuzzing::{HeadOutcome, request_head};

fuzz_target!(|data: &[u8]| {
    let whole = request_head(&[data]);
    if let HeadOutcome::Complete(used, _) = &whole {
        assert!(*used <= data.len());
    }
    for at in 0..=data.len() {
        let (a, b) = data.split_at(at);
        assert_eq!(request_head(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(request_head(&bytes), whole, "byte by byte");
});
