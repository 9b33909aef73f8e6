//! What the SCGI adapter checks in a variable block before the application sees it:
//! what the HTTP adapter's parser checks of a request head. A front end such as nginx
//! sends only well-formed blocks, but anything that reaches the socket can send any.

use crate::http::HttpConfig;
use crate::http::seams::{is_token_char, is_value_byte};

/// Checks the variables that become the request: a method that is a token, a target
/// and field values with no control characters (a target may hold a space: a front
/// end may pass `PATH_INFO` decoded), header variables named `HTTP_` and token
/// characters other than lower-case letters and `-` (the CGI spelling: so no other
/// spelling of `HTTP_HOST` passes the `Host` check, and no two spellings make two
/// fields of one), at most `max_headers` of them. The refusal's status and reason, if
/// any.
pub(crate) fn check_variables(
    variables: &[(&[u8], &[u8])],
    config: &HttpConfig,
) -> Result<(), (u16, &'static str)> {
    let mut fields = 0;
    for &(name, value) in variables {
        match name {
            b"REQUEST_METHOD" if value.is_empty() || !value.iter().all(|&b| is_token_char(b)) => {
                return Err((400, "malformed REQUEST_METHOD"));
            }
            // Control characters only: a front end may pass `PATH_INFO` decoded (a
            // space in it is a file name's), but CR and LF would split log lines.
            b"REQUEST_URI" | b"SCRIPT_NAME" | b"PATH_INFO" | b"QUERY_STRING"
                if !value.iter().all(|&b| b >= b' ' && b != 0x7f) =>
            {
                return Err((400, "malformed request target"));
            }
            _ => {}
        }
        let Some(field) = name.strip_prefix(b"HTTP_") else {
            continue;
        };
        // One spelling per field: the name is lower-cased and `_` becomes `-`, so a
        // lower-case letter or a `-` would give a second spelling of one field.
        if field.is_empty()
            || !field
                .iter()
                .all(|&b| is_token_char(b) && !b.is_ascii_lowercase() && b != b'-')
        {
            return Err((400, "malformed header variable name"));
        }
        if !value.iter().all(|&b| is_value_byte(b)) {
            return Err((400, "control character in a header variable"));
        }
        fields += 1;
        if fields > config.max_headers {
            return Err((431, "too many header fields"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(variables: &[(&str, &str)]) -> Result<(), (u16, &'static str)> {
        let pairs: Vec<(&[u8], &[u8])> = variables
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        check_variables(&pairs, &HttpConfig::default())
    }

    #[test]
    fn takes_what_nginx_sends() {
        let block = [
            ("CONTENT_LENGTH", "0"),
            ("SCGI", "1"),
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/a?b=c%20d"),
            ("QUERY_STRING", "b=c%20d"),
            ("CONTENT_TYPE", ""),
            ("HTTP_HOST", "example.com"),
            ("HTTP_USER_AGENT", "curl/8.0 (x86_64)\tx"),
            ("HTTP_X_FORWARDED_FOR", "10.0.0.1"),
            ("PATH_INFO", "/my file.txt"),
            ("HTTP_X.TRACE", "1"),
        ];
        assert_eq!(check(&block), Ok(()));
    }

    #[test]
    fn refuses_what_http_would_refuse() {
        for (block, status) in [
            (&[("HTTP_Host", "evil")][..], 400),
            (&[("HTTP_TRANSFER-ENCODING", "chunked")], 400),
            (&[("HTTP_content_length", "99")], 400),
            (&[("HTTP_", "x")], 400),
            (&[("HTTP_X Y", "x")], 400),
            (&[("HTTP_X", "a\r\nb")], 400),
            (&[("REQUEST_METHOD", "G ET")], 400),
            (&[("REQUEST_METHOD", "")], 400),
            (&[("REQUEST_URI", "/a\r\nInjected: 1")], 400),
            (&[("PATH_INFO", "/a\0b")], 400),
        ] {
            assert_eq!(check(block).map_err(|e| e.0), Err(status), "{block:?}");
        }
        let many: Vec<(String, &str)> = (0..101).map(|i| (format!("HTTP_X{i}"), "v")).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(check(&many).map_err(|e| e.0), Err(431));
        assert_eq!(check(&many[..100]), Ok(()));
    }
}
