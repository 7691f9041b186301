//! The one error type of the store crate.

use std::io;
use std::path::PathBuf;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Cannot open database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("Database {} is in use by a running Kopa; stop Kopa first", path.display())]
    Locked { path: PathBuf },
    #[error(
        "Database of {service} has schema version {found}, which was written by a newer Kopa \
         (this one supports up to {supported})"
    )]
    NewerSchema {
        service: String,
        found: u32,
        supported: u32,
    },
    #[error("Schema of {service} is invalid: {reason}")]
    InvalidSchema {
        service: &'static str,
        reason: &'static str,
    },
    #[error("Migration {version} of {service} failed")]
    Migration {
        service: &'static str,
        version: u32,
        #[source]
        source: Box<StoreError>,
    },
    #[error("Database is corrupt: {what}")]
    Corrupt { what: String },
    #[error("Backup check failed: {what}")]
    Verify { what: String },
    #[error("Backup contains unknown service {service}")]
    UnknownService { service: String },
    #[error("Backup destination {} is not empty", path.display())]
    DestinationNotEmpty { path: PathBuf },
    #[error("Cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Cannot encode a record for table {table}")]
    Encode {
        table: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("Cannot decode a record of table {table}")]
    Decode {
        table: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("Malformed key: {what}")]
    Key { what: &'static str },
    #[error("Database operation failed")]
    Redb(#[source] redb::Error),
    #[error("Storage task did not finish")]
    Join(#[source] tokio::task::JoinError),
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn verify(what: impl Into<String>) -> Self {
        Self::Verify { what: what.into() }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt { what: what.into() }
    }
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                Self::Redb(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
