//! `Wire` through serde and postcard (feature `serde`).
//!
//! postcard was chosen over bincode: its wire format is specified and stable since 1.0
//! (a value written by one version decodes in the next), it is compact (variable-length
//! integers, no field names), it has no configuration to get wrong on one side, and it
//! is actively maintained, while bincode's maintainers have stopped its development.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Wire, WireError};

/// Makes any `Serialize + DeserializeOwned` type a [`Wire`], encoded with postcard.
///
/// ```
/// use mixserve::sync::{Channel, wire::Serde};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Job {
///     id: u64,
///     url: String,
///     tags: Vec<String>,
/// }
///
/// let jobs: Channel<Serde<Job>> = Channel::new();
/// jobs.send(Serde(Job { id: 1, url: "/a".into(), tags: vec![] })).unwrap();
/// assert_eq!(jobs.try_recv().unwrap().0.url, "/a");
/// ```
///
/// To use the type itself (`Channel<Job>`), implement `Wire` for it with
/// [`wire_with_serde!`](crate::wire_with_serde).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serde<T>(pub T);

impl<T: Serialize + DeserializeOwned> Wire for Serde<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode(&self.0, out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes).map(Serde)
    }
}

/// Appends `value` encoded with postcard; what [`wire_with_serde!`](crate::wire_with_serde)
/// calls.
///
/// # Panics
///
/// When `value`'s `Serialize` implementation fails (postcard itself cannot fail when
/// writing into a `Vec`); a derived implementation never does.
pub fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let bytes = std::mem::take(out);
    *out = postcard::to_extend(value, bytes).expect("a Serialize implementation failed");
}

/// Decodes a postcard value that must fill `bytes` exactly.
///
/// # Errors
///
/// When the bytes are not a `T` or bytes remain after it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| WireError::new(format!("postcard: {e}")))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(WireError::new(format!(
            "{} bytes left after a postcard value",
            rest.len()
        )))
    }
}

/// Implements [`Wire`] for types that implement `Serialize` and `DeserializeOwned`,
/// encoding them with postcard (feature `serde`).
///
/// ```
/// use mixserve::sync::Broadcast;
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Line {
///     from: String,
///     text: String,
/// }
/// mixserve::wire_with_serde!(Line);
///
/// let room: Broadcast<Line> = Broadcast::new();
/// assert_eq!(room.send(Line { from: "ann".into(), text: "hi".into() }).unwrap(), 0);
/// ```
#[macro_export]
macro_rules! wire_with_serde {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::sync::Wire for $t {
            fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                $crate::sync::wire::serde_encode(self, out);
            }
            fn decode(bytes: &[u8]) -> ::std::result::Result<Self, $crate::sync::WireError> {
                $crate::sync::wire::serde_decode(bytes)
            }
        }
    )+};
}

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        id: u64,
        name: String,
        tags: Vec<String>,
        retry: Option<u8>,
    }

    #[test]
    fn serde_values_round_trip() {
        round_trip(Serde(Job {
            id: 9,
            name: "résumé".into(),
            tags: vec!["a".into(), "b".into()],
            retry: Some(2),
        }));
        round_trip(Serde((1u8, String::from("x"))));
    }

    #[test]
    fn trailing_or_short_bytes_are_errors() {
        let mut bytes = Vec::new();
        Serde(7u64).encode(&mut bytes);
        bytes.push(0);
        assert!(Serde::<u64>::decode(&bytes).is_err());
        assert!(Serde::<String>::decode(&[5, b'a']).is_err());
    }
}
