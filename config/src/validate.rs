//! Semantic checks of a typed `Config` (`validate`) and of the files it names (`check_files`).

use std::fmt::Display;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;

use crate::schema::limits;
use crate::{CONFIG_VERSION, Config, Problem};

const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
const MAX_USERNAME_CHARS: usize = 64;

impl Config {
    /// Checks the meaning of every value; pure, no I/O. Problems carry `Origin::Default`
    /// (a `Config` does not know where its values came from); `load()` attributes them.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.version != CONFIG_VERSION {
            out.push(Problem::default_origin(
                "version",
                format!(
                    "Unsupported config version {}; this Kopa reads version {CONFIG_VERSION}",
                    self.version
                ),
            ));
        }
        self.validate_server(&mut out);
        if let Err(message) = check_log_filter(&self.log.level) {
            out.push(Problem::default_origin("log.level", message));
        }
        if let Err(message) = check_username(&self.bootstrap.admin_username) {
            out.push(Problem::default_origin("bootstrap.admin_username", message));
        }
        check_path_not_empty(
            &mut out,
            "bootstrap.admin_password_file",
            self.bootstrap.admin_password_file.as_deref(),
        );
        for (index, directory) in self.directories.iter().enumerate() {
            directory.validate(index, &mut out);
        }
        self.session.validate(&mut out);
        self.login.validate(&mut out);
        self.mfa.validate(&mut out);
        self.audit.validate(&mut out);
        self.portal.validate(&mut out);
        self.monitor.validate(&mut out);
        self.oidc.validate(&mut out);
        for (index, client) in self.oidc_clients.iter().enumerate() {
            client.validate(index, &mut out);
            if self.oidc_clients[..index].iter().any(|c| c.id == client.id) {
                out.push(Problem::default_origin(
                    format!("oidc_client[{index}].id"),
                    format!("Client id {:?} is used twice", client.id),
                ));
            }
        }
        self.saml.validate(&mut out);
        for (index, sp) in self.saml_sps.iter().enumerate() {
            sp.validate(index, &mut out);
        }
        out
    }

    fn validate_server(&self, out: &mut Vec<Problem>) {
        let s = &self.server;
        if s.listen.parse::<SocketAddr>().is_err() {
            out.push(Problem::default_origin(
                "server.listen",
                format!(
                    "Not a socket address: {:?} (expected e.g. 127.0.0.1:8443)",
                    s.listen
                ),
            ));
        }
        check_path_not_empty(out, "server.data_dir", Some(&s.data_dir));
        if let Some(url) = &s.public_url
            && let Err(message) = check_public_url(url)
        {
            out.push(Problem::default_origin("server.public_url", message));
        }
        check_path_not_empty(out, "server.tls_cert_file", s.tls_cert_file.as_deref());
        check_path_not_empty(out, "server.tls_key_file", s.tls_key_file.as_deref());
        // Reported on the key that is set, so the problem points at a line of the file.
        match (&s.tls_cert_file, &s.tls_key_file) {
            (Some(_), None) => out.push(Problem::default_origin(
                "server.tls_cert_file",
                "Set without server.tls_key_file (set both or neither)",
            )),
            (None, Some(_)) => out.push(Problem::default_origin(
                "server.tls_key_file",
                "Set without server.tls_cert_file (set both or neither)",
            )),
            _ => {}
        }
        let ranges = [
            (
                "server.max_body_bytes",
                s.max_body_bytes,
                limits::MAX_BODY_BYTES,
            ),
            (
                "server.header_read_timeout_secs",
                s.header_read_timeout_secs,
                limits::HEADER_READ_TIMEOUT_SECS,
            ),
            (
                "server.tls_handshake_timeout_secs",
                s.tls_handshake_timeout_secs,
                limits::TLS_HANDSHAKE_TIMEOUT_SECS,
            ),
            (
                "server.request_timeout_secs",
                s.request_timeout_secs,
                limits::REQUEST_TIMEOUT_SECS,
            ),
            (
                "server.keep_alive_secs",
                s.keep_alive_secs,
                limits::KEEP_ALIVE_SECS,
            ),
            (
                "server.shutdown_grace_secs",
                s.shutdown_grace_secs,
                limits::SHUTDOWN_GRACE_SECS,
            ),
        ];
        for (key, value, range) in ranges {
            check_range(out, key, value, &range);
        }
        check_range(
            out,
            "server.max_connections",
            s.max_connections,
            &limits::MAX_CONNECTIONS,
        );
    }

    /// Checks that every referenced `*_file` exists and is a readable regular file.
    /// Reads nothing but metadata and an open handle, so secrets stay in their files.
    pub fn check_files(&self) -> Vec<Problem> {
        let files = [
            ("server.tls_cert_file", &self.server.tls_cert_file),
            ("server.tls_key_file", &self.server.tls_key_file),
            (
                "bootstrap.admin_password_file",
                &self.bootstrap.admin_password_file,
            ),
        ];
        let mut secrets: Vec<(String, Option<&std::path::Path>)> = self
            .oidc_clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    format!("oidc_client[{i}].secret_file"),
                    c.secret_file.as_deref(),
                )
            })
            .collect();
        let m = &self.monitor;
        secrets.push((
            "monitor.metrics_token_file".into(),
            m.metrics_token_file.as_deref(),
        ));
        if let Some(e) = &m.email {
            secrets.push((
                "monitor.email.password_file".into(),
                e.password_file.as_deref(),
            ));
        }
        for (i, w) in m.webhooks.iter().enumerate() {
            secrets.push((
                format!("monitor.webhook[{i}].secret_file"),
                Some(&w.secret_file),
            ));
        }
        files
            .into_iter()
            .map(|(key, path)| (key.to_owned(), path.as_deref()))
            .chain(secrets)
            .filter_map(|(key, path)| {
                let path = path?;
                let message = check_readable_file(path).err()?;
                Some(Problem::default_origin(key, message))
            })
            .collect()
    }
}

pub(crate) fn range_message<T: Display>(value: T, min: T, max: T) -> String {
    format!("Out of range: {value} (allowed {min} to {max})")
}

pub(crate) fn check_range<T: PartialOrd + Display + Copy>(
    out: &mut Vec<Problem>,
    key: &str,
    value: T,
    range: &RangeInclusive<T>,
) {
    if !range.contains(&value) {
        let message = range_message(value, *range.start(), *range.end());
        out.push(Problem::default_origin(key, message));
    }
}

fn check_path_not_empty(out: &mut Vec<Problem>, key: &str, path: Option<&Path>) {
    if path.is_some_and(|p| p.as_os_str().is_empty()) {
        out.push(Problem::default_origin(key, "Must not be empty"));
    }
}

fn check_readable_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("File not found: {shown}"),
        kind => format!("Cannot access {shown}: {kind}"),
    })?;
    if !meta.is_file() {
        return Err(format!("Not a regular file: {shown}"));
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("Cannot read {shown}: {}", e.kind()))
}

/// Accepts `level` and `target=level` directives separated by commas. Bare targets and
/// span filters, which tracing would also take, are refused so a misspelt level
/// (`inf`) is an error instead of a silent filter for a module of that name.
pub(crate) fn check_log_filter(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err("Must not be empty".to_owned());
    }
    for directive in filter.split(',').map(str::trim) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if directive.is_empty() {
            return Err("Empty directive between commas".to_owned());
        }
        if let Some(target) = target {
            let valid = !target.is_empty()
                && target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !valid {
                return Err(format!(
                    "Invalid log target {target:?} (expected letters, digits, `_` and `::`)"
                ));
            }
        }
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "Unknown log level {level:?} (expected one of {})",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

fn check_username(name: &str) -> Result<(), String> {
    let count = name.chars().count();
    if count == 0 || count > MAX_USERNAME_CHARS {
        return Err(format!("Must be 1 to {MAX_USERNAME_CHARS} characters long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("Must start with a letter a-z".to_owned());
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    if !name.chars().all(allowed) {
        return Err(format!(
            "Invalid user name {name:?} (allowed: a-z, 0-9, `.`, `_`, `-`)"
        ));
    }
    Ok(())
}

/// The public URL becomes the token issuer, so it is held to the strict shape
/// `https://host[:port][/path]`; anything else would make issuers ambiguous.
fn check_public_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("Must start with https://".to_owned());
    };
    if url.contains(['?', '#']) {
        return Err("Must not contain a query or fragment".to_owned());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("Must not contain whitespace".to_owned());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("Must not contain user information".to_owned());
    }
    if !valid_authority(authority) {
        return Err(format!("Invalid host in {url:?}"));
    }
    Ok(())
}

fn valid_authority(authority: &str) -> bool {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("v6", Some(port)),
            None if after.is_empty() => ("v6", None),
            None => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(config: &Config) -> Vec<String> {
        config.validate().into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_empty());
    }

    #[test]
    fn log_filters() {
        for good in [
            "info",
            "INFO",
            "off",
            "info,kopa_web=debug",
            "warn, a::b=trace",
        ] {
            assert_eq!(check_log_filter(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "inf",
            "info,",
            "kopa_web",
            "kopa-web=debug",
            "=info",
            "a=b=c",
            "x[s]=info",
        ] {
            assert!(check_log_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames() {
        for good in ["admin", "a", "kopa-admin", "j.berzins_2"] {
            assert_eq!(check_username(good), Ok(()), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "1admin",
            "Admin",
            "ad min",
            "admīns",
            "-a",
            long.as_str(),
        ] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_urls() {
        for good in [
            "https://id.example.lv",
            "https://id.example.lv/",
            "https://id.example.lv:8443/kopa",
            "https://[::1]:8443",
            "https://localhost",
        ] {
            assert_eq!(check_public_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://id.example.lv",
            "https://",
            "https://id.example.lv?x=1",
            "https://id.example.lv/#top",
            "https://user@id.example.lv",
            "https://id..lv",
            "https://id.example.lv:0",
            "https://id.example.lv:99999",
            "https://[nope]",
            "https://id example.lv",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn semantic_problems_name_their_keys() {
        let mut config = Config {
            version: 2,
            ..Config::default()
        };
        config.server.listen = "abc".into();
        config.server.tls_cert_file = Some("/c.pem".into());
        config.server.max_connections = 0;
        config.server.keep_alive_secs = 3601;
        config.log.level = "loud".into();
        assert_eq!(
            keys(&config),
            [
                "version",
                "server.listen",
                "server.tls_cert_file",
                "server.keep_alive_secs",
                "server.max_connections",
                "log.level",
            ]
        );
        let problems = config.validate();
        assert_eq!(
            problems[0].message,
            "Unsupported config version 2; this Kopa reads version 1"
        );
        assert_eq!(
            problems[1].message,
            "Not a socket address: \"abc\" (expected e.g. 127.0.0.1:8443)"
        );
        assert_eq!(
            problems[3].message,
            "Out of range: 3601 (allowed 1 to 3600)"
        );
    }

    #[test]
    fn check_files_reports_missing_and_non_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "k").unwrap();
        let mut config = Config::default();
        config.server.tls_cert_file = Some(dir.path().join("missing.pem"));
        config.server.tls_key_file = Some(key);
        config.bootstrap.admin_password_file = Some(dir.path().to_owned());
        let problems = config.check_files();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].key, "server.tls_cert_file");
        assert!(problems[0].message.starts_with("File not found: "));
        assert_eq!(problems[1].key, "bootstrap.admin_password_file");
        assert!(problems[1].message.starts_with("Not a regular file: "));
    }
}
