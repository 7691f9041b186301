//! `[mfa]`: second factors (TOTP) and who must use them.

use kopa_core::Role;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::validate::check_range;

mod limits {
    use std::ops::RangeInclusive;

    pub const SKEW_STEPS: RangeInclusive<u32> = 0..=2;
    pub const ISSUER_CHARS: usize = 64;
}

/// Multi-factor authentication: a code from an authenticator app (TOTP, RFC 6238), or a
/// single-use recovery code, after the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MfaConfig {
    /// Roles whose holders must sign in with a second factor; someone without one is
    /// asked to set it up before they can continue. Roles: `specialist`, `supervisor`,
    /// `service_owner`, `security_officer`, `tenant_admin`, `platform_admin`, `auditor`.
    /// An empty list asks nobody; users may still set up a second factor themselves.
    /// From the environment, write a TOML array: `KOPA__MFA__REQUIRED_ROLES='["auditor"]'`.
    pub required_roles: Vec<String>,
    /// Name shown above the account in authenticator apps, e.g. the municipality's.
    /// At most 64 characters, without `:`. Changing it affects only later enrolments.
    pub issuer: String,
    /// Time steps (30 seconds each) accepted before and after the current one, for
    /// phones whose clocks are a little off. 1 accepts a code from about 30 seconds
    /// early to 30 seconds late. Each further step adds a minute of tolerance but also
    /// two more codes a guesser can hit, so keep it small. A code is accepted only once.
    #[schemars(range(min = *limits::SKEW_STEPS.start(), max = *limits::SKEW_STEPS.end()))]
    pub skew_steps: u32,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            required_roles: [
                Role::PlatformAdmin,
                Role::SecurityOfficer,
                Role::TenantAdmin,
            ]
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
            issuer: "Kopa".to_owned(),
            skew_steps: 1,
        }
    }
}

impl MfaConfig {
    pub(crate) fn validate(&self, out: &mut Vec<Problem>) {
        for (i, role) in self.required_roles.iter().enumerate() {
            let key = format!("mfa.required_roles[{i}]");
            if Role::parse(role).is_none() {
                let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                let message = format!(
                    "Unknown role {role:?} (expected one of {})",
                    known.join(", ")
                );
                out.push(Problem::default_origin(key, message));
            } else if self.required_roles[..i].contains(role) {
                out.push(Problem::default_origin(
                    key,
                    format!("Role {role:?} is listed twice"),
                ));
            }
        }
        if let Err(message) = check_issuer(&self.issuer) {
            out.push(Problem::default_origin("mfa.issuer", message));
        }
        check_range(out, "mfa.skew_steps", self.skew_steps, &limits::SKEW_STEPS);
    }
}

fn check_issuer(issuer: &str) -> Result<(), String> {
    if issuer.trim().is_empty() {
        return Err("Must not be empty".to_owned());
    }
    if issuer.chars().count() > limits::ISSUER_CHARS {
        return Err(format!(
            "Must be at most {} characters long",
            limits::ISSUER_CHARS
        ));
    }
    if issuer.chars().any(char::is_control) {
        return Err("Must not contain control characters".to_owned());
    }
    // Authenticator apps split "issuer:account" at the first colon.
    if issuer.contains(':') {
        return Err("Must not contain ':'".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Origin, Overrides, Problems};

    fn keys(config: &MfaConfig) -> Vec<String> {
        let mut out = Vec::new();
        config.validate(&mut out);
        out.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn defaults_are_valid_and_name_the_privileged_roles() {
        let config = MfaConfig::default();
        assert!(keys(&config).is_empty());
        assert_eq!(
            config.required_roles,
            ["platform_admin", "security_officer", "tenant_admin"]
        );
        assert_eq!((config.issuer.as_str(), config.skew_steps), ("Kopa", 1));
    }

    #[test]
    fn problems_name_their_keys() {
        let config = MfaConfig {
            required_roles: vec!["auditor".into(), "root".into(), "auditor".into()],
            issuer: "Ogre: Kopa".into(),
            skew_steps: 3,
        };
        assert_eq!(
            keys(&config),
            [
                "mfa.required_roles[1]",
                "mfa.required_roles[2]",
                "mfa.issuer",
                "mfa.skew_steps"
            ]
        );
        let mut out = Vec::new();
        config.validate(&mut out);
        assert!(
            out[0]
                .message
                .starts_with("Unknown role \"root\" (expected one of specialist")
        );
        assert_eq!(out[1].message, "Role \"auditor\" is listed twice");
    }

    #[test]
    fn loads_from_file_and_environment_with_line_numbers() {
        let production = include_str!("../examples/production.toml");
        let config =
            crate::load_str(production, "production.toml", [], &Overrides::default()).unwrap();
        assert!(config.mfa.required_roles.iter().any(|r| r == "auditor"));
        assert_eq!(config.mfa.issuer, "Ogres novads");

        let env = [(
            "KOPA__MFA__REQUIRED_ROLES".to_owned(),
            r#"["auditor"]"#.to_owned(),
        )];
        let config = crate::load_str("", "kopa.toml", env, &Overrides::default()).unwrap();
        assert_eq!(config.mfa.required_roles, ["auditor"]);

        let text =
            "[mfa]\nrequired_roles = [\n  \"tenant_admin\",\n  \"admin\",\n]\nskew_steps = 2\n";
        let Problems(problems) =
            crate::load_str(text, "kopa.toml", [], &Overrides::default()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "mfa.required_roles[1]");
        assert_eq!(problems[0].origin, Origin::file("kopa.toml", Some(4)));
    }

    #[test]
    fn issuers() {
        for good in [
            "Kopa",
            "Ogres novads",
            "Ventspils valstspilsētas pašvaldība",
        ] {
            assert_eq!(check_issuer(good), Ok(()), "{good}");
        }
        for bad in ["", "  ", "a:b", "a\tb", &"ā".repeat(65)] {
            assert!(check_issuer(bad).is_err(), "{bad:?}");
        }
        let empty = MfaConfig {
            required_roles: Vec::new(),
            ..MfaConfig::default()
        };
        assert!(keys(&empty).is_empty());
    }
}
