//! Read and write transactions over typed tables, hiding redb's types from callers.

use crate::journal::Recorder;
use crate::key::tuple_prefix;
use crate::table::raw;
use crate::{Key, StoreError, Table};
use redb::{ReadableTable, ReadableTableMetadata};
use serde::Serialize;
use serde::de::DeserializeOwned;

type Bytes = &'static [u8];

/// A consistent snapshot: sees exactly what was committed before it began.
pub struct ReadTxn {
    inner: redb::ReadTransaction,
}

/// One write transaction; its changes become visible together, or not at all.
pub struct WriteTxn<'a> {
    inner: &'a redb::WriteTransaction,
    /// Set when the transaction goes through the journal: every change is noted here too.
    journal: Option<&'a Recorder>,
}

impl std::fmt::Debug for ReadTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadTxn")
    }
}

impl std::fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteTxn")
    }
}

impl ReadTxn {
    pub(crate) fn new(inner: redb::ReadTransaction) -> Self {
        Self { inner }
    }

    pub(crate) fn raw(&self) -> &redb::ReadTransaction {
        &self.inner
    }

    fn open(&self, name: &str) -> Result<Option<redb::ReadOnlyTable<Bytes, Bytes>>, StoreError> {
        match self.inner.open_table(raw(name)) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl<'a> WriteTxn<'a> {
    pub(crate) fn new(inner: &'a redb::WriteTransaction) -> Self {
        Self {
            inner,
            journal: None,
        }
    }

    pub(crate) fn recorded(inner: &'a redb::WriteTransaction, journal: &'a Recorder) -> Self {
        Self {
            inner,
            journal: Some(journal),
        }
    }

    // Opening a table in a write transaction creates it; an empty table is harmless and keeps
    // reads here from paying for a table listing.
    fn open(&self, name: &str) -> Result<Option<redb::Table<'_, Bytes, Bytes>>, StoreError> {
        Ok(Some(self.inner.open_table(raw(name))?))
    }

    /// Creates the table if it does not exist yet (for migrations).
    pub fn open_table<K: Key, V>(&self, t: &Table<K, V>) -> Result<(), StoreError> {
        self.inner.open_table(t.def())?;
        if let Some(j) = self.journal {
            j.create_table(t.name());
        }
        Ok(())
    }

    /// Deletes the table and its records; returns whether it existed.
    pub fn delete_table<K: Key, V>(&self, t: &Table<K, V>) -> Result<bool, StoreError> {
        let existed = self.inner.delete_table(t.def())?;
        if let Some(j) = self.journal {
            j.delete_table(t.name());
        }
        Ok(existed)
    }

    /// Stores `v` under `k`, returning the value it replaced.
    pub fn insert<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        t: &Table<K, V>,
        k: &K,
        v: &V,
    ) -> Result<Option<V>, StoreError> {
        let value = t.encode_value(v)?;
        let key = k.encode();
        let mut table = self.inner.open_table(t.def())?;
        let old = table.insert(key.as_slice(), value.as_slice())?;
        if let Some(j) = self.journal {
            j.put(t.name(), &key, &value);
        }
        old.map(|g| t.decode_value(g.value())).transpose()
    }

    /// Removes up to `limit` records with `from <= key < to`; returns how many.
    pub fn remove_range<K: Key, V>(
        &self,
        t: &Table<K, V>,
        from: &K,
        to: &K,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let (start, end) = (from.encode(), to.encode());
        if start >= end {
            return Ok(0);
        }
        let mut table = self.inner.open_table(t.def())?;
        // Only the entries read from the iterator are removed.
        let doomed =
            table.extract_from_if::<&[u8], _>(start.as_slice()..end.as_slice(), |_, _| true)?;
        let mut count = 0;
        for item in doomed.take(limit) {
            item?;
            count += 1;
        }
        if let Some(j) = self.journal {
            j.remove_range(t.name(), &start, &end, count);
        }
        Ok(count)
    }

    /// Removes `k` without reading the value it had (which may no longer decode);
    /// returns whether it was there.
    pub fn delete<K: Key, V>(&self, t: &Table<K, V>, k: &K) -> Result<bool, StoreError> {
        Ok(self.remove_with(t, k, |_| ())?.is_some())
    }

    /// Removes `k`, returning the value it had.
    pub fn remove<K: Key, V: DeserializeOwned>(
        &self,
        t: &Table<K, V>,
        k: &K,
    ) -> Result<Option<V>, StoreError> {
        self.remove_with(t, k, |old| t.decode_value(old))?
            .transpose()
    }

    /// Removes `k` (journaled when it was there) and reads its old bytes with `read`.
    fn remove_with<K: Key, V, T>(
        &self,
        t: &Table<K, V>,
        k: &K,
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, StoreError> {
        let key = k.encode();
        let mut table = self.inner.open_table(t.def())?;
        let old = table.remove(key.as_slice())?;
        if let Some(j) = self.journal
            && old.is_some()
        {
            j.remove(t.name(), &key);
        }
        Ok(old.map(|g| read(g.value())))
    }
}

/// The read methods, identical on both transaction kinds.
macro_rules! read_methods {
    () => {
        /// The value stored under `k`, if any.
        pub fn get<K: Key, V: DeserializeOwned>(
            &self,
            t: &Table<K, V>,
            k: &K,
        ) -> Result<Option<V>, StoreError> {
            let Some(table) = self.open(t.name())? else {
                return Ok(None);
            };
            let found = table.get(k.encode().as_slice())?;
            found.map(|g| t.decode_value(g.value())).transpose()
        }

        pub fn contains<K: Key, V>(&self, t: &Table<K, V>, k: &K) -> Result<bool, StoreError> {
            let Some(table) = self.open(t.name())? else {
                return Ok(false);
            };
            Ok(table.get(k.encode().as_slice())?.is_some())
        }

        /// Every record, in key order.
        pub fn iter<K: Key, V: DeserializeOwned>(
            &self,
            t: &Table<K, V>,
        ) -> Result<Vec<(K, V)>, StoreError> {
            let Some(table) = self.open(t.name())? else {
                return Ok(Vec::new());
            };
            collect(t, table.iter()?, &[], usize::MAX)
        }

        /// Up to `limit` records with keys `>= from`, in key order.
        pub fn range_from<K: Key, V: DeserializeOwned>(
            &self,
            t: &Table<K, V>,
            from: &K,
            limit: usize,
        ) -> Result<Vec<(K, V)>, StoreError> {
            let Some(table) = self.open(t.name())? else {
                return Ok(Vec::new());
            };
            let start = from.encode();
            collect(t, table.range::<&[u8]>(start.as_slice()..)?, &[], limit)
        }

        /// Up to `limit` records with `from <= key < to`, in key order.
        pub fn range_between<K: Key, V: DeserializeOwned>(
            &self,
            t: &Table<K, V>,
            from: &K,
            to: &K,
            limit: usize,
        ) -> Result<Vec<(K, V)>, StoreError> {
            self.range_between_each(t, from, to, limit)?
                .into_iter()
                .map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        }

        /// Like [`Self::range_between`], but each value is decoded on its own: a record
        /// that no longer decodes comes back as its error instead of failing the range,
        /// so that a sweep can still remove it by its key.
        pub fn range_between_each<K: Key, V: DeserializeOwned>(
            &self,
            t: &Table<K, V>,
            from: &K,
            to: &K,
            limit: usize,
        ) -> Result<Vec<(K, Result<V, StoreError>)>, StoreError> {
            let Some(table) = self.open(t.name())? else {
                return Ok(Vec::new());
            };
            let (start, end) = (from.encode(), to.encode());
            if start >= end {
                return Ok(Vec::new());
            }
            let mut out = Vec::new();
            for item in table
                .range::<&[u8]>(start.as_slice()..end.as_slice())?
                .take(limit)
            {
                let (k, v) = item?;
                out.push((K::decode(k.value())?, t.decode_value(v.value())));
            }
            Ok(out)
        }

        /// Every record whose key has first component `a`, in key order.
        pub fn scan_prefix<A: Key, B: Key, V: DeserializeOwned>(
            &self,
            t: &Table<(A, B), V>,
            a: &A,
        ) -> Result<Vec<((A, B), V)>, StoreError> {
            let Some(table) = self.open(t.name())? else {
                return Ok(Vec::new());
            };
            let prefix = tuple_prefix(a);
            collect(
                t,
                table.range::<&[u8]>(prefix.as_slice()..)?,
                &prefix,
                usize::MAX,
            )
        }

        /// The record with the smallest key.
        pub fn first<K: Key, V: DeserializeOwned>(
            &self,
            t: &Table<K, V>,
        ) -> Result<Option<(K, V)>, StoreError> {
            let Some(table) = self.open(t.name())? else {
                return Ok(None);
            };
            let found = table.first()?;
            found
                .map(|(k, v)| t.decode_pair(k.value(), v.value()))
                .transpose()
        }

        /// The record with the largest key.
        pub fn last<K: Key, V: DeserializeOwned>(
            &self,
            t: &Table<K, V>,
        ) -> Result<Option<(K, V)>, StoreError> {
            let Some(table) = self.open(t.name())? else {
                return Ok(None);
            };
            let found = table.last()?;
            found
                .map(|(k, v)| t.decode_pair(k.value(), v.value()))
                .transpose()
        }

        /// How many records the table holds.
        pub fn len<K: Key, V>(&self, t: &Table<K, V>) -> Result<u64, StoreError> {
            match self.open(t.name())? {
                Some(table) => Ok(table.len()?),
                None => Ok(0),
            }
        }
    };
}

impl ReadTxn {
    read_methods!();
}

impl WriteTxn<'_> {
    read_methods!();
}

fn collect<K: Key, V: DeserializeOwned>(
    t: &Table<K, V>,
    range: redb::Range<'_, Bytes, Bytes>,
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<(K, V)>, StoreError> {
    let mut out = Vec::new();
    for item in range {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push(t.decode_pair(k.value(), v.value())?);
    }
    Ok(out)
}
