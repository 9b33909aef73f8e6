//! `Wire` for composites: `Vec<T>`, `Option<T>` and tuples.

use super::{Fields, Wire, WireError, encode_field};

impl<T: Wire> Wire for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        T::encode_seq(self, out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        T::decode_seq(bytes)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.encode(out);
            }
        }
    }
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        match bytes.split_first() {
            Some((0, [])) => Ok(None),
            Some((1, value)) => T::decode(value).map(Some),
            _ => Err(WireError::new("an Option starts with 0 (None) or 1 (Some)")),
        }
    }
}

macro_rules! wire_tuple {
    ($($name:ident)+) => {
        impl<$($name: Wire),+> Wire for ($($name,)+) {
            fn encode(&self, out: &mut Vec<u8>) {
                #[allow(non_snake_case)]
                let ($($name,)+) = self;
                $(encode_field($name, out);)+
            }
            fn decode(bytes: &[u8]) -> Result<Self, WireError> {
                let mut fields = Fields::new(bytes);
                let tuple = ($(fields.next::<$name>()?,)+);
                fields.finish()?;
                Ok(tuple)
            }
        }
    };
}

wire_tuple!(A);
wire_tuple!(A B);
wire_tuple!(A B C);
wire_tuple!(A B C D);
wire_tuple!(A B C D E);
wire_tuple!(A B C D E F);

#[cfg(test)]
mod tests {
    use super::super::tests::round_trip;
    use super::*;

    #[test]
    fn composites_round_trip() {
        round_trip(Some(3u32));
        round_trip(None::<String>);
        round_trip(Some(String::new()));
        round_trip(vec![String::from("a"), String::new(), String::from("ccc")]);
        round_trip(Vec::<u64>::new());
        round_trip((1u8,));
        round_trip((String::from("ann"), String::from("hi")));
        round_trip((1u8, -2i16, 3.5f32, 'x', true, String::from("six")));
        round_trip(vec![(String::from("k"), Some(vec![1u32, 2]))]);
        round_trip(Some(None::<u8>));
    }

    #[test]
    fn tuple_is_length_prefixed_fields() {
        let mut bytes = Vec::new();
        (String::from("ab"), 7u8).encode(&mut bytes);
        assert_eq!(bytes, [2, 0, 0, 0, b'a', b'b', 1, 0, 0, 0, 7]);
    }

    #[test]
    fn malformed_composites_are_errors() {
        assert!(Option::<u8>::decode(&[]).is_err());
        assert!(Option::<u8>::decode(&[2, 1]).is_err());
        assert!(Option::<()>::decode(&[0, 0]).is_err());
        assert!(<(u8, u8)>::decode(&[1, 0, 0, 0, 7]).is_err());
        assert!(<(u8,)>::decode(&[1, 0, 0, 0, 7, 9]).is_err());
        assert!(<(u8,)>::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Vec::<String>::decode(&[1, 0, 0]).is_err());
    }
}
