//! Where one RESP value ends in the bytes read so far, without building it: the bound
//! on what Redis (or whatever answers on its port) may make this process hold. A value
//! is parsed (by `redis::parse_redis_value`) only once it is complete, and it is refused
//! before that if it says or grows past [`MAX_REPLY_BYTES`], nests deeper than
//! [`MAX_DEPTH`] or holds more than [`MAX_ELEMENTS`] elements.
//!
//! The scan starts over at each read; it skips a bulk string's payload by its length, so
//! its cost is the number of elements, which the bound keeps small, plus the line still
//! arriving, which [`MAX_LINE`] keeps short (a line of megabytes dripping in would be
//! searched again at every read).

use redis::Value;

use crate::sync::hub::MAX_VALUE_BYTES;

/// The largest reply accepted: a value the size the crate's objects send at most (a
/// `Channel` value, a `Broadcast` payload) with room for its framing and channel name.
pub(crate) const MAX_REPLY_BYTES: usize = MAX_VALUE_BYTES + 64 * 1024;
/// The most elements a reply holds over all its levels (the crate's replies hold a
/// handful: a pub/sub message is three).
pub(crate) const MAX_ELEMENTS: usize = 1024;
/// The deepest nesting accepted.
pub(crate) const MAX_DEPTH: usize = 8;
/// The longest reply line (a type byte, a simple string, an error message or a
/// number): Redis's are far shorter; payloads come as bulk strings, skipped by length.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// The first value in `buf` is complete and `len` bytes long, is still arriving, or is
/// refused (with why).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Complete(usize),
    Partial,
}

/// Takes the first value out of `buf` once it is complete; `None` while it arrives.
pub(crate) fn take_value(buf: &mut Vec<u8>) -> Result<Option<Value>, String> {
    match scan(buf)? {
        Frame::Partial => Ok(None),
        Frame::Complete(len) => {
            let value = redis::parse_redis_value(&buf[..len]).map_err(|e| e.to_string());
            buf.drain(..len);
            value.map(Some)
        }
    }
}

/// Finds the end of the first value in `buf`.
pub(crate) fn scan(buf: &[u8]) -> Result<Frame, String> {
    let mut at = 0;
    // Values still owed at each open level.
    let mut owed: Vec<usize> = Vec::new();
    let mut elements = 0usize;
    loop {
        let Some((kind, number, next)) = header(buf, at)? else {
            return Ok(Frame::Partial);
        };
        at = next;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'=' | b'!' => {
                // A null bulk string is `$-1`.
                if let Ok(len) = usize::try_from(number) {
                    let end = at.saturating_add(len).saturating_add(2);
                    if end > MAX_REPLY_BYTES {
                        return Err(too_big(format!("a {len}-byte string")));
                    }
                    if buf.len() < end {
                        return Ok(Frame::Partial);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err("a bulk string without its CRLF".into());
                    }
                    at = end;
                }
            }
            b'*' | b'~' | b'>' | b'%' => {
                // A null array is `*-1`; a map holds two values per entry.
                let count = usize::try_from(number).unwrap_or(0);
                let count = if kind == b'%' {
                    count.saturating_mul(2)
                } else {
                    count
                };
                elements = elements.saturating_add(count);
                if elements > MAX_ELEMENTS {
                    return Err(format!("a reply of more than {MAX_ELEMENTS} elements"));
                }
                if count > 0 {
                    if owed.len() == MAX_DEPTH {
                        return Err(format!("a reply nested deeper than {MAX_DEPTH}"));
                    }
                    owed.push(count);
                    continue;
                }
            }
            other => return Err(format!("a reply of unknown type {:?}", other as char)),
        }
        // One value finished: close every level it completes.
        loop {
            match owed.last_mut() {
                None => return Ok(Frame::Complete(at)),
                Some(1) => {
                    owed.pop();
                }
                Some(left) => {
                    *left -= 1;
                    break;
                }
            }
        }
    }
}

/// The type byte, the line's number (0 for a line that is not one) and where the line
/// ends, for the line starting at `at`; `None` while its CRLF has not arrived.
fn header(buf: &[u8], at: usize) -> Result<Option<(u8, i64, usize)>, String> {
    let rest = buf.get(at..).unwrap_or_default();
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        if rest.len() > MAX_LINE || buf.len() > MAX_REPLY_BYTES {
            return Err(format!("a reply line past {MAX_LINE} bytes"));
        }
        return Ok(None);
    };
    if end + 1 > MAX_LINE {
        return Err(format!("a reply line past {MAX_LINE} bytes"));
    }
    if at + end + 1 > MAX_REPLY_BYTES {
        return Err(too_big("a long line".into()));
    }
    if end < 2 || rest[end - 1] != b'\r' {
        return Err("a reply line without its type or CRLF".into());
    }
    let kind = rest[0];
    let number = match kind {
        b'$' | b'=' | b'!' | b'*' | b'~' | b'>' | b'%' => std::str::from_utf8(&rest[1..end - 1])
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or("a length that is not a number")?,
        _ => 0,
    };
    Ok(Some((kind, number, at + end + 1)))
}

/// Why a reply past [`MAX_REPLY_BYTES`] is refused.
fn too_big(what: String) -> String {
    format!("a reply past {MAX_REPLY_BYTES} bytes ({what})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_line_is_bounded_before_its_end_arrives() {
        let mut line = vec![b'+'; MAX_LINE];
        assert_eq!(scan(&line), Ok(Frame::Partial));
        line.push(b'x');
        assert!(scan(&line).is_err(), "a line past the bound");
        let mut long = vec![b'-'; MAX_LINE + 10];
        long.extend_from_slice(b"\r\n");
        assert!(scan(&long).is_err(), "a complete line past the bound");
        // A payload past the line bound is no line: a bulk string's length skips it.
        let mut bulk = format!("${}\r\n", MAX_LINE * 2).into_bytes();
        bulk.resize(bulk.len() + MAX_LINE * 2, b'v');
        bulk.extend_from_slice(b"\r\n");
        assert_eq!(scan(&bulk), Ok(Frame::Complete(bulk.len())));
    }

    #[test]
    fn complete_values_end_where_they_end() {
        let cases: &[(&[u8], usize)] = &[
            (b"+OK\r\n", 5),
            (b"-ERR no\r\n", 9),
            (b":42\r\n+next\r\n", 5),
            (b"$3\r\nabc\r\n", 9),
            (b"$-1\r\n", 5),
            (b"*-1\r\n", 5),
            (b"*0\r\n", 4),
            (b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n:1\r\n", 32),
            (b"*2\r\n*1\r\n:1\r\n:2\r\n", 16),
            (b"%1\r\n+k\r\n+v\r\n", 12),
        ];
        for &(bytes, len) in cases {
            assert_eq!(scan(bytes), Ok(Frame::Complete(len)), "{bytes:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_value_is_partial() {
        let value = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        for cut in 0..value.len() {
            assert_eq!(scan(&value[..cut]), Ok(Frame::Partial), "cut at {cut}");
        }
        assert_eq!(scan(value), Ok(Frame::Complete(value.len())));
    }

    #[test]
    fn oversized_deep_wide_and_garbled_replies_are_refused() {
        let refused: &[&[u8]] = &[
            b"$1099511627776\r\n",
            b"*100000\r\n",
            b"*1000\r\n*1000\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"$3\r\nabcd\r\n",
            b"$x\r\n",
            b"?what\r\n",
            b"+no carriage return\n",
        ];
        for &bytes in refused {
            assert!(scan(bytes).is_err(), "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn a_reply_is_refused_past_the_limit_however_it_grows() {
        // (A line is refused sooner: see the test above.)
        let mut long = vec![b'+'; MAX_REPLY_BYTES - 1];
        long.extend_from_slice(b"\r\n");
        assert!(scan(&long).is_err(), "a line that ends past the limit");
        let largest = MAX_REPLY_BYTES - 2 - format!("${MAX_REPLY_BYTES}\r\n").len();
        let mut bulk = format!("${largest}\r\n").into_bytes();
        bulk.resize(bulk.len() + largest, b'x');
        bulk.extend_from_slice(b"\r\n");
        assert_eq!(scan(&bulk), Ok(Frame::Complete(bulk.len())));
        let header = format!("${}\r\n", largest + 1);
        assert!(scan(header.as_bytes()).is_err(), "refused by its header");
    }
}
