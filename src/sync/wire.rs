//! [`Wire`]: how a value crosses from a worker process to the hub and back.

/// A value that can cross process boundaries through the hub.
///
/// Implemented for integers, `bool`, `String`, `Vec<u8>` and `()`. Implement it for
/// your own types by encoding them into bytes; `decode` receives exactly the bytes
/// `encode` wrote.
///
/// ```
/// use mixserve::sync::{Wire, WireError};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Point(i32, i32);
///
/// impl Wire for Point {
///     fn encode(&self, out: &mut Vec<u8>) {
///         self.0.encode(out);
///         self.1.encode(out);
///     }
///     fn decode(bytes: &[u8]) -> Result<Self, WireError> {
///         if bytes.len() != 8 {
///             return Err(WireError::new("a Point is 8 bytes"));
///         }
///         Ok(Point(i32::decode(&bytes[..4])?, i32::decode(&bytes[4..])?))
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
    /// Rebuilds a value from exactly the bytes `encode` wrote.
    fn decode(bytes: &[u8]) -> Result<Self, WireError>;
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

macro_rules! wire_int {
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

wire_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Wire for usize {
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u64).encode(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        usize::try_from(u64::decode(bytes)?).map_err(|_| WireError::new("usize overflow"))
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

impl Wire for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        Ok(bytes.to_vec())
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

    fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(value: T) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        assert_eq!(T::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn values_round_trip() {
        round_trip(0xdead_beef_u32);
        round_trip(-7i64);
        round_trip(usize::MAX);
        round_trip(true);
        round_trip(());
        round_trip(String::from("héllo"));
        round_trip(vec![0u8, 255, 1]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert!(u32::decode(&[1, 2, 3]).is_err());
        assert!(bool::decode(&[2]).is_err());
        assert!(String::decode(&[0xff]).is_err());
    }
}
