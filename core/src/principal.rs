//! Who is acting: the tenant they belong to and the roles they hold.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An institution (municipality or state institution) that owns records.
///
/// A lowercase slug (`ventspils`, `vpvkac-riga`): 1–63 characters of `a-z`, `0-9` and `-`,
/// not starting or ending with `-`, so it is safe in URLs, file names and log fields.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Tenant id must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
pub struct TenantIdError;

impl TenantId {
    /// Parses and validates a tenant id.
    pub fn new(value: impl Into<String>) -> Result<Self, TenantIdError> {
        let value = value.into();
        let ok = !value.is_empty()
            && value.len() <= 63
            && !value.starts_with('-')
            && !value.ends_with('-')
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(value))
        } else {
            Err(TenantIdError)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = TenantIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role, mapped per directory from groups (or held by a local account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Front-office staff working cases.
    Specialist,
    /// Leads specialists of a centre.
    Supervisor,
    /// Reads quality reports for an institution's services.
    ServiceOwner,
    /// Reviews audit dashboards, compliance and alerts.
    SecurityOfficer,
    /// Administers one tenant (directory, VMs).
    TenantAdmin,
    /// Runs the appliance.
    PlatformAdmin,
    /// Reads the audit log, changes nothing.
    Auditor,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 7] = [
        Role::Specialist,
        Role::Supervisor,
        Role::ServiceOwner,
        Role::SecurityOfficer,
        Role::TenantAdmin,
        Role::PlatformAdmin,
        Role::Auditor,
    ];

    /// The role's name as in configuration and tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Specialist => "specialist",
            Role::Supervisor => "supervisor",
            Role::ServiceOwner => "service_owner",
            Role::SecurityOfficer => "security_officer",
            Role::TenantAdmin => "tenant_admin",
            Role::PlatformAdmin => "platform_admin",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable subject identifier.
    pub subject: String,
    /// The tenant whose records this principal may see; `None` for platform-level accounts.
    pub tenant: Option<TenantId>,
    /// Roles held.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_slugs() {
        assert!(TenantId::new("ventspils").is_ok());
        assert!(TenantId::new("vpvkac-riga-2").is_ok());
        for bad in ["", "-a", "a-", "Ventspils", "a b", "rīga", &"a".repeat(64)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tenant_id_rejected_in_json() {
        let r: Result<TenantId, _> = serde_json::from_str("\"../etc\"");
        assert!(r.is_err());
    }

    #[test]
    fn roles_round_trip_by_name() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
