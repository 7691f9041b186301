//! Storage for Kopa's services: one redb file per service with typed tables, numbered schema
//! migrations, transactions run off the async workers, and verified backup and restore.
//!
//! redb types stay behind [`ReadTxn`], [`WriteTxn`] and [`Table`], so service repositories can
//! later gain another backend without their callers noticing.

pub mod audit;
pub mod backup;
mod error;
pub mod fsutil;
mod group;
pub mod journal;
#[cfg(test)]
mod journal_tests;
mod key;
mod migrate;
mod store;
mod table;
mod txn;

pub use audit::{AUDIT_SCHEMA, AuditError, AuditEvent, AuditLog, AuditRecord, AuditSigner};
pub use error::StoreError;
pub use group::GroupOp;
pub use journal::journal_file;
pub use key::Key;
pub use migrate::{Migration, Schema};
pub use store::{Store, db_file};
pub use table::Table;
pub use txn::{ReadTxn, WriteTxn};
