//! Kopa's identity provider. For now it owns what the appliance needs from its first start:
//! the signing keys that OIDC and SAML will use, and local (break-glass) accounts stored as
//! argon2id hashes. Directories, login pages, sessions, OIDC and SAML arrive with their
//! issues and build on these.

pub mod directory;
pub mod error;
pub mod http;
pub mod keys;
pub mod local;
pub mod login;
pub mod mfa;
pub mod oidc;
pub use kopa_web::outbound;
pub mod password;
pub mod saml;
mod schema;
pub mod session;
mod sweep;
pub mod throttle;
pub mod ui;

pub use error::IdpError;
pub use keys::{KeyInfo, SigningKeys};
pub use local::{AccountSummary, LocalAccounts, LocalAuthError, NewAccount};
pub use schema::SCHEMA;
