//! A response's header fields: checked once when added, so that writing them on every
//! response is a copy, not a second pass over each byte.

use std::fmt;

use super::headers::lists_token;

/// A header field's name or value: the crate's own are `&'static str`.
pub(crate) type Field = std::borrow::Cow<'static, str>;

/// A response's header fields, in order. The first is held in place, the rest in a
/// `Vec`: a response with one field (the `Content-Type` of
/// [`Response::text`](super::Response::text)) costs no allocation for it.
///
/// Every field held is valid (a token for a name, no control characters but tab in
/// a value): [`push`](Self::push) drops the others with a warning. It also notes what
/// the writer would otherwise look for in every field of every response.
#[derive(Default)]
pub(crate) struct Fields {
    /// The first field, if any.
    first: Option<(Field, Field)>,
    /// The fields after the first.
    rest: Vec<(Field, Field)>,
    /// What the fields say that the writer must know.
    marks: Marks,
}

/// What [`Fields`] hold that changes the head the writer adds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marks {
    /// A `Date` field: the writer adds none.
    pub(crate) date: bool,
    /// A `Server` field: the writer adds none.
    pub(crate) server: bool,
    /// A field the writer sets itself (`Connection`, `Content-Length`,
    /// `Transfer-Encoding`): it must skip those.
    pub(crate) framing: bool,
    /// A `Connection` field with the `close` token: the connection closes after this
    /// response.
    pub(crate) close: bool,
}

/// What iterating over [`Fields`] yields each field as.
type AsStrs = for<'a> fn(&'a (Field, Field)) -> (&'a str, &'a str);

impl Fields {
    /// Adds a field at the end, or drops it with a warning if it is not valid: a
    /// name that is not a token, or a value with a line break (response splitting)
    /// or another control character. The crate's own fields (both halves
    /// `&'static str`) are known valid and not scanned.
    pub(crate) fn push(&mut self, name: Field, value: Field) {
        let ours = matches!((&name, &value), (Field::Borrowed(_), Field::Borrowed(_)));
        debug_assert!(!ours || valid_field(&name, &value), "{name:?}: {value:?}");
        if !ours && !valid_field(&name, &value) {
            log::warn!("dropping response header field {name:?} with invalid characters");
            return;
        }
        self.marks.note(&name, &value);
        if self.first.is_none() {
            self.first = Some((name, value));
        } else {
            self.rest.push((name, value));
        }
    }

    /// What the fields say that the writer must know.
    pub(crate) fn marks(&self) -> Marks {
        self.marks
    }

    /// Every field's name and value, in order.
    pub(crate) fn iter(&self) -> <&Fields as IntoIterator>::IntoIter {
        self.into_iter()
    }
}

impl Marks {
    /// Notes what one valid field says.
    fn note(&mut self, name: &str, value: &str) {
        match name.len() {
            4 => self.date |= name.eq_ignore_ascii_case("date"),
            6 => self.server |= name.eq_ignore_ascii_case("server"),
            _ if is_framing_field(name) => {
                self.framing = true;
                self.close |= name.eq_ignore_ascii_case("connection")
                    && lists_token(value.as_bytes(), "close");
            }
            _ => {}
        }
    }
}

/// A list of `(name, value)` pairs, as the `Vec` of fields it replaced printed.
impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.first.iter().chain(&self.rest))
            .finish()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::iter::Chain<
            std::option::Iter<'a, (Field, Field)>,
            std::slice::Iter<'a, (Field, Field)>,
        >,
        AsStrs,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let as_strs: AsStrs = |(name, value)| (name.as_ref(), value.as_ref());
        self.first.iter().chain(&self.rest).map(as_strs)
    }
}

/// Fields the writer sets itself.
pub(crate) fn is_framing_field(name: &str) -> bool {
    // The lengths tell the three apart before any byte is compared.
    match name.len() {
        10 => name.eq_ignore_ascii_case("connection"),
        14 => name.eq_ignore_ascii_case("content-length"),
        17 => name.eq_ignore_ascii_case("transfer-encoding"),
        _ => false,
    }
}

/// A field name must be a token; a value must not hold control characters (no CR/LF,
/// so no response splitting), tabs excepted.
fn valid_field(name: &str, value: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| TOKEN_BYTES[usize::from(b)]) && valid_value(value)
}

/// Whether `value` may be sent as a field value: no control characters but tab.
pub(crate) fn valid_value(value: &str) -> bool {
    value.bytes().all(is_value_byte)
}

/// Whether `byte` may stand in a field value (or a chunk extension): not a control
/// character, tab excepted.
pub(crate) fn is_value_byte(byte: u8) -> bool {
    byte == b'\t' || (byte >= 0x20 && byte != 0x7f)
}

/// `TOKEN_BYTES[b]`: whether byte `b` is a `tchar` of RFC 9110 §5.6.2 (one lookup per
/// byte of every response field name).
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        let mut fields = Fields::default();
        for (name, value) in pairs {
            fields.push(
                Field::Owned(name.to_string()),
                Field::Owned(value.to_string()),
            );
        }
        fields
    }

    #[test]
    fn invalid_fields_are_dropped_when_added() {
        let held = fields(&[
            ("X-Ok", "fine\tvalue"),
            ("X-Split", "a\r\nSet-Cookie: evil=1"),
            ("Bad Name", "x"),
            ("", "x"),
            ("X-Del", "a\u{7f}"),
            ("X-Last", "kept"),
        ]);
        let names: Vec<&str> = held.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["X-Ok", "X-Last"]);
    }

    #[test]
    fn marks_say_what_the_writer_must_know() {
        assert_eq!(fields(&[("X-A", "1")]).marks(), Marks::default());
        let marks = fields(&[("DATE", "x"), ("server", "y")]).marks();
        assert!(marks.date && marks.server && !marks.framing && !marks.close);
        let marks = fields(&[("Content-Length", "3")]).marks();
        assert!(marks.framing && !marks.close);
        let marks = fields(&[("connection", "Upgrade, CLOSE ")]).marks();
        assert!(marks.framing && marks.close);
        let marks = fields(&[("Connection", "closed")]).marks();
        assert!(marks.framing && !marks.close);
        // A dropped field marks nothing.
        assert_eq!(fields(&[("Date", "a\nb")]).marks(), Marks::default());
    }
}
