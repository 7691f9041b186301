//! Schema versions: numbered migrations, each applied once, in order, in its own transaction.

use crate::txn::{ReadTxn, WriteTxn};
use crate::{StoreError, Table};

/// Internal bookkeeping of every database; copied by backups like any other table.
pub(crate) const META: Table<String, serde_json::Value> = Table::new("kopa_meta");
const SERVICE_KEY: &str = "service";
const VERSION_KEY: &str = "schema_version";

/// One step from version `version - 1` to `version`.
pub struct Migration {
    pub version: u32,
    pub description: &'static str,
    pub apply: fn(&WriteTxn<'_>) -> Result<(), StoreError>,
}

/// The tables of one service and how to get there: migrations numbered 1..=n.
#[derive(Debug)]
pub struct Schema {
    pub service: &'static str,
    /// Most bytes of the database's pages kept in memory; `None` for redb's default
    /// (1 GiB). Pages beyond it are read through the operating system's page cache.
    pub cache_bytes: Option<usize>,
    pub migrations: &'static [Migration],
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Schema {
    /// The version a database reaches once every migration has run.
    pub fn latest(&self) -> u32 {
        self.migrations.last().map_or(0, |m| m.version)
    }

    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let invalid = |reason| StoreError::InvalidSchema {
            service: self.service,
            reason,
        };
        if !valid_service_name(self.service) {
            return Err(invalid(
                "service name must be 1-32 characters of a-z, 0-9, '-' or '_'",
            ));
        }
        for (i, m) in self.migrations.iter().enumerate() {
            if u32::try_from(i + 1).ok() != Some(m.version) {
                return Err(invalid("migration versions must be 1, 2, 3, ... in order"));
            }
        }
        Ok(())
    }
}

// The service name becomes a file name, in the data directory and in backups.
pub(crate) fn valid_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The recorded schema version; 0 for a database no migration has touched.
pub(crate) fn read_version(txn: &ReadTxn) -> Result<u32, StoreError> {
    decode_version(txn.get(&META, &VERSION_KEY.to_string())?)
}

pub(crate) fn read_service(txn: &ReadTxn) -> Result<Option<String>, StoreError> {
    match txn.get(&META, &SERVICE_KEY.to_string())? {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(StoreError::corrupt(
            "service name in kopa_meta is not a string",
        )),
    }
}

fn decode_version(v: Option<serde_json::Value>) -> Result<u32, StoreError> {
    match v {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| StoreError::corrupt("schema version in kopa_meta is not a number")),
    }
}

/// Checks that the database belongs to `schema` and is not newer; returns the pending steps.
pub(crate) fn pending(
    schema: &'static Schema,
    txn: &ReadTxn,
) -> Result<&'static [Migration], StoreError> {
    if let Some(found) = read_service(txn)?
        && found != schema.service
    {
        return Err(StoreError::corrupt(format!(
            "database belongs to service {found}, not {}",
            schema.service
        )));
    }
    let found = read_version(txn)?;
    if found > schema.latest() {
        return Err(StoreError::NewerSchema {
            service: schema.service.to_string(),
            found,
            supported: schema.latest(),
        });
    }
    Ok(schema.migrations.get(found as usize..).unwrap_or_default())
}

/// Records ownership once, so a file renamed to another service is refused.
pub(crate) fn stamp(schema: &Schema, txn: &WriteTxn<'_>) -> Result<(), StoreError> {
    let key = SERVICE_KEY.to_string();
    if !txn.contains(&META, &key)? {
        txn.insert(&META, &key, &schema.service.into())?;
    }
    Ok(())
}

/// Applies one migration and records its version in the same transaction.
pub(crate) fn apply(schema: &Schema, m: &Migration, txn: &WriteTxn<'_>) -> Result<(), StoreError> {
    let current = decode_version(txn.get(&META, &VERSION_KEY.to_string())?)?;
    if current + 1 != m.version {
        return Err(StoreError::corrupt(format!(
            "schema version changed to {current} during migration of {}",
            schema.service
        )));
    }
    (m.apply)(txn).map_err(|e| StoreError::Migration {
        service: schema.service,
        version: m.version,
        source: Box::new(e),
    })?;
    txn.insert(&META, &VERSION_KEY.to_string(), &m.version.into())?;
    Ok(())
}
