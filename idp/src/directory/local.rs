//! The appliance's own accounts as a directory (`kind = "local"`), for break-glass
//! administrators and demos.

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use kopa_config::Secret;

use super::input::{check_login, check_password};
use super::{AuthFailure, CheckError, Directory, DirectoryInfo, DirectoryUser};
use crate::{LocalAccounts, LocalAuthError};

/// Local accounts of one tenant, plus the platform-level accounts (no tenant).
#[derive(Debug)]
pub struct LocalDirectory {
    info: DirectoryInfo,
    accounts: LocalAccounts,
}

impl LocalDirectory {
    /// A directory over `accounts`, described by `info`.
    pub fn new(info: DirectoryInfo, accounts: LocalAccounts) -> Self {
        Self { info, accounts }
    }

    async fn sign_in(&self, login: &str, password: &Secret) -> Result<DirectoryUser, AuthFailure> {
        check_login(login)?;
        check_password(password)?;
        let account = match self.accounts.authenticate(login, password.clone()).await {
            Ok(account) => account,
            Err(LocalAuthError::UnknownUser) => return Err(AuthFailure::UnknownUser),
            Err(LocalAuthError::WrongPassword) => return Err(AuthFailure::WrongPassword),
            Err(LocalAuthError::Disabled) => return Err(AuthFailure::Disabled),
            Err(LocalAuthError::Failed(e)) => {
                tracing::error!(directory = %self.info.id, error = %e, "Local account check failed");
                return Err(AuthFailure::Unavailable);
            }
        };
        // Another tenant's local account must not sign in through this tenant's entry.
        if account
            .tenant
            .as_ref()
            .is_some_and(|tenant| *tenant != self.info.tenant)
        {
            return Err(AuthFailure::UnknownUser);
        }
        Ok(DirectoryUser {
            directory_id: self.info.id.clone(),
            tenant: self.info.tenant.clone(),
            subject: account.username.clone(),
            login: account.username,
            dn: None,
            display_name: account.display_name,
            given_name: None,
            surname: None,
            mail: None,
            employee_id: None,
            groups: Vec::new(),
            roles: sorted(account.roles),
            server: None,
        })
    }
}

fn sorted(mut roles: Vec<kopa_core::Role>) -> Vec<kopa_core::Role> {
    roles.sort();
    roles.dedup();
    roles
}

impl Directory for LocalDirectory {
    fn info(&self) -> &DirectoryInfo {
        &self.info
    }

    fn authenticate<'a>(
        &'a self,
        login: &'a str,
        password: &'a Secret,
    ) -> BoxFuture<'a, Result<DirectoryUser, AuthFailure>> {
        self.sign_in(login, password).boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        async move {
            self.accounts
                .list()
                .await
                .map(drop)
                .map_err(|e| CheckError {
                    directory: self.info.id.clone(),
                    reason: e.to_string(),
                })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kopa_config::DirectoryKind;
    use kopa_core::{FixedClock, Role, TenantId};
    use kopa_store::Store;

    use super::*;
    use crate::{NewAccount, SCHEMA};

    async fn directory(dir: &std::path::Path) -> LocalDirectory {
        let store = Store::open(dir, &SCHEMA).unwrap();
        let accounts = LocalAccounts::new(store, Arc::new(FixedClock::at(1_700_000_000_000)));
        for (name, tenant) in [
            ("root-admin", None),
            ("talsu-admins", Some("talsi")),
            ("liga", Some("ventspils")),
        ] {
            accounts
                .create(NewAccount {
                    username: name.into(),
                    display_name: String::new(),
                    tenant: tenant.map(|t| TenantId::new(t).unwrap()),
                    roles: vec![Role::TenantAdmin, Role::Auditor],
                    password: Some(Secret::new("Labs-Parole-1".into())),
                })
                .await
                .unwrap();
        }
        let info = DirectoryInfo {
            id: "local".into(),
            tenant: TenantId::new("ventspils").unwrap(),
            display_name_lv: "Lokālie konti".into(),
            display_name_en: "Local accounts".into(),
            domains: vec!["kopa.local".into()],
            kind: DirectoryKind::Local,
        };
        LocalDirectory::new(info, accounts)
    }

    #[tokio::test]
    async fn local_accounts_of_this_tenant_and_the_platform_sign_in() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path()).await;
        let pw = Secret::new("Labs-Parole-1".into());
        let user = d.authenticate("liga", &pw).await.unwrap();
        assert_eq!(user.roles, [Role::TenantAdmin, Role::Auditor]);
        assert_eq!(user.qualified_subject(), "local:liga");
        assert_eq!(user.tenant.as_str(), "ventspils");
        assert!(d.authenticate("root-admin", &pw).await.is_ok());
        assert_eq!(
            d.authenticate("talsu-admins", &pw).await,
            Err(AuthFailure::UnknownUser),
            "another tenant's account"
        );
        let wrong = Secret::new("Slikta-Parole".into());
        assert_eq!(
            d.authenticate("liga", &wrong).await,
            Err(AuthFailure::WrongPassword)
        );
        assert_eq!(
            d.authenticate("nav", &pw).await,
            Err(AuthFailure::UnknownUser)
        );
        let empty = Secret::new(String::new());
        assert_eq!(
            d.authenticate("liga", &empty).await,
            Err(AuthFailure::InvalidInput)
        );
        assert!(d.check().await.is_ok());
    }
}
