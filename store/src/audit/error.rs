//! Why an audit operation failed.
//!
//! Its own enum rather than more `StoreError` variants: the audit log adds failure modes
//! (a closed writer, a refused event, the signing key) that no other store has.

use crate::StoreError;
use std::path::PathBuf;
use std::sync::Arc;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Audit event is invalid: {what}")]
    InvalidEvent { what: String },
    #[error("Audit query is invalid: {what}")]
    InvalidQuery { what: String },
    #[error("Audit signing key {} is unusable: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("Signing the audit chain failed")]
    Signing,
    /// The batch this record was part of did not commit; none of its records exist.
    #[error("Audit commit failed, so the record was not appended")]
    Commit(#[source] Arc<AuditError>),
    #[error("The audit log is closed")]
    Closed,
    #[error("The audit chain cannot be continued: {what}")]
    Unreadable { what: String },
    #[error("Audit retention refused: {what}")]
    Retention { what: String },
    #[error("Cannot write the audit export")]
    Write(#[source] std::io::Error),
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for AuditError {
            fn from(e: $ty) -> Self {
                Self::Store(e.into())
            }
        }
    )*};
}

from_redb!(redb::StorageError, redb::TableError);
