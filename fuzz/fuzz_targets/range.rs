//! The `Range` header against a body of any size: never panics, and a part it grants
//! lies wholly inside the body and is not empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mixserve::fuzzing::range;

fuzz_target!(|data: &[u8]| {
    let (size, header) = match data.split_first_chunk::<8>() {
        Some((size, header)) => (u64::from_le_bytes(*size), header),
        None => (0, data),
    };
    for size in [size, size % 1024, 0, 1, u64::MAX] {
        if let Some(Some((start, len))) = range(header, size) {
            assert!(len >= 1, "an empty part of {size} bytes");
            let end = start.checked_add(len).expect("start + len overflows");
            assert!(end <= size, "bytes {start}..{end} of a {size}-byte body");
        }
    }
});
