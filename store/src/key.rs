//! Order-preserving key encodings: the byte order of an encoded key is the order of the key.

use crate::StoreError;
use kopa_core::TenantId;

/// A table key, stored as bytes whose lexicographic order matches the key's order.
pub trait Key: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, StoreError>;
}

impl Key for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::Key {
            what: "string key is not UTF-8",
        })
    }
}

impl Key for Vec<u8> {
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        Ok(bytes.to_vec())
    }
}

impl Key for u64 {
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let b: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Key {
            what: "u64 key is not 8 bytes",
        })?;
        Ok(u64::from_be_bytes(b))
    }
}

impl Key for u32 {
    fn encode(&self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let b: [u8; 4] = bytes.try_into().map_err(|_| StoreError::Key {
            what: "u32 key is not 4 bytes",
        })?;
        Ok(u32::from_be_bytes(b))
    }
}

impl Key for TenantId {
    fn encode(&self) -> Vec<u8> {
        self.as_str().as_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let s = std::str::from_utf8(bytes).map_err(|_| StoreError::Key {
            what: "tenant id is not UTF-8",
        })?;
        TenantId::new(s).map_err(|_| StoreError::Key {
            what: "invalid tenant id",
        })
    }
}

// The first component is escaped and terminated rather than length-prefixed: a length prefix
// would sort "b" before "aa", breaking "order by first component, then second".
const ESC: u8 = 0x00;
const ESC_ZERO: u8 = 0xFF;
const ESC_END: u8 = 0x01;

/// Appends `bytes` so that the result is prefix-free and sorts like `bytes`.
pub(crate) fn push_component(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == ESC {
            out.push(ESC_ZERO);
        }
    }
    out.extend_from_slice(&[ESC, ESC_END]);
}

/// Splits an escaped first component off `bytes`, returning it unescaped and the rest.
fn split_component(bytes: &[u8]) -> Result<(Vec<u8>, &[u8]), StoreError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != ESC {
            out.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(&ESC_ZERO) => {
                out.push(ESC);
                i += 2;
            }
            Some(&ESC_END) => return Ok((out, &bytes[i + 2..])),
            _ => break,
        }
    }
    Err(StoreError::Key {
        what: "tuple key has no valid first component",
    })
}

/// The encoded prefix shared by every `(a, _)` key.
pub(crate) fn tuple_prefix<A: Key>(a: &A) -> Vec<u8> {
    let mut out = Vec::new();
    push_component(&mut out, &a.encode());
    out
}

impl<A: Key, B: Key> Key for (A, B) {
    fn encode(&self) -> Vec<u8> {
        let mut out = tuple_prefix(&self.0);
        out.extend_from_slice(&self.1.encode());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let (a, rest) = split_component(bytes)?;
        Ok((A::decode(&a)?, B::decode(rest)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<K: Key + PartialEq + std::fmt::Debug>(k: K) {
        assert_eq!(K::decode(&k.encode()).unwrap(), k);
    }

    #[test]
    fn scalars_roundtrip_and_order() {
        roundtrip("päivää".to_string());
        roundtrip(u64::MAX);
        roundtrip(7u32);
        roundtrip(TenantId::new("riga").unwrap());
        assert!(255u64.encode() < 256u64.encode());
        assert!(u32::MAX.encode() > 1u32.encode());
        assert!(TenantId::decode(b"../etc").is_err());
        assert!(u64::decode(&[1, 2]).is_err());
    }

    #[test]
    fn tuples_order_by_first_then_second() {
        let keys = [
            ("".to_string(), 5u64),
            ("a".to_string(), 0),
            ("a".to_string(), u64::MAX),
            ("a\0".to_string(), 0),
            ("a\0b".to_string(), 0),
            ("aa".to_string(), 0),
            ("b".to_string(), 0),
        ];
        for w in keys.windows(2) {
            assert!(w[0].encode() < w[1].encode(), "{:?} !< {:?}", w[0], w[1]);
            assert!(w[0] < w[1]);
        }
        for k in keys {
            roundtrip(k);
        }
    }

    #[test]
    fn tuple_prefixes_do_not_collide() {
        let a = tuple_prefix(&"a".to_string());
        assert!(("a".to_string(), "x".to_string()).encode().starts_with(&a));
        assert!(!("ab".to_string(), "x".to_string()).encode().starts_with(&a));
        assert!(
            !("a\0".to_string(), "x".to_string())
                .encode()
                .starts_with(&a)
        );
        roundtrip((("t".to_string(), 1u32), "nested\0".to_string()));
    }

    #[test]
    fn malformed_tuples_are_errors() {
        assert!(<(String, u64)>::decode(b"abc").is_err());
        assert!(<(String, u64)>::decode(&[b'a', 0, 7]).is_err());
        assert!(<(String, u64)>::decode(&[b'a', 0, 1, 1]).is_err());
    }
}
