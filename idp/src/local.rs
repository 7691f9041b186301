//! Local accounts: break-glass platform administrators (and demo users) that do not live
//! in any municipal directory. Passwords are stored only as argon2id PHC strings.

use crate::{IdpError, password};
use kopa_config::Secret;
use kopa_core::{Clock, Role, TenantId};
use kopa_store::{Store, Table};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A stored local account.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LocalAccount {
    username: String,
    display_name: String,
    tenant: Option<TenantId>,
    roles: Vec<Role>,
    password_hash: String,
    created_at_ms: u64,
    password_changed_at_ms: u64,
    disabled: bool,
}

/// What may be shown about an account: everything but the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSummary {
    /// Login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Tenant, `None` for platform-level accounts.
    pub tenant: Option<TenantId>,
    /// Roles held.
    pub roles: Vec<Role>,
    /// Creation time.
    pub created_at_ms: u64,
    /// Whether sign-in is refused.
    pub disabled: bool,
}

impl From<&LocalAccount> for AccountSummary {
    fn from(a: &LocalAccount) -> Self {
        Self {
            username: a.username.clone(),
            display_name: a.display_name.clone(),
            tenant: a.tenant.clone(),
            roles: a.roles.clone(),
            created_at_ms: a.created_at_ms,
            disabled: a.disabled,
        }
    }
}

/// A request to create an account.
#[derive(Debug)]
pub struct NewAccount {
    /// Login name: 1–64 of `a-z 0-9 . _ -`, starting with a letter.
    pub username: String,
    /// Name shown in the UI; the username when empty.
    pub display_name: String,
    /// Tenant, `None` for platform-level accounts.
    pub tenant: Option<TenantId>,
    /// Roles held; at least one.
    pub roles: Vec<Role>,
    /// The password; `None` generates one and returns it once.
    pub password: Option<Secret>,
}

/// Why a local sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalAuthError {
    /// No account of that name.
    #[error("Unknown local account")]
    UnknownUser,
    /// The password is wrong.
    #[error("Wrong password")]
    WrongPassword,
    /// The account is disabled.
    #[error("Local account disabled")]
    Disabled,
    /// The check itself failed (storage, hashing).
    #[error("Cannot check the password")]
    Failed(#[source] IdpError),
}

const ACCOUNTS: Table<String, LocalAccount> = Table::new("local_accounts");

/// Migration 1 of `idp.redb`.
pub(crate) fn create_accounts_table(
    txn: &kopa_store::WriteTxn<'_>,
) -> Result<(), kopa_store::StoreError> {
    txn.open_table(&ACCOUNTS)
}

/// Whether `name` is an acceptable local username.
pub fn valid_username(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// Minimum length of a password chosen by an operator (Latvian minimum rules: 9).
pub const MIN_PASSWORD_LEN: usize = 9;

/// The local account repository.
#[derive(Debug, Clone)]
pub struct LocalAccounts {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl LocalAccounts {
    /// Accounts kept in `store` (the IdP database).
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Creates an account; returns its summary and, when it was generated, the password
    /// (to be shown once and never again).
    pub async fn create(
        &self,
        new: NewAccount,
    ) -> Result<(AccountSummary, Option<Secret>), IdpError> {
        if !valid_username(&new.username) {
            return Err(IdpError::Invalid(
                "Username must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter".into(),
            ));
        }
        if new.roles.is_empty() {
            return Err(IdpError::Invalid(
                "An account needs at least one role".into(),
            ));
        }
        if let Some(pw) = &new.password
            && pw.expose().chars().count() < MIN_PASSWORD_LEN
        {
            return Err(IdpError::Invalid(format!(
                "Password must have at least {MIN_PASSWORD_LEN} characters"
            )));
        }
        let (password, generated) = match new.password {
            Some(pw) => (pw, false),
            None => (password::generate(), true),
        };
        let phc = hash_off_thread(password.clone()).await?;
        let now = self.clock.now_millis();
        let account = LocalAccount {
            display_name: if new.display_name.is_empty() {
                new.username.clone()
            } else {
                new.display_name
            },
            username: new.username,
            tenant: new.tenant,
            roles: new.roles,
            password_hash: phc,
            created_at_ms: now,
            password_changed_at_ms: now,
            disabled: false,
        };
        let summary = AccountSummary::from(&account);
        let inserted = self
            .store
            .write(move |txn| {
                if txn.get(&ACCOUNTS, &account.username)?.is_some() {
                    return Ok(false);
                }
                txn.insert(&ACCOUNTS, &account.username, &account)?;
                Ok(true)
            })
            .await?;
        if !inserted {
            return Err(IdpError::AccountExists(summary.username));
        }
        Ok((summary, generated.then_some(password)))
    }

    /// Every account, by username.
    pub async fn list(&self) -> Result<Vec<AccountSummary>, IdpError> {
        let all = self.store.read(|txn| txn.iter(&ACCOUNTS)).await?;
        Ok(all.iter().map(|(_, a)| AccountSummary::from(a)).collect())
    }

    /// Sets a new generated password and returns it (once).
    pub async fn reset_password(&self, username: &str) -> Result<Secret, IdpError> {
        let password = password::generate();
        let phc = hash_off_thread(password.clone()).await?;
        let now = self.clock.now_millis();
        let name = username.to_owned();
        let found = self
            .store
            .write(move |txn| {
                let Some(mut account) = txn.get(&ACCOUNTS, &name)? else {
                    return Ok(false);
                };
                account.password_hash = phc;
                account.password_changed_at_ms = now;
                txn.insert(&ACCOUNTS, &name, &account)?;
                Ok(true)
            })
            .await?;
        if found {
            Ok(password)
        } else {
            Err(IdpError::NoSuchAccount(username.to_owned()))
        }
    }

    /// Whether `password` is right for an enabled account `username`. Unknown accounts cost
    /// the same hashing time, so timing does not reveal which names exist.
    pub async fn verify_password(
        &self,
        username: &str,
        password: Secret,
    ) -> Result<bool, IdpError> {
        match self.authenticate(username, password).await {
            Ok(_) => Ok(true),
            Err(LocalAuthError::Failed(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Signs `username` in with `password`, telling an unknown account from a wrong
    /// password and a disabled account (for the audit log). Every path costs one
    /// password hash, so timing does not reveal which names exist.
    pub async fn authenticate(
        &self,
        username: &str,
        password: Secret,
    ) -> Result<AccountSummary, LocalAuthError> {
        let name = username.to_owned();
        let account = self
            .store
            .read(move |txn| txn.get(&ACCOUNTS, &name))
            .await
            .map_err(|e| LocalAuthError::Failed(e.into()))?;
        let phc = match &account {
            Some(a) => a.password_hash.clone(),
            None => dummy_hash().await.map_err(LocalAuthError::Failed)?,
        };
        let ok = tokio::task::spawn_blocking(move || password::verify(&password, &phc))
            .await
            .map_err(|_| LocalAuthError::Failed(IdpError::Hash))?
            .map_err(LocalAuthError::Failed)?;
        match account {
            None => Err(LocalAuthError::UnknownUser),
            Some(a) if a.disabled => Err(LocalAuthError::Disabled),
            Some(_) if !ok => Err(LocalAuthError::WrongPassword),
            Some(a) => Ok(AccountSummary::from(&a)),
        }
    }

    /// Creates the first platform administrator when no enabled one exists. Returns the
    /// summary and the generated password when it created one; `None` on later starts.
    pub async fn bootstrap_admin(
        &self,
        username: &str,
        password: Option<Secret>,
    ) -> Result<Option<(AccountSummary, Option<Secret>)>, IdpError> {
        let has_admin = self
            .list()
            .await?
            .iter()
            .any(|a| !a.disabled && a.roles.contains(&Role::PlatformAdmin));
        if has_admin {
            return Ok(None);
        }
        let created = self
            .create(NewAccount {
                username: username.to_owned(),
                display_name: "Platform administrator".into(),
                tenant: None,
                roles: vec![Role::PlatformAdmin],
                password,
            })
            .await?;
        Ok(Some(created))
    }
}

async fn hash_off_thread(password: Secret) -> Result<String, IdpError> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|_| IdpError::Hash)?
}

async fn dummy_hash() -> Result<String, IdpError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash_off_thread(password::generate()))
        .await
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SCHEMA;
    use kopa_core::FixedClock;

    fn accounts(dir: &std::path::Path) -> LocalAccounts {
        let store = Store::open(dir, &SCHEMA).unwrap();
        LocalAccounts::new(store, Arc::new(FixedClock::at(1_700_000_000_000)))
    }

    #[tokio::test]
    async fn bootstrap_creates_one_admin_once() {
        let dir = tempfile::tempdir().unwrap();
        let accts = accounts(dir.path());
        let (summary, pw) = accts.bootstrap_admin("admin", None).await.unwrap().unwrap();
        assert_eq!(summary.roles, vec![Role::PlatformAdmin]);
        let pw = pw.unwrap();
        assert!(accts.verify_password("admin", pw.clone()).await.unwrap());
        assert!(
            !accts
                .verify_password("admin", Secret::new("wrong-password".into()))
                .await
                .unwrap()
        );
        assert!(
            accts
                .bootstrap_admin("admin", None)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(accts.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn create_validates_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let accts = accounts(dir.path());
        let new = |name: &str, pw: Option<&str>| NewAccount {
            username: name.into(),
            display_name: String::new(),
            tenant: None,
            roles: vec![Role::Auditor],
            password: pw.map(|p| Secret::new(p.into())),
        };
        assert!(matches!(
            accts.create(new("Bad Name", None)).await,
            Err(IdpError::Invalid(_))
        ));
        assert!(matches!(
            accts.create(new("short", Some("abc"))).await,
            Err(IdpError::Invalid(_))
        ));
        let (_, generated) = accts
            .create(new("anna", Some("Labs-Parole-1")))
            .await
            .unwrap();
        assert!(generated.is_none());
        assert!(matches!(
            accts.create(new("anna", None)).await,
            Err(IdpError::AccountExists(_))
        ));
        assert!(
            accts
                .verify_password("anna", Secret::new("Labs-Parole-1".into()))
                .await
                .unwrap()
        );
        assert!(
            !accts
                .verify_password("nobody", Secret::new("Labs-Parole-1".into()))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn authenticate_tells_unknown_from_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let accts = accounts(dir.path());
        let pw = |s: &str| Secret::new(s.into());
        accts
            .create(NewAccount {
                username: "ilze".into(),
                display_name: "Ilze Šmite".into(),
                tenant: None,
                roles: vec![Role::Auditor],
                password: Some(pw("Talsu-Parole-7")),
            })
            .await
            .unwrap();
        let ok = accts
            .authenticate("ilze", pw("Talsu-Parole-7"))
            .await
            .unwrap();
        assert_eq!(ok.display_name, "Ilze Šmite");
        assert!(matches!(
            accts.authenticate("ilze", pw("nepareizi")).await,
            Err(LocalAuthError::WrongPassword)
        ));
        assert!(matches!(
            accts.authenticate("nav", pw("Talsu-Parole-7")).await,
            Err(LocalAuthError::UnknownUser)
        ));
    }

    #[tokio::test]
    async fn reset_replaces_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let accts = accounts(dir.path());
        let (_, old) = accts
            .bootstrap_admin("root-admin", None)
            .await
            .unwrap()
            .unwrap();
        let new = accts.reset_password("root-admin").await.unwrap();
        assert!(
            !accts
                .verify_password("root-admin", old.unwrap())
                .await
                .unwrap()
        );
        assert!(accts.verify_password("root-admin", new).await.unwrap());
        assert!(matches!(
            accts.reset_password("ghost").await,
            Err(IdpError::NoSuchAccount(_))
        ));
    }
}
