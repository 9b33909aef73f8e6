//! The SCGI header block (a netstring of NUL-separated variables): never panics, stays
//! within its limit, and reads the same variables and body length — consuming the same
//! bytes — however the bytes are split across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mixserve::fuzzing::scgi_head;

fuzz_target!(|data: &[u8]| {
    let whole = scgi_head(&[data]);
    if let Ok((_, _, consumed)) = &whole {
        assert!(*consumed <= data.len());
    }
    for at in 0..=data.len() {
        let (a, b) = data.split_at(at);
        assert_eq!(scgi_head(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(scgi_head(&bytes), whole, "byte by byte");
});
