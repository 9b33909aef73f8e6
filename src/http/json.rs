//! JSON bodies (feature `serde`): [`Response::json`] and [`Request::json`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Request, Response};

/// A request body that is not the JSON the application expects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The `Content-Type` is present and not JSON (`application/json` or `*+json`).
    #[error("expected a JSON body, got Content-Type {0:?}")]
    NotJson(String),
    /// The body does not parse as the expected type.
    #[error("bad JSON body: {0}")]
    Invalid(#[from] serde_json::Error),
}

impl JsonError {
    /// The answer for the client: `415` for a wrong content type, `400` otherwise.
    pub fn to_response(&self) -> Response {
        let status = match self {
            JsonError::NotJson(_) => 415,
            JsonError::Invalid(_) => 400,
        };
        Response::text(status, format!("{self}\n"))
    }
}

impl Response {
    /// An `application/json` response holding `value`. A value that cannot be
    /// serialized (a map with non-string keys, a failing `Serialize`) gives a `500`.
    ///
    /// ```
    /// use mixserve::http::Response;
    ///
    /// let response = Response::json(200, &serde_json::json!({"waiting": 3}));
    /// assert_eq!(response.header("Content-Type"), Some("application/json"));
    /// assert_eq!(response.body_bytes(), Some(&br#"{"waiting":3}"#[..]));
    /// ```
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::typed(status, "application/json", body),
            Err(error) => {
                log::error!("cannot serialize a JSON response: {error}");
                Response::text(500, "cannot serialize the response\n")
            }
        }
    }
}

impl Request {
    /// Parses the body as JSON into a `T`. A missing `Content-Type` is accepted;
    /// another one than JSON is an error ([`JsonError::to_response`] answers `415`).
    ///
    /// ```
    /// use mixserve::http::{Request, Response};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Say { text: String }
    ///
    /// let req = Request::new("POST", "/say")
    ///     .with_header("Content-Type", "application/json")
    ///     .with_body(r#"{"text": "hi"}"#);
    /// let answer = match req.json::<Say>() {
    ///     Ok(say) => Response::text(200, say.text),
    ///     Err(error) => error.to_response(),
    /// };
    /// assert_eq!(answer.body_bytes(), Some(&b"hi"[..]));
    /// ```
    ///
    /// The parse runs off the coroutine's stack under `scheduled`, so a deeply nested
    /// body cannot overflow it; dropping a deeply nested `serde_json::Value` still
    /// recurses on the handler's own stack (prefer your own types there).
    ///
    /// # Errors
    ///
    /// [`JsonError`] for a non-JSON content type or a body that does not parse.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, JsonError> {
        // Any value present counts, also one that is not UTF-8: taken for absent, it
        // would let a cross-site form post pass for JSON.
        if let Some(content_type) = self.headers().get_bytes("Content-Type") {
            let content_type = String::from_utf8_lossy(content_type);
            let mime = content_type.split(';').next().unwrap_or("").trim();
            let is_json = mime.eq_ignore_ascii_case("application/json")
                || mime.to_ascii_lowercase().ends_with("+json");
            if !is_json {
                return Err(JsonError::NotJson(content_type.into_owned()));
            }
        }
        // serde_json recurses once per nesting level (up to 128): deeper than a 64 KiB
        // coroutine stack allows, so a short hostile body would overflow it. Parse on
        // the loop's own stack, as the head parser does.
        let body = self.body();
        Ok(crate::rt::on_scheduler_stack(|| {
            serde_json::from_slice(body)
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Item {
        id: u32,
    }

    #[test]
    fn bodies_parse_or_answer_an_error() {
        let ok = Request::new("POST", "/").with_body(r#"{"id": 7}"#);
        assert_eq!(ok.json::<Item>().unwrap(), Item { id: 7 });
        let suffix = Request::new("POST", "/")
            .with_header("Content-Type", "application/merge-patch+json")
            .with_body(r#"{"id": 1}"#);
        assert!(suffix.json::<Item>().is_ok());
        let text = Request::new("POST", "/")
            .with_header("Content-Type", "text/plain")
            .with_body(r#"{"id": 7}"#);
        assert_eq!(
            text.json::<Item>().unwrap_err().to_response().status_code(),
            415
        );
        let not_utf8 = Request::new("POST", "/")
            .with_header("Content-Type", &b"text/plain;\xe9"[..])
            .with_body(r#"{"id": 7}"#);
        assert_eq!(
            not_utf8
                .json::<Item>()
                .unwrap_err()
                .to_response()
                .status_code(),
            415
        );
        let bad = Request::new("POST", "/").with_body("{\"id\": ");
        assert_eq!(
            bad.json::<Item>().unwrap_err().to_response().status_code(),
            400
        );
    }

    #[test]
    fn unserializable_values_are_500() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        assert_eq!(Response::json(200, &map).status_code(), 500);
    }
}
