//! One redb database per service: opening, migrating, and running transactions off the
//! async workers.

use crate::journal::{self, Journal, Recorder};
use crate::migrate::{self, META, Schema};
use crate::txn::{ReadTxn, WriteTxn};
use crate::{StoreError, fsutil};
use redb::ReadableDatabase;
use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A service's database. Cheap to clone; the file closes when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: redb::Database,
    path: PathBuf,
    schema: &'static Schema,
    group: crate::group::Group,
    journal: Mutex<Journal>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("service", &self.inner.schema.service)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// The file of `service` under `data_dir`.
pub fn db_file(data_dir: &Path, service: &str) -> PathBuf {
    data_dir.join(format!("{service}.redb"))
}

/// Creates `path` with mode 0600 if missing, and tightens a looser mode.
pub(crate) fn ensure_private_file(path: &Path) -> Result<(), StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io("create", path, e))?;
    let meta = std::fs::metadata(path).map_err(|e| StoreError::io("inspect", path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "database file was readable by others; setting mode 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::io("set permissions of", path, e))?;
    }
    Ok(())
}

pub(crate) fn map_open_error(path: &Path, source: redb::DatabaseError) -> StoreError {
    match source {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        source => StoreError::Open {
            path: path.to_path_buf(),
            source,
        },
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/<service>.redb` and brings it to the latest
    /// schema version.
    pub fn open(data_dir: &Path, schema: &'static Schema) -> Result<Store, StoreError> {
        schema.check()?;
        fsutil::ensure_private_dir(data_dir)
            .map_err(|e| StoreError::io("create directory", data_dir, e))?;
        let path = db_file(data_dir, schema.service);
        ensure_private_file(&path)?;
        // redb locks the file (OFD locks), so a second Kopa, or a second open in this process,
        // is refused instead of corrupting it.
        let mut builder = redb::Builder::new();
        if let Some(bytes) = schema.cache_bytes {
            builder.set_cache_size(bytes);
        }
        let db = builder
            .create(&path)
            .map_err(|e| map_open_error(&path, e))?;
        let journal_path = journal::journal_file(data_dir, schema.service);
        let last_seq = replay(&db, &journal_path)?;
        let store = Store {
            inner: Arc::new(Inner {
                db,
                path,
                schema,
                group: crate::group::Group::default(),
                journal: Mutex::new(Journal::new(journal_path, last_seq)),
            }),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let schema = self.inner.schema;
        let (pending, unstamped) = self.read_blocking(|txn| {
            Ok((
                migrate::pending(schema, txn)?,
                migrate::read_service(txn)?.is_none(),
            ))
        })?;
        if unstamped {
            self.write_blocking(|txn| migrate::stamp(schema, txn))?;
        }
        for m in pending {
            tracing::info!(
                service = schema.service,
                version = m.version,
                description = m.description,
                "applying migration"
            );
            self.write_blocking(|txn| migrate::apply(schema, m, txn))?;
        }
        Ok(())
    }

    pub(crate) fn group(&self) -> &crate::group::Group {
        &self.inner.group
    }

    pub fn service(&self) -> &'static str {
        self.inner.schema.service
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn schema(&self) -> &'static Schema {
        self.inner.schema
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.read_blocking(migrate::read_version)
    }

    pub(crate) fn begin_read(&self) -> Result<ReadTxn, StoreError> {
        Ok(ReadTxn::new(self.inner.db.begin_read()?))
    }

    /// Runs `f` in a read transaction on the blocking pool.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTxn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(StoreError::Join)?
    }

    /// Runs `f` in one write transaction on the blocking pool; `Ok` means durably committed.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTxn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_blocking(f))
            .await
            .map_err(StoreError::Join)?
    }

    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&ReadTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.begin_read()?)
    }

    /// Write transactions serialise: this waits for any other writer of this database.
    pub fn write_blocking<T>(
        &self,
        f: impl FnOnce(&WriteTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut txn = self.inner.db.begin_write()?;
        // Immediate = fsync before commit returns: an acknowledged change survives a crash.
        txn.set_durability(redb::Durability::Immediate)?;
        match f(&WriteTxn::new(&txn)) {
            Ok(value) => {
                txn.commit()?;
                Ok(value)
            }
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "aborting a write transaction failed");
                }
                Err(e)
            }
        }
    }

    /// Like [`Store::write_blocking`], for a change that may be refused: an inner `Err`
    /// aborts the transaction (nothing written, no fsync) and is handed back.
    pub fn write_or_abort<T, E>(
        &self,
        f: impl FnOnce(&WriteTxn) -> Result<Result<T, E>, StoreError>,
    ) -> Result<Result<T, E>, StoreError> {
        let mut txn = self.inner.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        let outcome = f(&WriteTxn::new(&txn));
        match outcome {
            Ok(Ok(value)) => {
                txn.commit()?;
                Ok(Ok(value))
            }
            other => {
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "aborting a write transaction failed");
                }
                other
            }
        }
    }

    /// Runs `f` in one write transaction made durable through the journal (see
    /// [`crate::journal`]): one contiguous append and sync instead of redb's scattered page
    /// writes. `Ok` means durable, exactly as for [`Store::write_blocking`]; readers see the
    /// change only after it is durable.
    pub fn write_journaled<T>(
        &self,
        f: impl FnOnce(&WriteTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut txn = self.inner.db.begin_write()?;
        let recorder = Recorder::default();
        let value = match f(&WriteTxn::recorded(&txn, &recorder)) {
            Ok(value) => value,
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "aborting a write transaction failed");
                }
                return Err(e);
            }
        };
        let payload = recorder.take();
        // Lock order: redb's writer lock (held since begin_write), then the journal.
        let mut journal = self.journal();
        let seq = journal.next_seq;
        WriteTxn::new(&txn).insert(&META, &journal::SEQ_KEY.to_string(), &seq.into())?;
        if journal.should_checkpoint(payload.len()) {
            txn.set_durability(redb::Durability::Immediate)?;
            txn.commit()?;
            journal.next_seq = seq + 1;
            journal.checkpointed();
            return Ok(value);
        }
        txn.set_durability(redb::Durability::None)?;
        if let Err(e) = journal.append(seq, &payload) {
            tracing::error!(error = %e, service = self.service(), "the journal failed; committing to the database directly from now on");
            drop(journal);
            if let Err(abort) = txn.abort() {
                tracing::warn!(error = %abort, "aborting a write transaction failed");
            }
            return Err(e);
        }
        match txn.commit() {
            Ok(()) => {
                journal.next_seq = seq + 1;
                Ok(value)
            }
            Err(e) => {
                journal.retract();
                Err(e.into())
            }
        }
    }

    pub(crate) fn journal(&self) -> MutexGuard<'_, Journal> {
        // The journal's state stays consistent between statements: safe after a panic.
        self.inner
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Proves the database answers: one read transaction.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|_| Ok(())).await
    }
}

/// Applies the journal's entries that the database does not hold yet, durably, then empties
/// the journal; returns the number of the last entry the database now holds.
fn replay(db: &redb::Database, path: &Path) -> Result<u64, StoreError> {
    let held = {
        let txn = ReadTxn::new(db.begin_read()?);
        match txn.get(&META, &journal::SEQ_KEY.to_string())? {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| StoreError::corrupt("journal_seq in kopa_meta is not a number"))?,
        }
    };
    let bytes = journal::read(path)?;
    let entries = journal::entries(&bytes);
    let Some(&(last, _)) = entries.last() else {
        journal::truncate(path)?;
        return Ok(held);
    };
    let first = entries[0].0;
    if last <= held {
        journal::truncate(path)?;
        return Ok(held);
    }
    if first > held + 1 {
        return Err(StoreError::corrupt(format!(
            "{} starts at entry {first}, but the database holds entries only up to {held}: \
             the journal belongs to another copy of this database; move it aside to open \
             the database without it",
            path.display()
        )));
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)?;
    let mut applied = 0;
    for (seq, payload) in entries.iter().filter(|(seq, _)| *seq > held) {
        journal::apply(&txn, payload).map_err(|e| {
            StoreError::corrupt(format!("replaying entry {seq} of {}: {e}", path.display()))
        })?;
        applied += 1;
    }
    WriteTxn::new(&txn).insert(&META, &journal::SEQ_KEY.to_string(), &last.into())?;
    txn.commit()?;
    tracing::info!(journal = %path.display(), entries = applied, last, "replayed the journal after an unclean stop");
    journal::truncate(path)?;
    Ok(last)
}
