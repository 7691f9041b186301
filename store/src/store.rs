//! One redb database per service: opening, migrating, and running transactions off the
//! async workers.

use crate::migrate::{self, Schema};
use crate::txn::{ReadTxn, WriteTxn};
use crate::{StoreError, fsutil};
use redb::ReadableDatabase;
use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        let store = Store {
            inner: Arc::new(Inner {
                db,
                path,
                schema,
                group: crate::group::Group::default(),
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

    /// Proves the database answers: one read transaction.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|_| Ok(())).await
    }
}
