//! An LDAP directory (`kind = "ldap"`): search-then-bind over pooled TLS connections,
//! with failover across the configured URLs.
//!
//! A sign-in searches for the user with the service account (the login escaped into
//! `user_filter`), wants exactly one entry, applies the account rules (disabled,
//! locked), binds as the entry's DN on a separate connection, then reads groups and
//! maps them to roles. URLs are tried in order; one that fails is skipped for
//! `retry_after_secs`, then tried first again. When every URL is in back-off, the one
//! that has waited longest is probed, so a lone server that recovers is used again at
//! once and an outage answers `Unavailable` within about one connect timeout.

mod mapping;
mod server;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use kopa_config::{DirectoryConfig, GroupLookup, LdapUrl, Secret, read_secret_file};
use ldap3::{Scope, SearchOptions, SearchResult};
use tokio::time::Instant;

use self::mapping::{Attrs, Group, Mapping};
use self::server::{Connector, Failure, Purpose, Server};
use super::input::{check_login, check_password};
use super::registry::info_of;
use super::{AuthFailure, BuildError, CheckError, Directory, DirectoryInfo, DirectoryUser};

/// Most groups read for one user.
const MAX_GROUPS: i32 = 1000;

/// An LDAP directory and its servers.
#[derive(Debug)]
pub struct LdapDirectory {
    info: DirectoryInfo,
    mapping: Mapping,
    /// What the user search asks for (from the mapping, computed once).
    user_attributes: Vec<String>,
    servers: Vec<Server>,
}

/// Result codes (RFC 4511) that mean the server, not the request, is in trouble.
fn server_trouble(rc: u32) -> bool {
    // busy, unavailable, timeLimitExceeded, adminLimitExceeded, other
    matches!(rc, 51 | 52 | 3 | 11 | 80)
}

/// The attributes a sign-in asks the directory `config` describes for (login, subject,
/// the attribute map, `memberOf` when groups come from it, and the account rules'
/// attributes), so that a baseline client can request exactly the same.
pub fn user_search_attributes(config: &DirectoryConfig) -> Result<Vec<String>, String> {
    Mapping::from_config(config).map(|m| m.user_attributes())
}

impl LdapDirectory {
    /// The directory of a validated `[[directory]]` entry with `kind = "ldap"`. Reads
    /// `ca_file` and `bind_password_file`; opens no connection.
    pub fn from_config(config: &DirectoryConfig) -> Result<Self, BuildError> {
        let info = info_of(config)?;
        let invalid = |reason: String| BuildError::Invalid {
            directory: config.id.clone(),
            reason,
        };
        let mapping = Mapping::from_config(config).map_err(invalid)?;
        let bind_dn = config
            .bind_dn
            .clone()
            .ok_or_else(|| invalid("bind_dn is not set".into()))?;
        let password_file = config
            .bind_password_file
            .as_deref()
            .ok_or_else(|| invalid("bind_password_file is not set".into()))?;
        let bind_password = read_secret_file(password_file).map_err(|e| BuildError::File {
            directory: config.id.clone(),
            path: password_file.to_owned(),
            reason: e.to_string(),
        })?;
        let tls =
            tls_config(config.ca_file.as_deref()).map_err(|reason| match &config.ca_file {
                Some(path) => BuildError::File {
                    directory: config.id.clone(),
                    path: path.clone(),
                    reason,
                },
                None => invalid(reason),
            })?;
        let connector = Arc::new(Connector {
            tls,
            starttls: config.starttls,
            connect_timeout: Duration::from_secs(config.connect_timeout_secs),
            operation_timeout: Duration::from_secs(config.operation_timeout_secs),
            bind_dn,
            bind_password,
        });
        let pool_size = usize::try_from(config.pool_size).unwrap_or(1).max(1);
        let retry_after = Duration::from_secs(config.retry_after_secs);
        let mut servers = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let target = LdapUrl::parse(url).map_err(invalid)?;
            // Refused by validate() too: plain LDAP would carry passwords in clear text.
            if !target.tls && !config.starttls && !config.allow_insecure {
                return Err(invalid(format!("{url} would send passwords unencrypted")));
            }
            servers.push(Server::new(
                url.clone(),
                target,
                connector.clone(),
                pool_size,
                retry_after,
            ));
        }
        if servers.is_empty() {
            return Err(invalid("no urls".into()));
        }
        Ok(Self {
            info,
            user_attributes: mapping.user_attributes(),
            mapping,
            servers,
        })
    }

    /// The servers to try, in order: those not in back-off; when all are, the one
    /// whose back-off ends first.
    fn candidates(&self) -> Vec<&Server> {
        let now = Instant::now();
        let healthy: Vec<&Server> = self
            .servers
            .iter()
            .filter(|s| s.down_until(now).is_none())
            .collect();
        if !healthy.is_empty() {
            return healthy;
        }
        self.servers
            .iter()
            .min_by_key(|s| s.down_until(now))
            .into_iter()
            .collect()
    }

    /// Notes that `server` answered, ending its back-off.
    fn answered(&self, server: &Server) {
        if server.mark_up() {
            tracing::info!(directory = %self.info.id, url = %server.url, "LDAP server is answering again");
        }
    }

    /// Notes that `server` failed (never with a password in the reason); returns the
    /// reason.
    fn failed(&self, server: &Server, failure: Failure) -> String {
        tracing::warn!(
            directory = %self.info.id,
            url = %server.url,
            reason = %failure.reason,
            back_off = failure.mark_down,
            "LDAP server failed"
        );
        if failure.mark_down {
            server.mark_down();
        }
        failure.reason
    }

    async fn sign_in(&self, login: &str, password: &Secret) -> Result<DirectoryUser, AuthFailure> {
        check_login(login)?;
        check_password(password)?;
        let filter = self.mapping.user_filter(login);
        let mut last = String::from("no server to try");
        for server in self.candidates() {
            match self.sign_in_at(server, login, password, &filter).await {
                Ok(outcome) => {
                    self.answered(server);
                    return outcome;
                }
                Err(failure) => last = self.failed(server, failure),
            }
        }
        tracing::error!(directory = %self.info.id, reason = %last, "LDAP directory unavailable");
        Err(AuthFailure::Unavailable)
    }

    /// The whole sign-in on one server. `Err` means the server failed (try the next);
    /// `Ok(Err(_))` is the directory's answer about the user.
    async fn sign_in_at(
        &self,
        server: &Server,
        login: &str,
        password: &Secret,
        filter: &str,
    ) -> Result<Result<DirectoryUser, AuthFailure>, Failure> {
        let Some(entry) = self.find_user(server, filter).await? else {
            // A bind that is bound to fail, so an unknown name costs about as much
            // time as a wrong password and timing does not reveal which names exist.
            let _ = self.bind(server, &self.decoy_dn(), password).await;
            return Ok(Err(AuthFailure::UnknownUser));
        };
        if let Some(refusal) = self.mapping.account_state(&entry) {
            // Checked before the bind: a password-policy lock makes OpenLDAP refuse the
            // bind as if the password were wrong, and a disabled account has no say.
            return Ok(Err(refusal));
        }
        if let Err(refusal) = self.bind(server, &entry.dn, password).await? {
            return Ok(Err(refusal));
        }
        let login = self.mapping.login(&entry, login);
        let groups = match self.mapping.group_lookup {
            GroupLookup::MemberOf => self.mapping.member_of_groups(&entry),
            GroupLookup::GroupSearch => self.search_groups(server, &entry.dn, &login).await?,
        };
        Ok(Ok(self.mapping.user(
            &self.info,
            &entry,
            login,
            &groups,
            &server.url,
        )))
    }

    /// The one entry `filter` finds; `None` for no entry or several.
    async fn find_user(&self, server: &Server, filter: &str) -> Result<Option<Attrs>, Failure> {
        let attributes = &self.user_attributes;
        let base = self.mapping.user_base.as_str();
        let SearchResult(entries, result) = server
            .run(Purpose::Search, |mut ldap| {
                async move {
                    // Two are enough to know the login is ambiguous.
                    ldap.with_search_options(SearchOptions::new().sizelimit(2))
                        .search(base, Scope::Subtree, filter, attributes)
                        .await
                }
            })
            .await?;
        match result.rc {
            0 => {}
            // sizeLimitExceeded: more entries than asked for (or a server limit of 1),
            // so the login is ambiguous whatever came back.
            4 => return Ok(None),
            rc if server_trouble(rc) => {
                return Err(Failure::down(format!("user search failed: {result}")));
            }
            _ => return Err(Failure::refused(format!("user search refused: {result}"))),
        }
        if entries.len() > 1 {
            tracing::warn!(directory = %self.info.id, "A login matches several entries; refusing it");
            return Ok(None);
        }
        Ok(entries.into_iter().next().and_then(Attrs::from_result))
    }

    /// Binds as `dn`. `Ok(Err(_))` is the directory refusing the user.
    async fn bind(
        &self,
        server: &Server,
        dn: &str,
        password: &Secret,
    ) -> Result<Result<(), AuthFailure>, Failure> {
        let pw = password.expose();
        let result = server
            .run(Purpose::Bind, |mut ldap| async move {
                ldap.simple_bind(dn, pw).await
            })
            .await?;
        Ok(match result.rc {
            0 => Ok(()),
            // invalidCredentials; Active Directory says why in the diagnostic text.
            49 if result.text.contains("data 533") || result.text.contains("data 701") => {
                Err(AuthFailure::Disabled)
            }
            49 if result.text.contains("data 775") => Err(AuthFailure::Locked),
            49 => Err(AuthFailure::WrongPassword),
            // constraintViolation: 389 DS and password policies refuse locked accounts so.
            19 => Err(AuthFailure::Locked),
            // unwillingToPerform: inactivated accounts (389 DS).
            53 => Err(AuthFailure::Disabled),
            rc if server_trouble(rc) => {
                return Err(Failure::down(format!("bind failed: {result}")));
            }
            _ => return Err(Failure::refused(format!("bind refused: {result}"))),
        })
    }

    /// A DN below `user_base` that no entry has.
    fn decoy_dn(&self) -> String {
        format!("cn=kopa-no-such-user,{}", self.mapping.user_base)
    }

    async fn search_groups(
        &self,
        server: &Server,
        dn: &str,
        login: &str,
    ) -> Result<Vec<Group>, Failure> {
        let filter = self.mapping.group_filter(dn, login);
        let base = self.mapping.group_base.as_str();
        let attributes = [self.mapping.group_name_attribute.as_str()];
        let SearchResult(entries, result) = server
            .run(Purpose::Search, |mut ldap| {
                let filter = filter.as_str();
                async move {
                    ldap.with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS))
                        .search(base, Scope::Subtree, filter, attributes)
                        .await
                }
            })
            .await?;
        match result.rc {
            0 => {}
            4 => {
                tracing::warn!(directory = %self.info.id, "Group search truncated at {MAX_GROUPS}")
            }
            rc if server_trouble(rc) => {
                return Err(Failure::down(format!("group search failed: {result}")));
            }
            _ => return Err(Failure::refused(format!("group search refused: {result}"))),
        }
        Ok(entries
            .into_iter()
            .filter_map(Attrs::from_result)
            .map(|attrs| self.mapping.group_from_entry(&attrs))
            .collect())
    }

    async fn ready(&self) -> Result<(), CheckError> {
        let mut last = String::from("no server to try");
        for server in self.candidates() {
            match self.ready_at(server).await {
                Ok(()) => {
                    self.answered(server);
                    return Ok(());
                }
                Err(failure) => last = self.failed(server, failure),
            }
        }
        Err(CheckError {
            directory: self.info.id.clone(),
            reason: last,
        })
    }

    /// Whether the service account can read `user_base` on `server`.
    async fn ready_at(&self, server: &Server) -> Result<(), Failure> {
        let base = self.mapping.user_base.as_str();
        let SearchResult(_, result) = server
            .run(Purpose::Search, |mut ldap| async move {
                ldap.search(base, Scope::Base, "(objectClass=*)", ["1.1"])
                    .await
            })
            .await?;
        match result.rc {
            0 => Ok(()),
            rc if server_trouble(rc) => Err(Failure::down(result.to_string())),
            _ => Err(Failure::refused(format!(
                "user_base not readable: {result}"
            ))),
        }
    }
}

impl Directory for LdapDirectory {
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
        self.ready().boxed()
    }
}

/// TLS settings for the servers: trust exactly the CAs in `ca_file`, or the operating
/// system's store when there is none. aws-lc-rs, TLS 1.2 and 1.3.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())?;
            for cert in certs {
                let cert = cert.map_err(|e| e.to_string())?;
                roots.add(cert).map_err(|e| e.to_string())?;
            }
            if roots.is_empty() {
                return Err("no CA certificate in the file".into());
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err("no CA certificates in the system trust store; set ca_file".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> DirectoryConfig {
        let secret = dir.join("svc.secret");
        std::fs::write(&secret, "svc-parole\n").unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let mut c = DirectoryConfig::ldap("talsi", "talsi", "Talsi");
        c.urls = vec!["ldap://127.0.0.1:1".into()];
        c.bind_dn = Some("cn=kopa,dc=talsi,dc=lv".into());
        c.bind_password_file = Some(secret);
        c.user_base = Some("ou=people,dc=talsi,dc=lv".into());
        c.ca_file = Some(ca);
        c
    }

    #[test]
    fn unusable_files_and_insecure_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        assert!(
            matches!(LdapDirectory::from_config(&c), Err(BuildError::File { path, .. }) if path.ends_with("ca.pem"))
        );
        let missing = DirectoryConfig {
            bind_password_file: Some(dir.path().join("missing")),
            ..c.clone()
        };
        let err = LdapDirectory::from_config(&missing).unwrap_err();
        assert!(matches!(&err, BuildError::File { path, .. } if path.ends_with("missing")));

        let plain = DirectoryConfig {
            ca_file: None,
            starttls: false,
            ..c.clone()
        };
        assert!(matches!(
            LdapDirectory::from_config(&plain),
            Err(BuildError::Invalid { .. })
        ));
        let unmapped = DirectoryConfig {
            role_map: [("x".to_owned(), vec!["king".to_owned()])].into(),
            ..c
        };
        assert!(matches!(
            LdapDirectory::from_config(&unmapped),
            Err(BuildError::Invalid { .. })
        ));
    }

    #[test]
    fn secrets_never_show_in_errors_or_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.ca_file = None;
        c.starttls = false;
        c.allow_insecure = true;
        // Without a system trust store this fails to build, which is fine here.
        match LdapDirectory::from_config(&c) {
            Ok(d) => assert!(!format!("{d:?}").contains("svc-parole")),
            Err(e) => assert!(!format!("{e} {e:?}").contains("svc-parole")),
        }
    }
}
