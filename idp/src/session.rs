//! Single sign-on sessions, kept in `idp.redb` so they survive a restart.
//!
//! The browser holds a random 256-bit token; the database holds only its SHA-256, so a
//! copy of the database (or a backup) does not hand out live sessions. A session ends at
//! its idle or absolute timeout, at logout, or when an administrator revokes it.

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
    /// Short public handle (first 16 hex characters of the token hash) for admin lists.
    pub id: String,
    /// Sign-in facts.
    pub data: SessionData,
    /// Sign-in time, ms since the epoch.
    pub created_ms: u64,
    /// Last use, ms since the epoch (updated at most once a minute).
    pub last_seen_ms: u64,
}

const SESSIONS: Table<String, Session> = Table::new("sessions");
/// (subject, token hash) → (), to list and revoke one user's sessions.
const BY_SUBJECT: Table<(String, String), u64> = Table::new("sessions_by_subject");

/// Creates this module's tables (migration 2 of `idp.redb`).
pub(crate) fn create_tables(txn: &kopa_store::WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&SESSIONS)?;
    txn.open_table(&BY_SUBJECT)
}

/// How often `last_seen` is written: each write is an fsync, and a minute is far below
/// any sensible idle timeout.
const TOUCH_EVERY_MS: u64 = 60_000;

pub(crate) fn hash_token(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    hex_lower(digest.as_ref())
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random token: 32 bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A session made by [`Sessions::prepare`], to be stored by [`Sessions::persist`].
#[derive(Debug)]
pub struct NewSession {
    /// The cookie value; never stored.
    pub token: String,
    hash: String,
    /// The session as it will be stored.
    pub session: Session,
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
        let token = new_token();
        let hash = hash_token(&token);
        let now = self.clock.now_millis();
        let session = Session {
            id: hash[..16].to_owned(),
            data,
            created_ms: now,
            last_seen_ms: now,
        };
        NewSession {
            token,
            hash,
            session,
        }
    }

    /// Stores a prepared session; `Ok` means durable.
    pub async fn persist(&self, new: &NewSession) -> Result<(), StoreError> {
        let stored = new.session.clone();
        let hash = new.hash.clone();
        let now = stored.created_ms;
        // Group-committed: concurrent sign-ins share one fsync, each still durable before
        // its cookie is set.
        self.store
            .write_grouped(Box::new(move |txn| {
                txn.insert(
                    &BY_SUBJECT,
                    &(stored.data.subject.clone(), hash.clone()),
                    &now,
                )?;
                txn.insert(&SESSIONS, &hash, &stored)?;
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

    /// The live session for `token`, marking it used; an expired one is removed.
    pub async fn get(&self, token: &str) -> Result<Option<Session>, StoreError> {
        let hash = hash_token(token);
        let key = hash.clone();
        let Some(session) = self.store.read(move |txn| txn.get(&SESSIONS, &key)).await? else {
            return Ok(None);
        };
        let now = self.clock.now_millis();
        if self.expired(&session, now) {
            self.remove(hash, session.data.subject.clone()).await?;
            return Ok(None);
        }
        if now.saturating_sub(session.last_seen_ms) >= TOUCH_EVERY_MS {
            let mut touched = session.clone();
            touched.last_seen_ms = now;
            let stored = touched.clone();
            self.store
                .write(move |txn| {
                    // Only refresh a session that still exists: a concurrent logout wins.
                    if txn.get(&SESSIONS, &hash)?.is_some() {
                        txn.insert(&SESSIONS, &hash, &stored)?;
                    }
                    Ok(())
                })
                .await?;
            return Ok(Some(touched));
        }
        Ok(Some(session))
    }

    async fn remove(&self, hash: String, subject: String) -> Result<bool, StoreError> {
        self.store
            .write(move |txn| {
                txn.remove(&BY_SUBJECT, &(subject, hash.clone()))?;
                Ok(txn.remove(&SESSIONS, &hash)?.is_some())
            })
            .await
    }

    /// Ends the session of `token` (logout). Returns the ended session.
    pub async fn end(&self, token: &str) -> Result<Option<Session>, StoreError> {
        let hash = hash_token(token);
        let key = hash.clone();
        let Some(session) = self.store.read(move |txn| txn.get(&SESSIONS, &key)).await? else {
            return Ok(None);
        };
        self.remove(hash, session.data.subject.clone()).await?;
        Ok(Some(session))
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
                for ((_, hash), _) in keys {
                    if let Some(s) = txn.get(&SESSIONS, &hash)? {
                        out.push(s);
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
                for ((_, hash), _) in txn.scan_prefix(&BY_SUBJECT, &subject)? {
                    if hash.starts_with(&id) && id.len() == 16 {
                        txn.remove(&BY_SUBJECT, &(subject.clone(), hash.clone()))?;
                        return txn.remove(&SESSIONS, &hash);
                    }
                }
                Ok(None)
            })
            .await
    }

    /// Ends every session of `subject`; returns how many.
    pub async fn revoke_all(&self, subject: &str) -> Result<Vec<String>, StoreError> {
        let subject = subject.to_owned();
        self.store
            .write(move |txn| {
                let keys = txn.scan_prefix(&BY_SUBJECT, &subject)?;
                let mut ids = Vec::with_capacity(keys.len());
                for ((s, hash), _) in &keys {
                    txn.remove(&BY_SUBJECT, &(s.clone(), hash.clone()))?;
                    if let Some(session) = txn.remove(&SESSIONS, hash)? {
                        ids.push(session.id);
                    }
                }
                Ok(ids)
            })
            .await
    }
}

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
        for t in [&t1, &t2, &t3] {
            assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()));
        }
    }
}
