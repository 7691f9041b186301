//! Typed tables over one byte representation, so backup and verify can walk any table.

use crate::{Key, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;

/// How every table is stored in redb: encoded key bytes to JSON value bytes.
pub(crate) type RawTable = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(crate) const fn raw(name: &str) -> redb::TableDefinition<'_, &'static [u8], &'static [u8]> {
    redb::TableDefinition::new(name)
}

/// A named table with keys `K` (see [`Key`]) and JSON-encoded values `V`.
pub struct Table<K: Key, V> {
    name: &'static str,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V> Table<K, V> {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }

    pub const fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) const fn def(&self) -> RawTable {
        raw(self.name)
    }
}

impl<K: Key, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Key, V> Copy for Table<K, V> {}

impl<K: Key, V> fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Table").field(&self.name).finish()
    }
}

impl<K: Key, V: Serialize> Table<K, V> {
    pub(crate) fn encode_value(&self, v: &V) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(v).map_err(|source| StoreError::Encode {
            table: self.name,
            source,
        })
    }
}

impl<K: Key, V: DeserializeOwned> Table<K, V> {
    pub(crate) fn decode_value(&self, bytes: &[u8]) -> Result<V, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
            table: self.name.to_string(),
            source,
        })
    }

    pub(crate) fn decode_pair(&self, k: &[u8], v: &[u8]) -> Result<(K, V), StoreError> {
        Ok((K::decode(k)?, self.decode_value(v)?))
    }
}
