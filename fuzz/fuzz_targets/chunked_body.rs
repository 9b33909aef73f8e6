//! The chunked decoder: never panics, never returns a body over the limit, and decodes
//! the same body and trailers — consuming the same bytes, so the next request starts at
//! the same place — however the bytes are split across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mixserve::fuzzing::chunked_body;

fuzz_target!(|data: &[u8]| {
    let whole = chunked_body(&[data]);
    if let Ok((_, _, consumed)) = &whole {
        assert!(*consumed <= data.len());
    }
    for at in 0..=data.len() {
        let (a, b) = data.split_at(at);
        assert_eq!(chunked_body(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(chunked_body(&bytes), whole, "byte by byte");
});
