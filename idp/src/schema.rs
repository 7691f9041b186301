//! `idp.redb`: the identity provider's database and its numbered migrations. Each
//! migration lives with the module that owns its tables.

use kopa_store::{Migration, Schema};

/// The IdP database and its migrations.
pub static SCHEMA: Schema = Schema {
    service: "idp",
    // Sessions and grants are small and hot; the rest of a 1 GiB default cache would
    // only hold pages written once (new sessions), as resident memory.
    cache_bytes: Some(32 << 20),
    migrations: &[
        Migration {
            version: 1,
            description: "local accounts",
            apply: crate::local::create_accounts_table,
        },
        Migration {
            version: 2,
            description: "SSO sessions",
            apply: crate::session::create_tables,
        },
        Migration {
            version: 3,
            description: "MFA enrolments",
            apply: crate::mfa::create_tables,
        },
        Migration {
            version: 4,
            description: "login failure counters and lockouts",
            apply: crate::throttle::create_tables,
        },
        Migration {
            version: 5,
            description: "OpenID Connect codes, refresh tokens, revocations, consents and clients",
            apply: crate::oidc::grants::create_tables,
        },
        Migration {
            version: 6,
            description: "SAML service providers registered through the admin API",
            apply: crate::saml::registry::create_tables,
        },
        Migration {
            version: 7,
            description: "SSO sessions keyed by age (earlier sessions end)",
            apply: crate::session::key_sessions_by_age,
        },
    ],
};
