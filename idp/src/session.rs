//! Single sign-on sessions, kept in `idp.redb` so they survive a restart.
//!
//! The browser holds a token made of a key (the creation time and 64 random bits) and a
//! random 256-bit secret; the database holds the key and only the secret's SHA-256, so a
//! copy of the database (or a backup) does not hand out live sessions. A session ends at
//! its idle or absolute timeout, at logout, or when an administrator revokes it; those
//! past the absolute timeout are swept.

use base64::Engine;
use kopa_config::SessionConfig;
use kopa_core::{Clock, Role, TenantId};
use kopa_store::{Store, StoreError, Table};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who signed in, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionData {
    /// Stable subject id (`<directory>:<id>`).
    pub subject: String,
    /// The login name as resolved by the directory.
    pub login: String,
    /// Name to show.
    pub display_name: String,
    /// The user's tenant; `None` for platform accounts.
    pub tenant: Option<TenantId>,
    /// The directory that authenticated the user.
    pub directory: String,
    /// Roles from the directory's group mapping.
    pub roles: Vec<Role>,
    /// Group names from the directory.
    pub groups: Vec<String>,
    /// Authentication methods used (RFC 8176 values: `pwd`, `otp`).
    pub amr: Vec<String>,
    /// E-mail address from the directory.
    #[serde(default)]
    pub email: Option<String>,
    /// Given name from the directory.
    #[serde(default)]
    pub given_name: Option<String>,
    /// Surname from the directory.
    #[serde(default)]
    pub family_name: Option<String>,
    /// Source address at sign-in.
    pub ip: String,
    /// User agent at sign-in.
    pub user_agent: String,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Short public handle (the hex of the key's 8 random bytes) for admin lists.
    pub id: String,
    /// Sign-in facts.
    pub data: SessionData,
    /// Sign-in time, ms since the epoch.
    pub created_ms: u64,
    /// Last use, ms since the epoch (updated at most once a minute).
    pub last_seen_ms: u64,
}

/// What the database keeps of a session: the session and the SHA-256 of its token's
/// secret half.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// Hex SHA-256 of the secret half of the token.
    check: String,
    session: Session,
}

/// Session key (hex, see [`KEY_LEN`]) → the stored session.
const SESSIONS: Table<String, Stored> = Table::new("sso_sessions");
/// (subject, session key) → creation time, to list and revoke one user's sessions.
const BY_SUBJECT: Table<(String, String), u64> = Table::new("sso_sessions_by_subject");
/// The tables of migration 2, keyed by the token's hash; dropped by migration 7.
const OLD_SESSIONS: &str = "sessions";
const OLD_BY_SUBJECT: &str = "sessions_by_subject";

/// Creates the first sessions tables (migration 2 of `idp.redb`).
pub(crate) fn create_tables(txn: &kopa_store::WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&Table::<String, u64>::new(OLD_SESSIONS))?;
    txn.open_table(&Table::<(String, String), u64>::new(OLD_BY_SUBJECT))
}

/// Migration 7: sessions keyed by age. The sessions of migration 2 cannot be carried
/// over (only their tokens' hashes were kept), so their users sign in again.
pub(crate) fn key_sessions_by_age(txn: &kopa_store::WriteTxn<'_>) -> Result<(), StoreError> {
    txn.delete_table(&Table::<String, u64>::new(OLD_SESSIONS))?;
    txn.delete_table(&Table::<(String, String), u64>::new(OLD_BY_SUBJECT))?;
    txn.open_table(&SESSIONS)?;
    txn.open_table(&BY_SUBJECT)
}

/// How often `last_seen` is written: each write is an fsync, and a minute is far below
/// any sensible idle timeout.
const TOUCH_EVERY_MS: u64 = 60_000;

/// Bytes of a session's key: its creation time (milliseconds, big-endian) and then 8
/// random bytes. Keys sort by age, so a new session lands at the end of the table (a
/// group commit of many sign-ins rewrites a page or two, not a page per sign-in) and the
/// oldest sessions are the first ones, for the sweeper.
const KEY_LEN: usize = 16;
/// Hex characters of the time at the start of a stored key; the public id follows.
const TIME_HEX: usize = 16;
/// Bytes of a token's secret half.
const SECRET_LEN: usize = 32;

pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()).as_ref())
}

fn sha256(bytes: &[u8]) -> aws_lc_rs::digest::Digest {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
}

/// A fresh random token: 32 bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A session token's two halves: the key the session is stored under, and the secret
/// only the browser holds.
struct Token {
    key: [u8; KEY_LEN],
    secret: [u8; SECRET_LEN],
}

impl Token {
    fn new(now_ms: u64) -> Self {
        // One read of the kernel's generator for both random parts.
        let mut random = [0u8; KEY_LEN - 8 + SECRET_LEN];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let mut key = [0u8; KEY_LEN];
        key[..8].copy_from_slice(&now_ms.to_be_bytes());
        key[8..].copy_from_slice(&random[..KEY_LEN - 8]);
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&random[KEY_LEN - 8..]);
        Self { key, secret }
    }

    /// The token a browser sent; `None` for anything that is not one of ours.
    fn parse(token: &str) -> Option<Self> {
        if token.len() != (KEY_LEN + SECRET_LEN).div_ceil(3) * 4 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let (key, secret) = bytes.split_at_checked(KEY_LEN)?;
        Some(Self {
            key: key.try_into().ok()?,
            secret: secret.try_into().ok()?,
        })
    }

    /// The cookie value: base64url of key and secret.
    fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(KEY_LEN + SECRET_LEN);
        bytes.extend_from_slice(&self.key);
        bytes.extend_from_slice(&self.secret);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The key as stored.
    fn stored_key(&self) -> String {
        hex::encode(self.key)
    }

    /// The public id: the key's random half.
    fn id(&self) -> String {
        hex::encode(&self.key[TIME_HEX / 2..])
    }

    fn check(&self) -> String {
        hex::encode(sha256(&self.secret).as_ref())
    }

    /// Whether `stored` was made for this token's secret (in constant time).
    fn matches(&self, stored: &Stored) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            self.check().as_bytes(),
            stored.check.as_bytes(),
        )
        .is_ok()
    }
}

/// The smallest stored key made at or after `ms`.
fn key_at(ms: u64) -> String {
    let mut key = [0u8; KEY_LEN];
    key[..8].copy_from_slice(&ms.to_be_bytes());
    hex::encode(key)
}

/// A session made by [`Sessions::prepare`], to be stored by [`Sessions::persist`].
pub struct NewSession {
    /// The cookie value; never stored.
    pub token: String,
    key: String,
    check: String,
    /// The session as it will be stored.
    pub session: Session,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is the cookie: never in a log line.
        f.debug_struct("NewSession")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// The session repository.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
    clock: Arc<dyn Clock>,
    config: SessionConfig,
}

impl Sessions {
    /// Sessions kept in `store` (the IdP database).
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: SessionConfig) -> Self {
        Self {
            store,
            clock,
            config,
        }
    }

    /// A new session, not yet stored: a fresh token every time, so sign-in never reuses
    /// an earlier id (session fixation).
    pub fn prepare(&self, data: SessionData) -> NewSession {
        let now = self.clock.now_millis();
        let token = Token::new(now);
        let session = Session {
            id: token.id(),
            data,
            created_ms: now,
            last_seen_ms: now,
        };
        NewSession {
            key: token.stored_key(),
            check: token.check(),
            token: token.encode(),
            session,
        }
    }

    /// Stores a prepared session; `Ok` means durable.
    pub async fn persist(&self, new: &NewSession) -> Result<(), StoreError> {
        let stored = Stored {
            check: new.check.clone(),
            session: new.session.clone(),
        };
        let key = new.key.clone();
        // Group-committed: concurrent sign-ins share one fsync, each still durable before
        // its cookie is set.
        self.store
            .write_grouped(Box::new(move |txn| {
                let subject = stored.session.data.subject.clone();
                txn.insert(
                    &BY_SUBJECT,
                    &(subject, key.clone()),
                    &stored.session.created_ms,
                )?;
                txn.insert(&SESSIONS, &key, &stored)?;
                Ok(())
            }))
            .await
    }

    /// Starts a session; returns the token for the cookie and the stored session.
    pub async fn create(&self, data: SessionData) -> Result<(String, Session), StoreError> {
        let new = self.prepare(data);
        self.persist(&new).await?;
        Ok((new.token, new.session))
    }

    fn expired(&self, s: &Session, now: u64) -> bool {
        now.saturating_sub(s.last_seen_ms) > self.config.idle_timeout_secs * 1000
            || now.saturating_sub(s.created_ms) > self.config.absolute_timeout_secs * 1000
    }

    /// The stored session of `token` (expired or not), with its key.
    async fn find(&self, token: &str) -> Result<Option<(String, Stored)>, StoreError> {
        let Some(token) = Token::parse(token) else {
            return Ok(None);
        };
        let key = token.stored_key();
        let lookup = key.clone();
        let stored = self
            .store
            .read(move |txn| txn.get(&SESSIONS, &lookup))
            .await?;
        Ok(stored
            .filter(|stored| token.matches(stored))
            .map(|stored| (key, stored)))
    }

    /// The live session for `token`, marking it used; an expired one is removed.
    pub async fn get(&self, token: &str) -> Result<Option<Session>, StoreError> {
        let Some((key, mut stored)) = self.find(token).await? else {
            return Ok(None);
        };
        let now = self.clock.now_millis();
        if self.expired(&stored.session, now) {
            self.remove(key, stored.session.data.subject.clone())
                .await?;
            return Ok(None);
        }
        if now.saturating_sub(stored.session.last_seen_ms) >= TOUCH_EVERY_MS {
            stored.session.last_seen_ms = now;
            let touched = stored.session.clone();
            self.store
                .write(move |txn| {
                    // Only refresh a session that still exists: a concurrent logout wins.
                    if txn.contains(&SESSIONS, &key)? {
                        txn.insert(&SESSIONS, &key, &stored)?;
                    }
                    Ok(())
                })
                .await?;
            return Ok(Some(touched));
        }
        Ok(Some(stored.session))
    }

    async fn remove(&self, key: String, subject: String) -> Result<bool, StoreError> {
        self.store
            .write(move |txn| {
                txn.remove(&BY_SUBJECT, &(subject, key.clone()))?;
                Ok(txn.remove(&SESSIONS, &key)?.is_some())
            })
            .await
    }

    /// Ends the session of `token` (logout). Returns the ended session.
    pub async fn end(&self, token: &str) -> Result<Option<Session>, StoreError> {
        let Some((key, stored)) = self.find(token).await? else {
            return Ok(None);
        };
        let ended = self
            .remove(key, stored.session.data.subject.clone())
            .await?;
        Ok(ended.then_some(stored.session))
    }

    /// Live sessions of `subject`.
    pub async fn list_for(&self, subject: &str) -> Result<Vec<Session>, StoreError> {
        let subject = subject.to_owned();
        let now = self.clock.now_millis();
        let all = self
            .store
            .read(move |txn| {
                let keys = txn.scan_prefix(&BY_SUBJECT, &subject)?;
                let mut out = Vec::new();
                for ((_, key), _) in keys {
                    if let Some(s) = txn.get(&SESSIONS, &key)? {
                        out.push(s.session);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(all.into_iter().filter(|s| !self.expired(s, now)).collect())
    }

    /// Ends the session with public id `id` of `subject`. Returns whether one ended.
    pub async fn revoke(&self, subject: &str, id: &str) -> Result<Option<Session>, StoreError> {
        let subject = subject.to_owned();
        let id = id.to_owned();
        self.store
            .write(move |txn| {
                for ((_, key), _) in txn.scan_prefix(&BY_SUBJECT, &subject)? {
                    if key.get(TIME_HEX..) == Some(id.as_str()) {
                        txn.remove(&BY_SUBJECT, &(subject.clone(), key.clone()))?;
                        return Ok(txn.remove(&SESSIONS, &key)?.map(|s| s.session));
                    }
                }
                Ok(None)
            })
            .await
    }

    /// Ends every session of `subject`; returns their ids.
    pub async fn revoke_all(&self, subject: &str) -> Result<Vec<String>, StoreError> {
        let subject = subject.to_owned();
        self.store
            .write(move |txn| {
                let keys = txn.scan_prefix(&BY_SUBJECT, &subject)?;
                let mut ids = Vec::with_capacity(keys.len());
                for ((s, key), _) in &keys {
                    txn.remove(&BY_SUBJECT, &(s.clone(), key.clone()))?;
                    if let Some(stored) = txn.remove(&SESSIONS, key)? {
                        ids.push(stored.session.id);
                    }
                }
                Ok(ids)
            })
            .await
    }

    /// Removes up to `limit` sessions past their absolute timeout, oldest first (they are
    /// the first keys). Returns how many went. Sessions that only idled out are refused
    /// when used and go once they pass the absolute timeout too.
    pub async fn purge_expired(&self, limit: usize) -> Result<usize, StoreError> {
        let now = self.clock.now_millis();
        let cutoff = now.saturating_sub(self.config.absolute_timeout_secs * 1000);
        let (from, to) = (key_at(0), key_at(cutoff));
        self.store
            .write(move |txn| {
                let old = txn.range_between_each(&SESSIONS, &from, &to, limit)?;
                for (key, stored) in &old {
                    match stored {
                        Ok(stored) => {
                            let subject = stored.session.data.subject.clone();
                            txn.remove(&BY_SUBJECT, &(subject, key.clone()))?;
                            txn.remove(&SESSIONS, key)?;
                        }
                        // Expired either way; left in place it would stop every later
                        // sweep here. Its subject index entry, unreadable now, points
                        // at nothing and is skipped (and cleared by a revoke-all).
                        Err(e) => {
                            tracing::warn!(error = %e, "removing an expired session record that no longer decodes");
                            txn.delete(&SESSIONS, key)?;
                        }
                    }
                }
                Ok(old.len())
            })
            .await
    }
}

/// Most sessions one sweeping transaction removes.
pub const PURGE_CHUNK: usize = 5_000;

#[cfg(test)]
mod tests {
    use super::*;
    use kopa_core::FixedClock;

    fn data(subject: &str) -> SessionData {
        SessionData {
            subject: subject.into(),
            login: "anna".into(),
            display_name: "Anna Bērziņa".into(),
            tenant: Some(TenantId::new("ventspils").unwrap()),
            directory: "ventspils".into(),
            roles: vec![Role::Specialist],
            groups: vec![],
            amr: vec!["pwd".into()],
            email: None,
            given_name: None,
            family_name: None,
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
        }
    }

    fn sessions(dir: &std::path::Path, clock: Arc<FixedClock>) -> Sessions {
        let store = Store::open(dir, &crate::SCHEMA).unwrap();
        let config = SessionConfig {
            idle_timeout_secs: 600,
            absolute_timeout_secs: 3600,
        };
        Sessions::new(store, clock, config)
    }

    #[tokio::test]
    async fn tokens_are_fresh_hashed_and_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(1_000_000_000));
        let s = sessions(dir.path(), clock.clone());
        let (t1, _) = s.create(data("ventspils:1")).await.unwrap();
        let (t2, _) = s.create(data("ventspils:1")).await.unwrap();
        assert_ne!(t1, t2);
        assert!(s.get(&t1).await.unwrap().is_some());
        assert!(s.get("forged").await.unwrap().is_none());

        // Used every 5 minutes: idle never fires, absolute does after an hour.
        for _ in 0..11 {
            clock.advance(300_000);
            assert!(s.get(&t1).await.unwrap().is_some());
        }
        clock.advance(300_001);
        assert!(s.get(&t1).await.unwrap().is_none(), "absolute timeout");
        assert!(s.get(&t2).await.unwrap().is_none(), "idle timeout");
        assert!(s.list_for("ventspils:1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn tokens_never_reach_the_database_and_revocation_works() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(1_000_000_000));
        let s = sessions(dir.path(), clock.clone());
        let (t1, first) = s.create(data("talsi:7")).await.unwrap();
        let (t2, _) = s.create(data("talsi:7")).await.unwrap();
        let (t3, _) = s.create(data("talsi:8")).await.unwrap();
        assert_eq!(s.list_for("talsi:7").await.unwrap().len(), 2);
        assert!(
            s.revoke("talsi:8", &first.id).await.unwrap().is_none(),
            "another user's id"
        );
        assert!(s.revoke("talsi:7", &first.id).await.unwrap().is_some());
        assert!(s.get(&t1).await.unwrap().is_none());
        assert_eq!(s.revoke_all("talsi:7").await.unwrap().len(), 1);
        assert!(s.get(&t2).await.unwrap().is_none());
        assert!(s.end(&t3).await.unwrap().is_some());
        assert!(s.end(&t3).await.unwrap().is_none());
        drop(s);
        let bytes = std::fs::read(dir.path().join("idp.redb")).unwrap();
        // Neither the token nor its secret half is stored.
        for t in [&t1, &t2, &t3] {
            let secret = &Token::parse(t).unwrap().secret;
            assert!(!bytes.windows(SECRET_LEN).any(|w| w == secret));
        }
        for t in [&t1, &t2, &t3] {
            assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()));
        }
    }

    #[tokio::test]
    async fn a_token_needs_its_secret_and_new_sessions_sort_last() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(1_000_000_000));
        let s = sessions(dir.path(), clock.clone());
        let new = s.prepare(data("ventspils:1"));
        assert!(
            !format!("{new:?}").contains(&new.token),
            "no token in Debug"
        );
        let (token, session) = s.create(data("ventspils:1")).await.unwrap();
        let parsed = Token::parse(&token).unwrap();
        assert_eq!(parsed.id(), session.id);

        // The same key with another secret, a truncated token and an old-style one.
        let mut forged = Token::parse(&token).unwrap();
        forged.secret[0] ^= 1;
        for bad in [
            forged.encode(),
            token[..token.len() - 1].to_owned(),
            new_token(),
        ] {
            assert!(s.get(&bad).await.unwrap().is_none(), "{bad}");
            assert!(s.end(&bad).await.unwrap().is_none(), "{bad}");
        }
        assert!(s.get(&token).await.unwrap().is_some());

        clock.advance(1);
        let (later, _) = s.create(data("talsi:2")).await.unwrap();
        assert!(Token::parse(&later).unwrap().stored_key() > parsed.stored_key());
    }

    #[tokio::test]
    async fn the_sweeper_removes_only_sessions_past_the_absolute_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(1_000_000_000));
        let s = sessions(dir.path(), clock.clone());
        let mut old = Vec::new();
        for _ in 0..3 {
            old.push(s.create(data("ventspils:1")).await.unwrap().0);
        }
        clock.advance(1_800_000);
        let (young, _) = s.create(data("ventspils:1")).await.unwrap();
        assert_eq!(s.purge_expired(10).await.unwrap(), 0);
        clock.advance(1_800_001);
        // The first three are past the hour; the young one idled out but stays for now.
        assert_eq!(s.purge_expired(2).await.unwrap(), 2);
        assert_eq!(s.purge_expired(10).await.unwrap(), 1);
        assert_eq!(s.purge_expired(10).await.unwrap(), 0);
        let left = s
            .store
            .read(|txn| Ok((txn.len(&SESSIONS)?, txn.len(&BY_SUBJECT)?)))
            .await
            .unwrap();
        assert_eq!(left, (1, 1));
        assert!(s.get(&young).await.unwrap().is_none(), "idle timeout");
        for t in &old {
            assert!(s.get(t).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn an_undecodable_expired_record_does_not_stop_the_sweeper() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(1_000_000_000));
        let s = sessions(dir.path(), clock.clone());
        // A record under the sessions table's name that is not a session at all.
        let raw = Table::<String, u64>::new("sso_sessions");
        s.store
            .write(move |txn| txn.insert(&raw, &key_at(5), &7).map(|_| ()))
            .await
            .unwrap();
        s.create(data("ventspils:1")).await.unwrap();
        clock.advance(3_600_001);
        let (young, _) = s.create(data("ventspils:1")).await.unwrap();
        assert_eq!(s.purge_expired(10).await.unwrap(), 2);
        assert_eq!(s.purge_expired(10).await.unwrap(), 0);
        let left = s.store.read(|txn| txn.len(&SESSIONS)).await.unwrap();
        assert_eq!(left, 1);
        assert!(s.get(&young).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn the_upgrade_drops_sessions_keyed_by_token_hash() {
        let dir = tempfile::tempdir().unwrap();
        let before: &'static kopa_store::Schema = Box::leak(Box::new(kopa_store::Schema {
            service: "idp",
            cache_bytes: None,
            migrations: &crate::SCHEMA.migrations[..6],
        }));
        let old = Table::<String, u64>::new(OLD_SESSIONS);
        let store = Store::open(dir.path(), before).unwrap();
        store
            .write(move |txn| txn.insert(&old, &"f".repeat(64), &1).map(|_| ()))
            .await
            .unwrap();
        drop(store);

        let clock = Arc::new(FixedClock::at(1_000_000_000));
        let s = sessions(dir.path(), clock);
        let old = Table::<String, u64>::new(OLD_SESSIONS);
        let left = s.store.read(move |txn| txn.len(&old)).await.unwrap();
        assert_eq!(left, 0);
        let (token, _) = s.create(data("ventspils:1")).await.unwrap();
        assert!(s.get(&token).await.unwrap().is_some());
    }
}
