//! The one integration test binary: every test starts its own appliance (in-process or the
//! real `kopa` process) on an ephemeral port with a fresh data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apps;
mod audit;
mod backup;
mod config;
mod directory;
mod edge;
mod lifecycle;
mod login;
mod monitor;
mod oidc;
mod oidc_rules;
mod portal;
mod saml;
mod saml_registry;
