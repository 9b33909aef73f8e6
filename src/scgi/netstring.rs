//! Reading the SCGI header block: a netstring (`<length>:<bytes>,`) holding
//! NUL-separated name/value pairs, `CONTENT_LENGTH` first and `SCGI` = `1`.

use std::collections::HashSet;
use std::io::BufRead;

/// Most digits accepted in the netstring's length.
const MAX_LENGTH_DIGITS: usize = 8;

/// Why a header block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The stream ended before the block did: there is nobody to answer.
    Ended,
    /// Not a netstring: a bad length (a leading zero, too many digits) or no comma.
    Netstring,
    /// A length over the limit on the head.
    TooLong,
    /// Not NUL-separated pairs, a repeated name, or a missing or bad required variable.
    Variables,
}

impl Malformed {
    /// The answer to the refusal (the connection closes after it); `None`: close
    /// without one.
    pub(crate) fn answer(self) -> Option<(u16, &'static str)> {
        match self {
            Malformed::Ended => None,
            Malformed::Netstring => Some((400, "malformed SCGI netstring")),
            Malformed::TooLong => Some((431, "SCGI header block too large")),
            Malformed::Variables => Some((400, "malformed SCGI variables")),
        }
    }
}

/// Reads the netstring from `reader` into `block` (at most `limit` bytes of content).
/// `Ok(Err(_))` is input to refuse; `Err(_)` an I/O error (a timeout among them).
pub(crate) fn read_netstring<R: BufRead>(
    reader: &mut R,
    limit: usize,
    block: &mut Vec<u8>,
) -> std::io::Result<Result<(), Malformed>> {
    let mut length: usize = 0;
    let mut digits = 0;
    loop {
        let byte = match reader.fill_buf()?.first() {
            Some(&byte) => byte,
            None => return Ok(Err(Malformed::Ended)),
        };
        reader.consume(1);
        match byte {
            // A netstring's length has no leading zero (but "0:" is the empty string).
            b'0'..=b'9' if digits == 1 && length == 0 => return Ok(Err(Malformed::Netstring)),
            b'0'..=b'9' if digits < MAX_LENGTH_DIGITS => {
                length = length * 10 + usize::from(byte - b'0');
                digits += 1;
            }
            // Past 99,999,999 bytes: over any head limit, whatever follows.
            b'0'..=b'9' => return Ok(Err(Malformed::TooLong)),
            b':' if digits > 0 => break,
            _ => return Ok(Err(Malformed::Netstring)),
        }
    }
    if length > limit {
        return Ok(Err(Malformed::TooLong));
    }
    block.clear();
    block.resize(length + 1, 0);
    match reader.read_exact(block) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(Err(Malformed::Ended));
        }
        Err(error) => return Err(error),
    }
    if block.pop() != Some(b',') {
        return Ok(Err(Malformed::Netstring));
    }
    Ok(Ok(()))
}

/// CGI variables as `(name, value)` pairs, in the order sent.
pub(crate) type Variables<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The CGI variables of a header block, checked: pairs, unique names, `CONTENT_LENGTH`
/// first and all digits, `SCGI` equal to `1`. Returns the pairs and the body length.
///
/// One exception to unique names: a header field the client sent more than once. nginx
/// before 1.23 passes each line as its own `HTTP_*` variable (Debian 12's 1.22 does),
/// and the application sees them as repeated fields, as it would over HTTP. Not `Host`:
/// two of those are a `400` over HTTP too.
pub(crate) fn parse_variables(block: &[u8]) -> Result<(Variables<'_>, u64), Malformed> {
    let bad = Malformed::Variables;
    let fields = block.strip_suffix(b"\0").ok_or(bad)?;
    let mut items = fields.split(|&b| b == 0);
    let mut pairs = Variables::new();
    let mut names = HashSet::new();
    while let Some(name) = items.next() {
        let value = items.next().ok_or(bad)?;
        let may_repeat = name.starts_with(b"HTTP_") && name != b"HTTP_HOST";
        if name.is_empty() || (!names.insert(name) && !may_repeat) {
            return Err(bad);
        }
        pairs.push((name, value));
    }
    let length = match pairs.first() {
        Some((b"CONTENT_LENGTH", value)) => {
            crate::http::seams::parse_length(value).map_err(|_| bad)?
        }
        _ => return Err(bad),
    };
    if !pairs
        .iter()
        .any(|&(name, value)| name == b"SCGI" && value == b"1")
    {
        return Err(bad);
    }
    Ok((pairs, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netstring(input: &[u8]) -> Result<Vec<u8>, Malformed> {
        let mut block = Vec::new();
        read_netstring(&mut &input[..], 100, &mut block)
            .unwrap()
            .map(|()| block)
    }

    #[test]
    fn reads_netstrings() {
        assert_eq!(netstring(b"3:abc,rest"), Ok(b"abc".to_vec()));
        assert_eq!(netstring(b"0:,"), Ok(Vec::new()));
        for bad in [&b"3:abc;"[..], b":abc,", b"x:", b"03:abc,"] {
            assert_eq!(netstring(bad), Err(Malformed::Netstring), "{bad:?}");
        }
        for long in [&b"101:"[..], b"123456789:"] {
            assert_eq!(netstring(long), Err(Malformed::TooLong), "{long:?}");
        }
        for cut in [&b"3:ab"[..], b"3", b""] {
            assert_eq!(netstring(cut), Err(Malformed::Ended), "{cut:?}");
        }
    }

    #[test]
    fn checks_variables() {
        let ok = b"CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00";
        let (pairs, length) = parse_variables(ok).unwrap();
        assert_eq!((pairs.len(), length), (3, 27));
        let repeated = b"CONTENT_LENGTH\x000\x00SCGI\x001\x00HTTP_X\x00a\x00HTTP_X\x00b\x00";
        assert_eq!(parse_variables(repeated).map(|(p, _)| p.len()), Ok(4));
        for bad in [
            &b"SCGI\x001\x00CONTENT_LENGTH\x000\x00"[..],
            b"CONTENT_LENGTH\x000\x00",
            b"CONTENT_LENGTH\x00x\x00SCGI\x001\x00",
            b"CONTENT_LENGTH\x000\x00SCGI\x001",
            b"CONTENT_LENGTH\x000\x00SCGI\x001\x00SCGI\x001\x00",
            b"CONTENT_LENGTH\x000\x00SCGI\x00",
            b"CONTENT_LENGTH\x000\x00SCGI\x001\x00HTTP_HOST\x00a\x00HTTP_HOST\x00b\x00",
            b"CONTENT_LENGTH\x000\x00SCGI\x001\x00REQUEST_URI\x00/\x00REQUEST_URI\x00/\x00",
        ] {
            assert_eq!(
                parse_variables(bad).map(|_| ()),
                Err(Malformed::Variables),
                "{bad:?}"
            );
        }
    }
}
