//! The one typed configuration of a Kopa appliance, `kopa.toml`.
//!
//! [`load`] layers built-in defaults, the file, `KOPA__...` environment variables and
//! CLI flags, then checks the result against the schema and [`Config::validate`],
//! reporting every [`Problem`] at once with its key path and origin.
//! [`reference_markdown`] renders the schema as `docs/config.md`.

mod audit;
mod auth;
mod check;
mod directory;
mod layer;
mod load;
mod mfa;
mod monitor;
mod oidc;
mod portal;
mod problems;
mod reference;
mod saml;
mod schema;
mod secret;
mod tree;
mod validate;

pub use audit::AuditConfig;
pub use auth::{LoginConfig, SessionConfig};
pub use directory::{
    AccountRule, AccountState, AttributeMap, DirectoryConfig, DirectoryKind, GroupLookup, LdapUrl,
};
pub use load::{Origins, Overrides, Source, load, load_str, load_with_origins};
pub use mfa::MfaConfig;
pub use monitor::{
    AlertRuleConfig, EmailConfig, MonitorConfig, PROFILES, RuleKind, SmtpSecurity, WatchedEndpoint,
    WatchedFile, WebhookConfig,
};
pub use oidc::{
    ClientAuthMethod, GRANT_TYPES, OidcClientConfig, OidcConfig, SCOPES, SigningAlg,
    check_client_id, check_client_uri,
};
pub use portal::PortalConfig;
pub use problems::{Origin, Problem, Problems};
pub use reference::reference_markdown;
pub use saml::{
    ATTRIBUTE_SOURCES, NameIdFormat, SamlAttribute, SamlConfig, SamlSigning, SamlSpConfig,
};
pub use schema::{BootstrapConfig, Config, LogConfig, LogFormat, ServerConfig};
pub use secret::{Secret, read_secret_file};

/// The configuration format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// The embedded default configuration: every key at its default, with comments.
pub const DEFAULT_TOML: &str = include_str!("../examples/default.toml");
