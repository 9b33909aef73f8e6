//! Decoded query strings and form bodies: [`Params`], [`Request::query_params`],
//! [`Request::form`] and [`Request::decoded_path`].

use std::borrow::Cow;

use super::Request;

/// `name=value` pairs from a query string or an `application/x-www-form-urlencoded`
/// body, percent-decoded (`+` is a space), in the order sent. A name may repeat.
///
/// ```
/// use mixserve::http::Request;
///
/// let req = Request::new("GET", "/search?q=caf%C3%A9+au+lait&tag=a&tag=b&empty");
/// let params = req.query_params();
/// assert_eq!(params.get("q"), Some("café au lait"));
/// assert_eq!(params.get_all("tag").collect::<Vec<_>>(), ["a", "b"]);
/// assert_eq!(params.get("empty"), Some(""));
/// assert_eq!(params.get("missing"), None);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// Every name and value, decoded, one after the other.
    text: String,
    /// Where each pair's name and value end in `text`; a name starts where the pair
    /// before it ended. Compact on purpose: a form body of empty pairs (`=&=&…`) costs
    /// 8 bytes of this per byte received, not the ~24 of a `(String, String)` per pair
    /// (two bytes) and a heap allocation per name.
    ends: Vec<(usize, usize)>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Params {
    /// Decodes `name=value&...` (invalid UTF-8 after decoding is replaced with U+FFFD).
    pub fn parse(encoded: &[u8]) -> Params {
        // The table is sized up front to the pairs there are (empty pieces between
        // `&`s are none), so it never doubles past them. The text grows if decoding
        // lengthens it (a byte that is not UTF-8 becomes a three-byte U+FFFD).
        let pairs = encoded
            .split(|&byte| byte == b'&')
            .filter(|piece| !piece.is_empty())
            .count();
        let mut params = Params {
            text: String::with_capacity(encoded.len()),
            ends: Vec::with_capacity(pairs),
        };
        for (name, value) in form_urlencoded::parse(encoded) {
            params.text.push_str(&name);
            let name_end = params.text.len();
            params.text.push_str(&value);
            params.ends.push((name_end, params.text.len()));
        }
        params
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|&(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |&(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// Every pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, end)| {
            let pair = (&self.text[start..name_end], &self.text[name_end..end]);
            start = end;
            pair
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Encodes pairs as `name=value&...` (for building URLs and form bodies).
    pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }
}

impl IntoIterator for Params {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl Request {
    /// The query string's pairs, decoded (empty when there is no `?`).
    pub fn query_params(&self) -> Params {
        Params::parse(self.query().unwrap_or("").as_bytes())
    }

    /// The body's pairs, decoded, when the body is a form: its `Content-Type` is
    /// `application/x-www-form-urlencoded` (or absent, with a body). `None` for
    /// another content type.
    ///
    /// ```
    /// use mixserve::http::Request;
    ///
    /// let req = Request::new("POST", "/say")
    ///     .with_header("Content-Type", "application/x-www-form-urlencoded")
    ///     .with_body("who=ann&text=hello%2C+world");
    /// let form = req.form().unwrap();
    /// assert_eq!(form.get("text"), Some("hello, world"));
    /// ```
    pub fn form(&self) -> Option<Params> {
        // A value that is not UTF-8 is present, and no form's.
        let is_form = match self.headers().get_bytes("Content-Type") {
            Some(value) => value.split(|&b| b == b';').next().is_some_and(|t| {
                t.trim_ascii()
                    .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
            }),
            None => !self.body().is_empty(),
        };
        is_form.then(|| Params::parse(self.body()))
    }

    /// The path with percent-escapes decoded (`/a%20b` is `/a b`; `+` stays `+`).
    /// Invalid UTF-8 after decoding is replaced with U+FFFD. Check the result for
    /// `..` before using it as a file name.
    pub fn decoded_path(&self) -> Cow<'_, str> {
        percent_encoding::percent_decode_str(self.path()).decode_utf8_lossy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_form_decode() {
        let req = Request::new("GET", "/a%20b/c?x=1%262&y=%E2%82%AC&x=3");
        assert_eq!(req.decoded_path(), "/a b/c");
        let params = req.query_params();
        assert_eq!(params.get("x"), Some("1&2"));
        assert_eq!(params.get("y"), Some("€"));
        assert_eq!(params.len(), 3);
        assert!(Request::new("GET", "/").query_params().is_empty());
    }

    #[test]
    fn bad_escapes_do_not_fail() {
        let req = Request::new("GET", "/%ff%zz?%ff=%&a");
        assert_eq!(req.decoded_path(), "/\u{fffd}%zz");
        let params = req.query_params();
        assert_eq!(params.get("\u{fffd}"), Some("%"));
        assert_eq!(params.get("a"), Some(""));
    }

    #[test]
    fn a_form_of_empty_pairs_costs_a_bounded_multiple_of_its_size() {
        let units: [&[u8]; 4] = [b"=&", b"a&", b"%41=%42&", b"\xff&"];
        for unit in units {
            let body = unit.repeat(100_000);
            let params = Params::parse(&body);
            assert_eq!(params.len(), 100_000, "{unit:?}");
            let held = params.text.capacity()
                + params.ends.capacity() * std::mem::size_of::<(usize, usize)>();
            assert!(
                held <= 11 * body.len() + 64,
                "{unit:?}: {held} bytes for {}",
                body.len()
            );
        }
        // Empty pieces are no pairs, and reserve nothing.
        let ampersands = Params::parse(&[b'&'; 100_000]);
        assert!(ampersands.is_empty());
        assert_eq!(ampersands.ends.capacity(), 0);
        let params = Params::parse(b"a=1&&b=&=c&a=2");
        let pairs: Vec<_> = params.iter().collect();
        assert_eq!(pairs, [("a", "1"), ("b", ""), ("", "c"), ("a", "2")]);
        assert_eq!(params.get_all("a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(
            format!("{params:?}"),
            r#"[("a", "1"), ("b", ""), ("", "c"), ("a", "2")]"#
        );
        let owned: Vec<(String, String)> = params.clone().into_iter().collect();
        assert_eq!(owned[3], ("a".to_owned(), "2".to_owned()));
        assert_eq!(params, Params::parse(b"a=1&b=&=c&a=2"));
    }

    #[test]
    fn form_needs_a_form_content_type() {
        let json = Request::new("POST", "/")
            .with_header("Content-Type", "application/json")
            .with_body("a=1");
        assert_eq!(json.form(), None);
        let not_utf8 = Request::new("POST", "/")
            .with_header("Content-Type", &b"text/\xe9"[..])
            .with_body("a=1");
        assert_eq!(not_utf8.form(), None);
        let bare = Request::new("POST", "/").with_body("a=1");
        assert_eq!(bare.form().unwrap().get("a"), Some("1"));
        let charset = Request::new("POST", "/")
            .with_header(
                "Content-Type",
                "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            )
            .with_body("a=%41");
        assert_eq!(charset.form().unwrap().get("a"), Some("A"));
        assert_eq!(
            Params::encode([("q", "a b&c"), ("é", "")]),
            "q=a+b%26c&%C3%A9="
        );
    }
}
