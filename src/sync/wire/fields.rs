//! Fields: length-prefixed values, the building block of composite encodings.

use super::{Wire, WireError};

/// Appends `value` as a field: its byte length as a little-endian `u32`, then its bytes.
///
/// # Panics
///
/// When the value encodes to 4 GiB or more; the hub refuses values far smaller.
pub fn encode_field<T: Wire>(value: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    value.encode(out);
    let len = u32::try_from(out.len() - start - 4).expect("a field under 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Reads fields written by [`encode_field`] one after another.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    /// What is left to read.
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { rest: bytes }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next field's raw bytes.
    ///
    /// # Errors
    ///
    /// When the bytes end before the field's length prefix or its body.
    pub fn next_bytes(&mut self) -> Result<&'a [u8], WireError> {
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(WireError::new("a field's length is cut short"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(WireError::new(format!(
                "a field of {len} bytes has only {} left",
                rest.len()
            )));
        }
        let (field, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(field)
    }

    /// Decodes the next field as a `T`.
    ///
    /// # Errors
    ///
    /// When the field is cut short or does not decode as a `T`.
    #[allow(clippy::should_implement_trait)]
    pub fn next<T: Wire>(&mut self) -> Result<T, WireError> {
        T::decode(self.next_bytes()?)
    }

    /// Checks that nothing is left over.
    ///
    /// # Errors
    ///
    /// When bytes remain after the last field.
    pub fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::new(format!(
                "{} bytes left after the last field",
                self.rest.len()
            )))
        }
    }
}
