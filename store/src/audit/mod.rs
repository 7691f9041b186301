//! The tamper-evident audit log, `audit.redb`: every authentication attempt and every
//! administrative change, as a hash chain of records that no one can quietly edit.
//!
//! - [`AuditLog::append`] answers only after its record is durably committed; one writer
//!   thread commits everything queued at once, so concurrent callers share one fsync.
//! - Record `n` carries `hash = SHA-256(prev_hash ‖ canonical record)` (see
//!   [`AuditRecord::canonical_bytes`]); the chain head (last seq and hash) is signed with
//!   Ed25519 at every commit, so a record removed from the end is noticed too.
//! - [`AuditLog::apply_retention`] drops old records and appends a signed cut record that
//!   lets [`verify`] start the chain where the kept records begin.
//! - [`query`] is tenant-scoped by construction; [`export`] writes ECS JSON lines or CSV.
//!
//! The file layout (tables and encodings) is documented in `docs/audit-events.md`, so that
//! records can be checked without this code.

mod chain;
mod error;
mod event;
mod export;
mod log;
mod query;
mod record;
mod signer;
mod verify;

pub use chain::{ANOMALY_ACTION, ChainHead, RETENTION_ACTION};
pub use error::AuditError;
pub use event::{AuditEvent, Category, Outcome};
pub use export::{
    CSV_COLUMNS, ExportFormat, ExportPage, csv, ecs_json, export, export_page, format_rfc3339_ms,
    parse_rfc3339_ms,
};
pub use log::{AuditLog, AuditOptions, AuditStats, RetentionReport};
pub use query::{AuditPage, AuditQuery, MAX_QUERY_LIMIT, Order, TenantScope, query};
pub use record::{AuditRecord, ChainHash};
pub use signer::{AuditSigner, PublicKey, Signature};
pub use verify::{BreakKind, ChainBreak, VerifyReport, verify};

use crate::{Migration, Schema, Store, StoreError, Table};
use kopa_core::TenantId;

/// Every record, under its `seq` (u64, big-endian), as JSON.
pub const RECORDS: Table<u64, AuditRecord> = Table::new("audit_records");
/// `(tenant, seq)` of every record that has a tenant, for tenant-scoped queries.
pub const BY_TENANT: Table<(TenantId, u64), ()> = Table::new("audit_by_tenant");
/// The signed chain head under the key [`HEAD_KEY`].
pub const STATE: Table<String, ChainHead> = Table::new("audit_state");
/// Key of the chain head in [`STATE`].
pub const HEAD_KEY: &str = "head";

/// Storage of the audit log, its own database so appends never queue behind other writes.
pub static AUDIT_SCHEMA: Schema = Schema {
    service: "audit",
    cache_bytes: None,
    migrations: &[Migration {
        version: 1,
        description: "audit records, tenant index and signed chain head",
        apply: |t| {
            t.open_table(&RECORDS)?;
            t.open_table(&BY_TENANT)?;
            t.open_table(&STATE)?;
            Ok(())
        },
    }],
};

/// Record `seq`, if it is stored.
pub fn record(store: &Store, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
    store.read_blocking(|t| t.get(&RECORDS, &seq))
}

/// The signed chain head, if any record was ever committed.
pub fn head(store: &Store) -> Result<Option<ChainHead>, StoreError> {
    store.read_blocking(|t| t.get(&STATE, &HEAD_KEY.to_string()))
}
