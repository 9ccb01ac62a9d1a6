//! A typed view of one column family: [`Table<C>`] reads, scans and adds writes to a [`Batch`],
//! encoding and decoding values with the codec `C` ([`Json`], [`Raw`], [`BeU64`], [`BeU32`],
//! [`Empty`]). Keys are bytes: each module builds its own (`name \0 seq_be`, ...).
//!
//! [`Table::walk`] is the one iterator loop of the controller: every scan (prefix, range, reverse,
//! keys only) goes through it. A value that does not decode is a `Corrupt` error naming the column
//! family and the key.
use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::ControlFlow;

use rocksdb::DBRawIterator;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::db::{Batch, Database};
use super::error::StorageError;

/// How the values of a table are stored.
pub trait Codec {
    type Value;
    fn encode(value: &Self::Value) -> Result<Vec<u8>, String>;
    fn decode(bytes: &[u8]) -> Result<Self::Value, String>;
}

/// serde JSON.
pub struct Json<T>(PhantomData<T>);

impl<T: Serialize + DeserializeOwned> Codec for Json<T> {
    type Value = T;
    fn encode(value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
    fn decode(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The bytes as they are (code zips, payloads).
pub struct Raw;

impl Codec for Raw {
    type Value = Vec<u8>;
    fn encode(value: &Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(value.clone())
    }
    fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

/// A fixed-width unsigned number, big-endian.
macro_rules! big_endian_codec {
    ($name:ident, $ty:ty, $what:literal) => {
        #[doc = concat!("A ", stringify!($ty), ", ", $what, " big-endian.")]
        pub struct $name;

        impl Codec for $name {
            type Value = $ty;
            fn encode(value: &$ty) -> Result<Vec<u8>, String> {
                Ok(value.to_be_bytes().to_vec())
            }
            fn decode(bytes: &[u8]) -> Result<$ty, String> {
                let b = bytes
                    .try_into()
                    .map_err(|_| concat!("expected a ", $what, " big-endian number").to_string())?;
                Ok(<$ty>::from_be_bytes(b))
            }
        }
    };
}

big_endian_codec!(BeU64, u64, "8-byte");
big_endian_codec!(BeU32, u32, "4-byte");

/// No value: the key is the information (indexes).
pub struct Empty;

impl Codec for Empty {
    type Value = ();
    fn encode(_: &()) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }
    fn decode(_: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Where a walk starts and which way it goes.
#[derive(Debug, Clone, Copy)]
pub enum Start<'k> {
    /// The first key, forwards.
    First,
    /// The first key `>= k`, forwards.
    At(&'k [u8]),
    /// The last key `<= k`, backwards.
    Back(&'k [u8]),
}

/// One entry under the cursor of a walk; its value is read and decoded only when asked.
pub struct Entry<'a, 'db, C> {
    it: &'a DBRawIterator<'db>,
    table: &'a Table<'db, C>,
}

impl<C: Codec> Entry<'_, '_, C> {
    pub fn key(&self) -> &[u8] {
        self.it.key().expect("a walk only yields valid entries")
    }

    pub fn raw_value(&self) -> &[u8] {
        self.it.value().expect("a walk only yields valid entries")
    }

    pub fn value(&self) -> Result<C::Value, StorageError> {
        self.table.decode(self.key(), self.raw_value())
    }
}

impl Database {
    /// A typed view of column family `cf` (see [`Table`]).
    pub fn table<C: Codec>(&self, cf: &'static str) -> Table<'_, C> {
        Table {
            db: self,
            cf,
            codec: PhantomData,
        }
    }
}

/// Column family `cf` of `db`, values in codec `C`.
pub struct Table<'db, C> {
    db: &'db Database,
    cf: &'static str,
    codec: PhantomData<C>,
}

impl<'db, C: Codec> Table<'db, C> {
    pub fn name(&self) -> &'static str {
        self.cf
    }

    fn decode(&self, key: &[u8], bytes: &[u8]) -> Result<C::Value, StorageError> {
        C::decode(bytes).map_err(|e| self.db.corrupt(self.describe(key), e))
    }

    /// "`cf` entry `key`", for errors (control bytes escaped).
    fn describe(&self, key: &[u8]) -> String {
        format!(
            "`{}` entry `{}`",
            self.cf,
            String::from_utf8_lossy(key).escape_debug()
        )
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<C::Value>, StorageError> {
        let found = self
            .db
            .rocks()
            .get_pinned_cf(self.db.cf(self.cf)?, key)
            .map_err(self.db.failed(format!("read of `{}`", self.cf)))?;
        found.map(|v| self.decode(key, &v)).transpose()
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool, StorageError> {
        Ok(self
            .db
            .rocks()
            .get_pinned_cf(self.db.cf(self.cf)?, key)
            .map_err(self.db.failed(format!("read of `{}`", self.cf)))?
            .is_some())
    }

    /// Adds `key = value` to `batch`.
    pub fn put(
        &self,
        batch: &mut Batch<'_>,
        key: impl Into<Vec<u8>>,
        value: &C::Value,
    ) -> Result<(), StorageError> {
        let key = key.into();
        let bytes = C::encode(value).map_err(|e| {
            self.db
                .corrupt(format!("{} (encoding)", self.describe(&key)), e)
        })?;
        batch.put(self.cf, key, Cow::Owned(bytes));
        Ok(())
    }

    /// Adds `key = bytes` to `batch`, bytes as they are (borrowed until the write).
    pub fn put_bytes<'v>(
        &self,
        batch: &mut Batch<'v>,
        key: impl Into<Vec<u8>>,
        bytes: impl Into<Cow<'v, [u8]>>,
    ) {
        batch.put(self.cf, key.into(), bytes.into());
    }

    pub fn delete(&self, batch: &mut Batch<'_>, key: impl Into<Vec<u8>>) {
        batch.delete(self.cf, key.into());
    }

    /// Deletes every key in `from..to`.
    pub fn delete_range(
        &self,
        batch: &mut Batch<'_>,
        from: impl Into<Vec<u8>>,
        to: impl Into<Vec<u8>>,
    ) {
        batch.delete_range(self.cf, from.into(), to.into());
    }

    /// Visits entries from `from` (see [`Start`]) until `visit` breaks or the keys run out.
    pub fn walk<E>(
        &self,
        from: Start<'_>,
        mut visit: impl FnMut(&Entry<'_, 'db, C>) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E>
    where
        E: From<StorageError>,
    {
        let mut it = self.db.rocks().raw_iterator_cf(self.db.cf(self.cf)?);
        let backwards = match from {
            Start::First => {
                it.seek_to_first();
                false
            }
            Start::At(k) => {
                it.seek(k);
                false
            }
            Start::Back(k) => {
                it.seek_for_prev(k);
                true
            }
        };
        while it.valid() {
            let entry = Entry {
                it: &it,
                table: self,
            };
            if visit(&entry)?.is_break() {
                break;
            }
            if backwards {
                it.prev();
            } else {
                it.next();
            }
        }
        it.status()
            .map_err(self.db.failed(format!("scan of `{}`", self.cf)))?;
        Ok(())
    }

    /// Every entry whose key starts with `prefix`, in key order, until `visit` breaks.
    pub fn scan_prefix<E>(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(&Entry<'_, 'db, C>) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E>
    where
        E: From<StorageError>,
    {
        self.walk(Start::At(prefix), |e| {
            if !e.key().starts_with(prefix) {
                return Ok(ControlFlow::Break(()));
            }
            visit(e)
        })
    }

    /// The decoded values of the keys starting with `prefix` that `keep` accepts, in key order.
    pub fn values_with_prefix(
        &self,
        prefix: &[u8],
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<C::Value>, StorageError> {
        let mut out = Vec::new();
        self.scan_prefix(prefix, |e| {
            if keep(e.key()) {
                out.push(e.value()?);
            }
            Ok::<_, StorageError>(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// A page: up to `limit` decoded values from `start` on, until a key that `within` refuses.
    pub fn page(
        &self,
        start: Start<'_>,
        limit: usize,
        within: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<C::Value>, StorageError> {
        self.page_with(start, limit, within, |e| e.value().map(Some))
    }

    /// Like [`Self::page`], each entry mapped by `take` (`None`: skipped, not counted).
    pub fn page_with<T, E>(
        &self,
        start: Start<'_>,
        limit: usize,
        within: impl Fn(&[u8]) -> bool,
        mut take: impl FnMut(&Entry<'_, 'db, C>) -> Result<Option<T>, E>,
    ) -> Result<Vec<T>, E>
    where
        E: From<StorageError>,
    {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.walk(start, |e| {
            if !within(e.key()) {
                return Ok::<_, E>(ControlFlow::Break(()));
            }
            out.extend(take(e)?);
            Ok(if out.len() < limit {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            })
        })?;
        Ok(out)
    }

    /// The first key `>= from` (a single seek).
    pub fn first_key_at(&self, from: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.one_key(Start::At(from))
    }

    /// The last key `<= at` (a single seek).
    pub fn last_key_at_or_before(&self, at: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.one_key(Start::Back(at))
    }

    fn one_key(&self, from: Start<'_>) -> Result<Option<Vec<u8>>, StorageError> {
        let mut found = None;
        self.walk(from, |e| {
            found = Some(e.key().to_vec());
            Ok::<_, StorageError>(ControlFlow::Break(()))
        })?;
        Ok(found)
    }

    /// The number of keys.
    pub fn count(&self) -> Result<u64, StorageError> {
        let mut n = 0;
        self.walk(Start::First, |_| {
            n += 1;
            Ok::<_, StorageError>(ControlFlow::Continue(()))
        })?;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
