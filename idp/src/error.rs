//! Errors of the identity provider.

use std::path::PathBuf;

/// What can go wrong in the IdP.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// A key file exists but cannot be used.
    #[error("Cannot use IdP key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never key material).
        reason: String,
    },
    /// Generating a key or certificate failed.
    #[error("Cannot generate {what}: {reason}")]
    Generate {
        /// Which key.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Reading or writing a key file failed.
    #[error("Cannot write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error("IdP storage failed")]
    Store(#[from] kopa_store::StoreError),
    /// An account of that name exists.
    #[error("Local account {0:?} already exists")]
    AccountExists(String),
    /// No account of that name.
    #[error("No local account {0:?}")]
    NoSuchAccount(String),
    /// The input is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The second-factor store failed.
    #[error("MFA storage failed")]
    Mfa(#[from] crate::mfa::MfaError),
    /// Appending to the audit log failed: nothing may proceed unrecorded.
    #[error("Audit log unavailable")]
    Audit(#[source] kopa_store::audit::AuditError),
    /// Password hashing failed (parameters or a malformed stored hash).
    #[error("Password hashing failed")]
    Hash,
}
