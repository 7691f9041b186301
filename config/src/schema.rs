//! The typed shape of `kopa.toml`: sections, keys, defaults and numeric limits.
//!
//! The `///` comments here are the user documentation: schemars copies them into the
//! JSON schema, and `reference_markdown()` renders them into `docs/config.md`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::CONFIG_VERSION;

/// Inclusive bounds of the numeric keys, shared by the schema and `Config::validate`.
pub(crate) mod limits {
    use std::ops::RangeInclusive;

    pub const MAX_BODY_BYTES: RangeInclusive<u64> = 1024..=64 * 1024 * 1024;
    pub const HEADER_READ_TIMEOUT_SECS: RangeInclusive<u64> = 1..=300;
    pub const TLS_HANDSHAKE_TIMEOUT_SECS: RangeInclusive<u64> = 1..=300;
    pub const REQUEST_TIMEOUT_SECS: RangeInclusive<u64> = 1..=3600;
    pub const KEEP_ALIVE_SECS: RangeInclusive<u64> = 1..=3600;
    pub const SHUTDOWN_GRACE_SECS: RangeInclusive<u64> = 0..=300;
    pub const MAX_CONNECTIONS: RangeInclusive<u32> = 1..=65535;
}

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8443);

/// The whole configuration of one Kopa appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Version of the configuration format. This Kopa reads version 1; when the key is
    /// absent, 1 is assumed.
    pub version: u32,
    /// The HTTPS listener and where the appliance keeps its state.
    pub server: ServerConfig,
    /// Diagnostic logging.
    pub log: LogConfig,
    /// What the very first start creates.
    pub bootstrap: BootstrapConfig,
    /// Directories users sign in against; each `[[directory]]` entry belongs to a tenant.
    #[serde(rename = "directory")]
    pub directories: Vec<crate::DirectoryConfig>,
    /// The single sign-on session.
    pub session: crate::SessionConfig,
    /// Throttling and lockout of the login form.
    pub login: crate::LoginConfig,
    /// Multi-factor authentication.
    pub mfa: crate::MfaConfig,
    /// The tamper-evident audit log.
    pub audit: crate::AuditConfig,
    /// The VPVKAC portal.
    pub portal: crate::PortalConfig,
    /// The security monitor.
    pub monitor: crate::MonitorConfig,
    /// The OpenID Connect provider.
    pub oidc: crate::OidcConfig,
    /// Relying parties of the OpenID Connect provider, besides Kopa's own apps (which
    /// are registered automatically). More can be added through the admin API.
    #[serde(rename = "oidc_client")]
    pub oidc_clients: Vec<crate::OidcClientConfig>,
    /// The SAML 2.0 identity provider.
    pub saml: crate::SamlConfig,
    /// Service providers trusted by the SAML identity provider.
    #[serde(rename = "saml_sp")]
    pub saml_sps: Vec<crate::SamlSpConfig>,
}

/// The HTTPS listener and where the appliance keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address the HTTPS listener binds, as `IP:port` (IPv6 in brackets, e.g.
    /// `[::]:443`). Use `0.0.0.0:443` to serve every interface.
    pub listen: String,
    /// Directory holding the database, keys and generated certificates. A relative
    /// path is taken relative to the working directory of the `kopa` process; use an
    /// absolute path in production.
    #[schemars(extend("format" = "path"))]
    pub data_dir: PathBuf,
    /// External base URL under which users and relying parties reach this appliance,
    /// e.g. `https://id.example.lv`. It is the issuer of tokens and assertions, so it
    /// must use `https://` and carry no query or fragment. When unset it is derived
    /// from `listen`, which only suits testing.
    pub public_url: Option<String>,
    /// PEM file with the server certificate followed by its intermediate chain. Set
    /// together with `tls_key_file`; when both are unset, a self-signed certificate is
    /// generated under `<data_dir>/tls/` on first start.
    #[schemars(extend("format" = "path"))]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file with the private key of `tls_cert_file`. Keep it readable only by the
    /// `kopa` user.
    #[schemars(extend("format" = "path"))]
    pub tls_key_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes; larger requests are refused.
    #[schemars(range(min = *limits::MAX_BODY_BYTES.start(), max = *limits::MAX_BODY_BYTES.end()))]
    pub max_body_bytes: u64,
    /// Seconds a client may take to send the request headers before the connection
    /// is closed (slow-loris protection).
    #[schemars(range(
        min = *limits::HEADER_READ_TIMEOUT_SECS.start(),
        max = *limits::HEADER_READ_TIMEOUT_SECS.end()
    ))]
    pub header_read_timeout_secs: u64,
    /// Seconds a client may take to complete the TLS handshake.
    #[schemars(range(
        min = *limits::TLS_HANDSHAKE_TIMEOUT_SECS.start(),
        max = *limits::TLS_HANDSHAKE_TIMEOUT_SECS.end()
    ))]
    pub tls_handshake_timeout_secs: u64,
    /// Seconds one request may take from its first byte to the end of the response.
    #[schemars(range(
        min = *limits::REQUEST_TIMEOUT_SECS.start(),
        max = *limits::REQUEST_TIMEOUT_SECS.end()
    ))]
    pub request_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open.
    #[schemars(range(min = *limits::KEEP_ALIVE_SECS.start(), max = *limits::KEEP_ALIVE_SECS.end()))]
    pub keep_alive_secs: u64,
    /// Seconds in-flight requests get to finish after a shutdown signal; 0 closes
    /// connections at once.
    #[schemars(range(
        min = *limits::SHUTDOWN_GRACE_SECS.start(),
        max = *limits::SHUTDOWN_GRACE_SECS.end()
    ))]
    pub shutdown_grace_secs: u64,
    /// Most client connections served at the same time.
    #[schemars(range(min = *limits::MAX_CONNECTIONS.start(), max = *limits::MAX_CONNECTIONS.end()))]
    pub max_connections: u32,
}

/// Diagnostic logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Comma-separated filter directives: a level (`trace`, `debug`, `info`, `warn`,
    /// `error` or `off`) alone sets the default, `target=level` sets it for one
    /// module, e.g. `info,kopa_web=debug`.
    pub level: String,
    /// Output format of log lines: `json` (one object per line, for collectors) or
    /// `text` (for people reading a terminal or the journal).
    pub format: LogFormat,
}

/// Output format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// What the very first start creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// User name of the platform administrator created on first start: 1 to 64
    /// characters of `a-z`, `0-9`, `.`, `_` and `-`, starting with a letter.
    pub admin_username: String,
    /// File holding the first password of that administrator, read on first start
    /// only. When unset, a random password is generated instead.
    #[schemars(extend("format" = "path"))]
    pub admin_password_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            server: ServerConfig::default(),
            log: LogConfig::default(),
            bootstrap: BootstrapConfig::default(),
            directories: Vec::new(),
            session: crate::SessionConfig::default(),
            login: crate::LoginConfig::default(),
            mfa: crate::MfaConfig::default(),
            audit: crate::AuditConfig::default(),
            portal: crate::PortalConfig::default(),
            monitor: crate::MonitorConfig::default(),
            oidc: crate::OidcConfig::default(),
            oidc_clients: Vec::new(),
            saml: crate::SamlConfig::default(),
            saml_sps: Vec::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            data_dir: PathBuf::from("./data"),
            public_url: None,
            tls_cert_file: None,
            tls_key_file: None,
            max_body_bytes: 1_048_576,
            header_read_timeout_secs: 10,
            tls_handshake_timeout_secs: 10,
            request_timeout_secs: 30,
            keep_alive_secs: 75,
            shutdown_grace_secs: 10,
            max_connections: 1024,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Json,
        }
    }
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            admin_username: "admin".to_owned(),
            admin_password_file: None,
        }
    }
}

impl Config {
    /// The listener address; falls back to `127.0.0.1:8443` when `server.listen` does
    /// not parse (which `validate()` reports).
    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().unwrap_or(DEFAULT_LISTEN)
    }
}
