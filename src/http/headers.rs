//! [`Headers`]: an ordered list of header fields with case-insensitive lookup.

/// Header fields in the order received, with case-insensitive lookup by name.
///
/// Names are kept as sent; values are kept as bytes, since HTTP allows bytes that are
/// not UTF-8. [`get`](Headers::get) gives a value as `&str` when it is valid UTF-8.
///
/// ```
/// use mixserve::http::Headers;
///
/// let mut headers = Headers::new();
/// headers.append("Content-Type", "text/plain");
/// headers.append("Accept", "a");
/// headers.append("accept", "b");
/// assert_eq!(headers.get("content-type"), Some("text/plain"));
/// assert_eq!(headers.get_all("ACCEPT").count(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every name and value, back to back, in arrival order: one allocation for all
    /// the fields of a request, not two per field.
    bytes: Vec<u8>,
    /// Where each field lies in `bytes`.
    ends: Vec<FieldEnds>,
}

/// Where one field's name and value lie in [`Headers::bytes`]: the name is
/// `name_start..name_end`, the value `name_end..value_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldEnds {
    name_start: u32,
    name_end: u32,
    value_end: u32,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Makes room for `fields` more fields of `bytes` bytes in all.
    pub(crate) fn reserve(&mut self, bytes: usize, fields: usize) {
        self.bytes.reserve(bytes);
        self.ends.reserve(fields);
    }

    /// Removes every field for the list to be filled again, keeping its storage where
    /// it is at most `max_bytes` bytes of names and values and `max_fields` fields (a
    /// larger store is freed, so a list kept for reuse stays small).
    pub(crate) fn clear_keeping(&mut self, max_bytes: usize, max_fields: usize) {
        if self.bytes.capacity() > max_bytes {
            self.bytes = Vec::new();
        }
        if self.ends.capacity() > max_fields {
            self.ends = Vec::new();
        }
        self.bytes.clear();
        self.ends.clear();
    }

    /// Bytes of storage held, for names and values and for where each field lies.
    #[cfg(test)]
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * std::mem::size_of::<FieldEnds>()
    }

    /// Adds a field at the end, keeping any earlier field of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.append_raw(&name.into(), &value.into());
    }

    /// [`append`](Self::append) from borrowed bytes (copied once, into the list).
    /// Heads and trailers are limited far below 4 GiB; a list that would pass that
    /// keeps its first fields and drops the rest.
    pub(crate) fn append_raw(&mut self, name: &str, value: &[u8]) {
        let name_start = self.bytes.len();
        let (Ok(start), Ok(name_end), Ok(value_end)) = (
            u32::try_from(name_start),
            u32::try_from(name_start + name.len()),
            u32::try_from(name_start + name.len() + value.len()),
        ) else {
            return;
        };
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(value);
        self.ends.push(FieldEnds {
            name_start: start,
            name_end,
            value_end,
        });
    }

    /// The first value of the field `name` (any case), if present and valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The first value of the field `name` (any case), as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    /// Every value of the field `name` (any case), in arrival order.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        // Lengths first: most fields are passed over without touching their bytes.
        self.ends.iter().filter_map(move |ends| {
            let (start, middle, end) = (
                ends.name_start as usize,
                ends.name_end as usize,
                ends.value_end as usize,
            );
            if middle.saturating_sub(start) != name.len() {
                return None;
            }
            let field = self.bytes.get(start..middle)?;
            if !field.eq_ignore_ascii_case(name.as_bytes()) {
                return None;
            }
            self.bytes.get(middle..end)
        })
    }

    /// True if a field `name` (any case) is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_all(name).next().is_some()
    }

    /// True if some value of field `name` lists `token` (comma-separated, any case),
    /// as in `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|value| lists_token(value, token))
    }

    /// Every field, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Names went in as `&str`, so they come out whole.
        self.fields()
            .map(|(name, value)| (std::str::from_utf8(name).unwrap_or_default(), value))
    }

    /// Number of fields (a repeated name counts each time).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each field's name and value, as bytes.
    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.ends.iter().map(|ends| {
            let (start, middle, end) = (
                ends.name_start as usize,
                ends.name_end as usize,
                ends.value_end as usize,
            );
            (
                self.bytes.get(start..middle).unwrap_or_default(),
                self.bytes.get(middle..end).unwrap_or_default(),
            )
        })
    }
}

/// True if the comma-separated list `value` holds `token` (any case, spaces around
/// items ignored), as `keep-alive, Upgrade` holds `upgrade`.
pub(crate) fn lists_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_names_and_bytes() {
        let mut headers = Headers::new();
        headers.reserve(64, 3);
        headers.append_raw("Host", b"a");
        headers.append("X-Empty", "");
        headers.append_raw("x-bin", &[0xff, b'v']);
        headers.append_raw("HOST", b"b");
        let all: Vec<(&str, &[u8])> = headers.iter().collect();
        assert_eq!(
            all,
            [
                ("Host", &b"a"[..]),
                ("X-Empty", b""),
                ("x-bin", &[0xff, b'v']),
                ("HOST", b"b"),
            ]
        );
        assert_eq!(headers.get_all("host").collect::<Vec<_>>(), [b"a", b"b"]);
        assert_eq!(headers.get("x-empty"), Some(""));
        assert_eq!(headers.get("x-bin"), None, "not UTF-8");
        assert_eq!(headers.get_bytes("X-BIN"), Some(&[0xff, b'v'][..]));
        assert_eq!(headers.len(), 4);
    }
}
