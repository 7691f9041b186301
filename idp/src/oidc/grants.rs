//! What the provider remembers between requests, in `idp.redb`: authorization codes,
//! refresh-token families, revoked access tokens, ended sessions, the clients each session
//! signed in to, and consents. Tokens and codes are stored only as SHA-256 hashes.

use crate::session::SessionData;
use kopa_store::{StoreError, Table, WriteTxn};
use serde::{Deserialize, Serialize};

/// An issued authorization code, by the hash of the code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub sid: String,
    pub data: SessionData,
    pub auth_time_ms: u64,
    pub expires_ms: u64,
    /// Set at the first exchange: what it issued, revoked if the code comes back.
    pub used: Option<Issued>,
}

/// Tokens issued from one code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Issued {
    pub access_jti: String,
    pub access_expires_ms: u64,
    pub family: Option<String>,
}

/// A refresh token, by its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RefreshRecord {
    pub family: String,
    pub client_id: String,
    pub scope: Vec<String>,
    pub sid: String,
    pub data: SessionData,
    pub auth_time_ms: u64,
    pub expires_ms: u64,
    /// Replaced by a newer token of the family; presenting it again is reuse.
    pub rotated: bool,
}

/// A chain of refresh tokens, each replacing the last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Family {
    pub client_id: String,
    pub sid: String,
    pub revoked: bool,
    pub offline: bool,
    pub expires_ms: u64,
}

pub(crate) const CODES: Table<String, CodeRecord> = Table::new("oidc_codes");
pub(crate) const REFRESH: Table<String, RefreshRecord> = Table::new("oidc_refresh");
pub(crate) const FAMILIES: Table<String, Family> = Table::new("oidc_families");
/// (sid, family): the families a session started.
pub(crate) const SID_FAMILIES: Table<(String, String), u64> = Table::new("oidc_sid_families");
/// jti → expiry of a revoked access token.
pub(crate) const REVOKED: Table<String, u64> = Table::new("oidc_revoked");
/// sid → when the session was ended.
pub(crate) const ENDED: Table<String, u64> = Table::new("oidc_ended_sessions");
/// (sid, client_id): the clients a session received tokens for.
pub(crate) const SID_CLIENTS: Table<(String, String), u64> = Table::new("oidc_sid_clients");
/// (subject, client_id) → the scopes consented to.
pub(crate) const CONSENTS: Table<(String, String), Vec<String>> = Table::new("oidc_consents");

/// Creates the provider's tables (migration 5 of `idp.redb`).
pub(crate) fn create_tables(txn: &WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&CODES)?;
    txn.open_table(&REFRESH)?;
    txn.open_table(&FAMILIES)?;
    txn.open_table(&SID_FAMILIES)?;
    txn.open_table(&REVOKED)?;
    txn.open_table(&ENDED)?;
    txn.open_table(&SID_CLIENTS)?;
    txn.open_table(&CONSENTS)?;
    txn.open_table(&super::clients::STORED_CLIENTS)
}

/// Revokes a refresh-token family inside `txn`.
pub(crate) fn revoke_family(txn: &WriteTxn<'_>, family: &str) -> Result<(), StoreError> {
    let key = family.to_owned();
    if let Some(mut f) = txn.get(&FAMILIES, &key)? {
        f.revoked = true;
        txn.insert(&FAMILIES, &key, &f)?;
    }
    Ok(())
}
