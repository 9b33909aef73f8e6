//! [`Wire`]: how a value crosses from a worker process to the hub and back.
//!
//! # Encodings
//!
//! The hub's frame carries the length, so a value at the top level needs no length of
//! its own:
//!
//! | type | bytes |
//! |---|---|
//! | `u8`…`u128`, `i8`…`i128` | fixed width, little-endian |
//! | `usize`, `isize` | as `u64` / `i64` |
//! | `f32`, `f64` | the IEEE 754 bits, little-endian |
//! | `bool` | one byte, `0` or `1` |
//! | `char` | its scalar value as `u32` |
//! | `()` | nothing |
//! | `String` | its UTF-8 bytes, no length |
//! | `Vec<u8>` | the bytes, no length |
//! | `Option<T>` | `None`: one byte `0`; `Some(v)`: `1` then `v`'s bytes |
//! | `Vec<T>` (other `T`) | each item as a *field* |
//! | tuples `(A,)`…`(A, B, C, D, E, F)` | each element as a *field* |
//! | `Serde<T>` (feature `serde`) | postcard |
//!
//! A **field** is a value's bytes behind their length: `len: u32` little-endian, then
//! `len` bytes. Composites are built from fields, so they nest to any depth: a
//! `Vec<(String, Option<u32>)>` is a row of fields, each holding two fields. Write your
//! own composites the same way with [`encode_field`] and [`Fields`].
//!
//! # Implementing it
//!
//! A struct of several values maps to a tuple, or writes its fields itself:
//!
//! ```
//! use mixserve::sync::{Wire, WireError, wire::{Fields, encode_field}};
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct Message {
//!     from: String,
//!     text: String,
//! }
//!
//! impl Wire for Message {
//!     fn encode(&self, out: &mut Vec<u8>) {
//!         encode_field(&self.from, out);
//!         encode_field(&self.text, out);
//!     }
//!     fn decode(bytes: &[u8]) -> Result<Self, WireError> {
//!         let mut fields = Fields::new(bytes);
//!         let message = Message { from: fields.next()?, text: fields.next()? };
//!         fields.finish()?;
//!         Ok(message)
//!     }
//! }
//!
//! let mut bytes = Vec::new();
//! Message { from: "ann".into(), text: "hi".into() }.encode(&mut bytes);
//! assert_eq!(Message::decode(&bytes).unwrap().text, "hi");
//! ```
//!
//! With the `serde` feature, `#[derive(Serialize, Deserialize)]` and the `Serde<T>`
//! wrapper (or the `wire_with_serde!` macro) do this for you, in postcard's format.
//!
//! # Bytes from another process
//!
//! The master decodes what a worker sends, and a worker what Redis holds: a `decode`
//! gets whatever bytes the other side wrote, which a bug or a hostile process may have
//! made. Return an error for bytes you do not expect (check lengths before indexing);
//! the hub answers the sender with it. A `decode` that panics is caught there and
//! answered the same way, but the master cannot survive a stack overflow: a recursive
//! type (a tree, say, through `Serde<T>`) must bound the depth it decodes.

mod composite;
mod fields;
#[cfg(feature = "serde")]
mod with_serde;

pub use fields::{Fields, encode_field};
#[cfg(feature = "serde")]
pub use with_serde::{Serde, decode as serde_decode, encode as serde_encode};

/// A value that can cross process boundaries through the hub.
///
/// Implemented for integers, floats, `bool`, `char`, `()`, `String`, `Vec<T>`,
/// `Option<T>` and tuples of up to six elements; the [module docs](self) list the
/// encodings. Implement it for your own types by encoding them into bytes; `decode`
/// receives the bytes another process's `encode` wrote, or claims to have written
/// (see [Bytes from another process](self#bytes-from-another-process)).
///
/// ```
/// use mixserve::sync::{Wire, WireError};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Point(i32, i32);
///
/// impl Wire for Point {
///     fn encode(&self, out: &mut Vec<u8>) {
///         (self.0, self.1).encode(out);
///     }
///     fn decode(bytes: &[u8]) -> Result<Self, WireError> {
///         let (x, y) = <(i32, i32)>::decode(bytes)?;
///         Ok(Point(x, y))
///     }
/// }
///
/// let mut bytes = Vec::new();
/// Point(3, -4).encode(&mut bytes);
/// assert_eq!(Point::decode(&bytes).unwrap(), Point(3, -4));
/// ```
pub trait Wire: Sized {
    /// Appends the value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Rebuilds a value from the bytes `encode` wrote; an error for any other bytes.
    fn decode(bytes: &[u8]) -> Result<Self, WireError>;

    /// Appends a sequence of values (the body of a `Vec<Self>`). By default each item
    /// is a field (length-prefixed); `u8` overrides it to plain bytes, so a `Vec<u8>`
    /// is its bytes. Override it only to keep an existing encoding.
    fn encode_seq(items: &[Self], out: &mut Vec<u8>) {
        for item in items {
            encode_field(item, out);
        }
    }

    /// Rebuilds a sequence written by [`encode_seq`](Wire::encode_seq).
    fn decode_seq(bytes: &[u8]) -> Result<Vec<Self>, WireError> {
        let mut fields = Fields::new(bytes);
        let mut items = Vec::new();
        while !fields.is_empty() {
            items.push(fields.next()?);
        }
        Ok(items)
    }
}

/// Bytes that do not decode as the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode value from the hub: {0}")]
pub struct WireError(String);

impl WireError {
    /// An error with the given explanation.
    pub fn new(message: impl Into<String>) -> WireError {
        WireError(message.into())
    }
}

/// Decodes bytes another process sent, in the hub's loop: a `decode` that panics on
/// bytes it did not expect gives an error here instead of unwinding out of the
/// master's loop (the panic hook still reports it).
pub(crate) fn decode_foreign<T: Wire>(bytes: &[u8]) -> Result<T, WireError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::decode(bytes)))
        .unwrap_or_else(|_| Err(WireError::new("the value's decode panicked on these bytes")))
}

macro_rules! wire_le {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<Self, WireError> {
                let array = bytes.try_into().map_err(|_| {
                    WireError::new(format!(
                        "{} needs {} bytes, got {}",
                        stringify!($t), std::mem::size_of::<$t>(), bytes.len()
                    ))
                })?;
                Ok(<$t>::from_le_bytes(array))
            }
        }
    )*};
}

wire_le!(u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

impl Wire for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        match bytes {
            [byte] => Ok(*byte),
            _ => Err(WireError::new(format!(
                "u8 needs 1 byte, got {}",
                bytes.len()
            ))),
        }
    }
    fn encode_seq(items: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(items);
    }
    fn decode_seq(bytes: &[u8]) -> Result<Vec<u8>, WireError> {
        Ok(bytes.to_vec())
    }
}

impl Wire for usize {
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u64).encode(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        usize::try_from(u64::decode(bytes)?).map_err(|_| WireError::new("usize overflow"))
    }
}

impl Wire for isize {
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as i64).encode(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        isize::try_from(i64::decode(bytes)?).map_err(|_| WireError::new("isize overflow"))
    }
}

impl Wire for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(WireError::new("a bool is one byte, 0 or 1")),
        }
    }
}

impl Wire for char {
    fn encode(&self, out: &mut Vec<u8>) {
        u32::from(*self).encode(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        char::from_u32(u32::decode(bytes)?)
            .ok_or_else(|| WireError::new("not a Unicode scalar value"))
    }
}

impl Wire for () {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::new("() has no bytes"))
        }
    }
}

impl Wire for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::new("a String must be UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(value: T) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        assert_eq!(T::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn values_round_trip() {
        round_trip(0xdead_beef_u32);
        round_trip(-7i64);
        round_trip(usize::MAX);
        round_trip(isize::MIN);
        round_trip(u128::MAX - 3);
        round_trip(true);
        round_trip('é');
        round_trip(1.5f32);
        round_trip(-0.1f64);
        round_trip(());
        round_trip(String::from("héllo"));
        round_trip(vec![0u8, 255, 1]);
    }

    #[test]
    fn top_level_encodings_stay_as_they_were() {
        let mut bytes = Vec::new();
        String::from("ab").encode(&mut bytes);
        vec![7u8, 8].encode(&mut bytes);
        513u16.encode(&mut bytes);
        assert_eq!(bytes, [b'a', b'b', 7, 8, 1, 2]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert!(u32::decode(&[1, 2, 3]).is_err());
        assert!(u8::decode(&[]).is_err());
        assert!(bool::decode(&[2]).is_err());
        assert!(char::decode(&0xd800u32.to_le_bytes()).is_err());
        assert!(String::decode(&[0xff]).is_err());
    }
}
