//! [`Directories`]: every configured directory, found by id or by the domain of
//! `name@domain`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kopa_config::{DirectoryConfig, DirectoryKind};

use super::{Directory, DirectoryInfo, LdapDirectory, LocalDirectory};
use crate::LocalAccounts;

/// Longest `name@domain` considered at all, in bytes.
const MAX_INPUT_BYTES: usize = 1024;

/// Why the configured directories cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Two directories share an id.
    #[error("Directory id {0:?} is used twice")]
    DuplicateId(String),
    /// Two directories claim one domain.
    #[error("Domain {domain:?} is claimed by directories {first} and {second}")]
    DuplicateDomain {
        /// The domain, lowercase.
        domain: String,
        /// The first directory claiming it.
        first: String,
        /// The second.
        second: String,
    },
    /// A `kind = "local"` directory, but no local account store was given.
    #[error("Directory {0} needs the local account store")]
    NoLocalAccounts(String),
    /// A value that `Config::validate` refuses (the configuration was not validated).
    #[error("Directory {directory}: {reason}")]
    Invalid {
        /// The directory id.
        directory: String,
        /// What is wrong.
        reason: String,
    },
    /// A file named by the configuration cannot be used.
    #[error("Directory {directory}: cannot use {}: {reason}", path.display())]
    File {
        /// The directory id.
        directory: String,
        /// The file (`ca_file`, `bind_password_file`).
        path: PathBuf,
        /// What is wrong (never file content).
        reason: String,
    },
}

/// Why `name@domain` does not lead to a directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No `@domain`: the user has to pick the institution.
    #[error("No domain given")]
    NoDomain,
    /// No directory owns the domain.
    #[error("Unknown domain")]
    UnknownDomain,
    /// Empty name, or input far too long to be a login.
    #[error("Invalid login")]
    InvalidLogin,
}

/// Every configured directory.
#[derive(Debug, Clone, Default)]
pub struct Directories {
    list: Vec<Arc<dyn Directory>>,
    by_id: HashMap<String, usize>,
    by_domain: HashMap<String, usize>,
}

impl Directories {
    /// Builds the directories of `configs`; `local` backs the `kind = "local"` ones.
    /// Reads the CA and service password files; connects to nothing yet (LDAP
    /// connections are opened by the first sign-in or readiness check).
    pub fn from_config(
        configs: &[DirectoryConfig],
        local: Option<&LocalAccounts>,
    ) -> Result<Self, BuildError> {
        let mut list: Vec<Arc<dyn Directory>> = Vec::with_capacity(configs.len());
        for config in configs {
            let directory: Arc<dyn Directory> = match config.kind {
                DirectoryKind::Ldap => Arc::new(LdapDirectory::from_config(config)?),
                DirectoryKind::Local => {
                    let accounts = local
                        .cloned()
                        .ok_or_else(|| BuildError::NoLocalAccounts(config.id.clone()))?;
                    Arc::new(LocalDirectory::new(info_of(config)?, accounts))
                }
            };
            list.push(directory);
        }
        Self::new(list)
    }

    /// A registry over directories built elsewhere (tests, other kinds).
    pub fn new(list: Vec<Arc<dyn Directory>>) -> Result<Self, BuildError> {
        let mut by_id = HashMap::new();
        let mut by_domain: HashMap<String, usize> = HashMap::new();
        for (index, directory) in list.iter().enumerate() {
            if by_id.insert(directory.id().to_owned(), index).is_some() {
                return Err(BuildError::DuplicateId(directory.id().to_owned()));
            }
            for domain in directory.domains() {
                let domain = domain.to_lowercase();
                if let Some(&first) = by_domain.get(&domain) {
                    return Err(BuildError::DuplicateDomain {
                        domain,
                        first: list[first].id().to_owned(),
                        second: directory.id().to_owned(),
                    });
                }
                by_domain.insert(domain, index);
            }
        }
        Ok(Self {
            list,
            by_id,
            by_domain,
        })
    }

    /// Splits `name@domain` at the last `@` and finds the directory that owns the
    /// domain (without regard to case). Surrounding whitespace is ignored. Returns the
    /// directory and the name to look up in it.
    pub fn resolve(&self, input: &str) -> Result<(Arc<dyn Directory>, String), ResolveError> {
        let input = input.trim();
        if input.len() > MAX_INPUT_BYTES {
            return Err(ResolveError::InvalidLogin);
        }
        let (name, domain) = input.rsplit_once('@').ok_or(ResolveError::NoDomain)?;
        if name.is_empty() {
            return Err(ResolveError::InvalidLogin);
        }
        let index = self
            .by_domain
            .get(&domain.to_lowercase())
            .ok_or(ResolveError::UnknownDomain)?;
        Ok((self.list[*index].clone(), name.to_owned()))
    }

    /// The directory with this id (the institution picker's choice).
    pub fn get(&self, id: &str) -> Option<Arc<dyn Directory>> {
        self.by_id.get(id).map(|&i| self.list[i].clone())
    }

    /// Every directory, in configuration order, for the institution picker.
    pub fn list(&self) -> Vec<DirectoryInfo> {
        self.list.iter().map(|d| d.info().clone()).collect()
    }

    /// The directories themselves, in configuration order (readiness checks).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Directory>> {
        self.list.iter()
    }

    /// How many directories there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The picker's view of a configured directory.
pub(super) fn info_of(config: &DirectoryConfig) -> Result<DirectoryInfo, BuildError> {
    let tenant = config.tenant_id().ok_or_else(|| BuildError::Invalid {
        directory: config.id.clone(),
        reason: format!("invalid tenant id {:?}", config.tenant),
    })?;
    Ok(DirectoryInfo {
        id: config.id.clone(),
        tenant,
        display_name_lv: config.display_name_lv.clone(),
        display_name_en: config.display_name_en().to_owned(),
        domains: config.domains.iter().map(|d| d.to_lowercase()).collect(),
        kind: config.kind,
    })
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;
    use futures_util::future::BoxFuture;
    use kopa_config::Secret;
    use kopa_core::TenantId;

    use super::*;
    use crate::directory::{AuthFailure, CheckError, DirectoryUser};

    #[derive(Debug)]
    struct Fake(DirectoryInfo);

    impl Directory for Fake {
        fn info(&self) -> &DirectoryInfo {
            &self.0
        }
        fn authenticate<'a>(
            &'a self,
            _: &'a str,
            _: &'a Secret,
        ) -> BoxFuture<'a, Result<DirectoryUser, AuthFailure>> {
            async { Err(AuthFailure::Unavailable) }.boxed()
        }
        fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
            async { Ok(()) }.boxed()
        }
    }

    fn fake(id: &str, domains: &[&str]) -> Arc<dyn Directory> {
        Arc::new(Fake(DirectoryInfo {
            id: id.into(),
            tenant: TenantId::new(id).unwrap(),
            display_name_lv: id.into(),
            display_name_en: id.into(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            kind: DirectoryKind::Ldap,
        }))
    }

    #[test]
    fn resolves_the_domain_without_regard_to_case() {
        let dirs = Directories::new(vec![
            fake("ventspils", &["ventspils.lv"]),
            fake("talsi", &["talsi.lv", "talsunovads.lv"]),
        ])
        .unwrap();
        let (d, name) = dirs.resolve(" Anna.Berzina@VENTSPILS.lv ").unwrap();
        assert_eq!((d.id(), name.as_str()), ("ventspils", "Anna.Berzina"));
        let (d, name) = dirs.resolve("a@b@talsunovads.lv").unwrap();
        assert_eq!((d.id(), name.as_str()), ("talsi", "a@b"));
        assert_eq!(dirs.resolve("anna").err(), Some(ResolveError::NoDomain));
        assert_eq!(
            dirs.resolve("anna@riga.lv").err(),
            Some(ResolveError::UnknownDomain)
        );
        assert_eq!(
            dirs.resolve("@talsi.lv").err(),
            Some(ResolveError::InvalidLogin)
        );
        let long = format!("{}@talsi.lv", "a".repeat(2000));
        assert_eq!(dirs.resolve(&long).err(), Some(ResolveError::InvalidLogin));
        assert_eq!(
            dirs.get("talsi").map(|d| d.id().to_owned()).as_deref(),
            Some("talsi")
        );
        assert!(dirs.get("riga").is_none());
        let ids: Vec<String> = dirs.list().into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["ventspils", "talsi"]);
    }

    #[test]
    fn duplicates_are_refused() {
        let dup_id = Directories::new(vec![fake("a", &[]), fake("a", &[])]);
        assert!(matches!(dup_id, Err(BuildError::DuplicateId(_))));
        let dup_domain = Directories::new(vec![fake("a", &["x.lv"]), fake("b", &["X.LV"])]);
        assert!(matches!(
            dup_domain,
            Err(BuildError::DuplicateDomain { .. })
        ));
    }

    #[test]
    fn local_directories_need_the_account_store() {
        let config = kopa_config::DirectoryConfig::local("local", "kopa", "Kopa");
        assert!(matches!(
            Directories::from_config(&[config], None),
            Err(BuildError::NoLocalAccounts(_))
        ));
    }
}
