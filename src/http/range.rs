//! The `Range` request header (RFC 9110 §14.2), for one byte range of a file.
//!
//! Only `bytes` ranges are understood. A header this module cannot read, or one that
//! asks for several ranges, is ignored: the whole file is sent with `200`, which RFC
//! 9110 allows (a multipart answer is not worth its complexity for a static server).

/// What to send for a `Range` header against a body of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// No usable range: the whole body, `200`.
    Whole,
    /// `len` bytes from `start`: `206` with `Content-Range`.
    Part {
        /// First byte sent.
        start: u64,
        /// Bytes sent, at least one.
        len: u64,
    },
    /// A range wholly past the end: `416` with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Decides what `header` (the `Range` field's value, if any) asks of a `size`-byte body.
pub(crate) fn parse_range(header: Option<&str>, size: u64) -> RangeAnswer {
    let Some(header) = header else {
        return RangeAnswer::Whole;
    };
    let Some((unit, specs)) = header.trim().split_once('=') else {
        return RangeAnswer::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Whole;
    }
    let mut specs = specs.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeAnswer::Whole;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last N bytes.
        return match digits(last) {
            Some(0) => RangeAnswer::Unsatisfiable,
            // RFC 9110 §14.1.1: satisfiable even on an empty body, yet no part of it
            // can be named (`bytes 0--1/0`): the whole, empty body it is.
            Some(_) if size == 0 => RangeAnswer::Whole,
            Some(suffix) => {
                let len = suffix.min(size);
                RangeAnswer::Part {
                    start: size - len,
                    len,
                }
            }
            None => RangeAnswer::Whole,
        };
    }
    let Some(start) = digits(first) else {
        return RangeAnswer::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match digits(last) {
            Some(end) if end >= start => end,
            _ => return RangeAnswer::Whole,
        }
    };
    if start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    let end = end.min(size - 1);
    RangeAnswer::Part {
        start,
        len: end - start + 1,
    }
}

/// A non-empty run of ASCII digits; a number past `u64` counts as `u64::MAX` (a range
/// end that large just means "to the end").
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, len: u64) -> RangeAnswer {
        RangeAnswer::Part { start, len }
    }

    #[test]
    fn one_range_of_each_form() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100), part(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), part(90, 10));
        assert_eq!(parse_range(Some("bytes=-10"), 100), part(90, 10));
        assert_eq!(parse_range(Some("bytes=95-200"), 100), part(95, 5));
        assert_eq!(parse_range(Some("bytes=-500"), 100), part(0, 100));
        assert_eq!(parse_range(Some(" Bytes = 5-5 "), 100), part(5, 1));
        assert_eq!(
            parse_range(Some("bytes=0-99999999999999999999999"), 100),
            part(0, 100)
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=200-300"), 100),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=-0"), 100),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAnswer::Unsatisfiable);
    }

    #[test]
    fn a_suffix_of_an_empty_body_is_the_whole_of_it() {
        assert_eq!(parse_range(Some("bytes=-5"), 0), RangeAnswer::Whole);
        assert_eq!(parse_range(Some("bytes=-0"), 0), RangeAnswer::Unsatisfiable);
    }

    #[test]
    fn ignored_headers_mean_the_whole_body() {
        for header in [
            "",
            "bytes",
            "items=0-5",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=0-1,5-6",
            "bytes=-",
            "bytes=1-2-3",
        ] {
            assert_eq!(
                parse_range(Some(header), 100),
                RangeAnswer::Whole,
                "{header:?}"
            );
        }
        assert_eq!(parse_range(None, 100), RangeAnswer::Whole);
    }
}
