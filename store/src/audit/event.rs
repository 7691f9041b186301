//! What a caller hands to the audit log: one event, checked and bounded before it is sealed.

use super::AuditError;
use kopa_core::TenantId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// The ECS `event.category` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Sign-in attempts, MFA, logout.
    Authentication,
    /// Accounts, roles, passwords, locks.
    Iam,
    /// Changes of the appliance's configuration (directories, clients, certificates).
    Configuration,
    /// SSO sessions: creation, revocation, expiry.
    Session,
    /// The appliance's own operations: backups, retention, audit exports.
    Process,
    /// Access to personal data held in a service's records (e.g. a client's whole
    /// personal code disclosed in the portal).
    Database,
}

impl Category {
    /// The ECS value.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Authentication => "authentication",
            Category::Iam => "iam",
            Category::Configuration => "configuration",
            Category::Session => "session",
            Category::Process => "process",
            Category::Database => "database",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ECS `event.outcome` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It worked.
    Success,
    /// It was refused or failed.
    Failure,
    /// Nothing can be said (e.g. the directory did not answer).
    Unknown,
}

impl Outcome {
    /// The ECS value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened, as a service reports it to the audit log.
///
/// **Never put a password, a one-time code, a token, a session cookie, a key or any other
/// secret in any field**, not even a failed or mistyped one: the log is kept for years,
/// exported to SIEMs and read by auditors. `session_id` is a public identifier of the
/// session, never its cookie value. Detail keys containing `password` or `secret` are
/// refused as a guard against accidents.
///
/// Free-text fields that may carry client input (`user_typed`, `user_agent`, …) are cut to
/// a bounded length (marked with `…`) instead of being refused, so that an attack with
/// overlong input is still recorded. Fields the code chooses (`action`, `reason`,
/// `method`, detail keys) must follow their format or the append fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// The institution the event belongs to; `None` for platform-level events.
    pub tenant: Option<TenantId>,
    /// What kind of event.
    pub category: Category,
    /// Short kebab-case verb phrase: `login`, `logout`, `account-locked`,
    /// `local-account-created`, `audit-retention`, … (1–64 of `a-z`, `0-9`, `-`).
    pub action: String,
    /// Whether it worked.
    pub outcome: Outcome,
    /// Why, as a snake_case code: `wrong_password`, `unknown_user`, `locked`, `disabled`,
    /// `directory_unavailable`, `mfa_failed`, `throttled`, … (1–64 of `a-z`, `0-9`, `_`).
    pub reason: Option<String>,
    /// The user name as the person typed it.
    pub user_typed: Option<String>,
    /// The account it resolved to (directory DN, local account name, or the acting
    /// component such as `control-socket`).
    pub user_resolved: Option<String>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// The client's `User-Agent` header.
    pub user_agent: Option<String>,
    /// How: `ldap`, `local`, `totp`, `control-socket`, … (1–32 of `a-z`, `0-9`, `_`, `-`).
    pub method: Option<String>,
    /// The OIDC client id or SAML SP entity id the user was signing in to.
    pub client: Option<String>,
    /// Public identifier of the SSO session (never the cookie value).
    pub session_id: Option<String>,
    /// Further facts, e.g. `target_user`, `roles` (keys: 1–64 of `a-z`, `0-9`, `_`, `.`).
    pub details: BTreeMap<String, String>,
}

/// Longest `user_typed`, `user_resolved`, `client`, `session_id`, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// Longest `user_agent`, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Longest detail value, in bytes.
pub const MAX_DETAIL_BYTES: usize = 2048;
/// Most details per event.
pub const MAX_DETAILS: usize = 32;

const ELLIPSIS: &str = "…";

impl AuditEvent {
    /// An event with only the required fields set.
    pub fn new(category: Category, action: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            tenant: None,
            category,
            action: action.into(),
            outcome,
            reason: None,
            user_typed: None,
            user_resolved: None,
            source_ip: None,
            user_agent: None,
            method: None,
            client: None,
            session_id: None,
            details: BTreeMap::new(),
        }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: Option<TenantId>) -> Self {
        self.tenant = tenant;
        self
    }

    /// Sets the reason code.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the user name as typed.
    pub fn user_typed(mut self, user: impl Into<String>) -> Self {
        self.user_typed = Some(user.into());
        self
    }

    /// Sets the resolved account (or acting component).
    pub fn user_resolved(mut self, user: impl Into<String>) -> Self {
        self.user_resolved = Some(user.into());
        self
    }

    /// Sets the client address.
    pub fn source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }

    /// Sets the user agent.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// Sets the method.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Sets the OIDC client or SAML SP.
    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }

    /// Sets the public session identifier.
    pub fn session_id(mut self, id: impl Into<String>) -> Self {
        self.session_id = Some(id.into());
        self
    }

    /// Adds one detail.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// Checks the code-chosen fields and bounds the client-supplied ones.
    pub(crate) fn prepare(mut self) -> Result<Self, AuditError> {
        let invalid = |what: String| Err(AuditError::InvalidEvent { what });
        if !is_code(&self.action, 64, b'-') {
            return invalid(format!(
                "action {:?} is not 1-64 characters of a-z, 0-9 and '-'",
                self.action
            ));
        }
        if let Some(r) = &self.reason
            && !is_code(r, 64, b'_')
        {
            return invalid(format!(
                "reason {r:?} is not 1-64 characters of a-z, 0-9 and '_'"
            ));
        }
        if let Some(m) = &self.method
            && !(is_code(m, 32, b'-') || is_code(m, 32, b'_'))
        {
            return invalid(format!(
                "method {m:?} is not 1-32 characters of a-z, 0-9 and '-' or '_'"
            ));
        }
        if self.details.len() > MAX_DETAILS {
            return invalid(format!("more than {MAX_DETAILS} details"));
        }
        for key in self.details.keys() {
            let shape = !key.is_empty()
                && key.len() <= 64
                && key.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
                });
            if !shape {
                return invalid(format!(
                    "detail key {key:?} is not 1-64 characters of a-z, 0-9, '_' and '.'"
                ));
            }
            // A guard against a caller logging a credential by accident.
            if key.contains("password") || key.contains("secret") {
                return invalid(format!("detail key {key:?} suggests a secret"));
            }
        }
        for field in [
            &mut self.user_typed,
            &mut self.user_resolved,
            &mut self.client,
            &mut self.session_id,
        ]
        .into_iter()
        .flatten()
        {
            bound(field, MAX_FIELD_BYTES);
        }
        if let Some(agent) = &mut self.user_agent {
            bound(agent, MAX_USER_AGENT_BYTES);
        }
        for value in self.details.values_mut() {
            bound(value, MAX_DETAIL_BYTES);
        }
        Ok(self)
    }
}

fn is_code(s: &str, max: usize, sep: u8) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with(sep as char)
        && !s.ends_with(sep as char)
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == sep)
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut with `…`.
fn bound(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max - ELLIPSIS.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(ELLIPSIS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_and_free_text_is_bounded() {
        let ok = AuditEvent::new(Category::Authentication, "login", Outcome::Failure)
            .reason("wrong_password")
            .method("ldap")
            .user_typed("ā".repeat(400))
            .detail("target_user", "x")
            .prepare()
            .unwrap();
        let typed = ok.user_typed.unwrap();
        assert!(typed.len() <= MAX_FIELD_BYTES, "{}", typed.len());
        assert!(typed.ends_with('…'));
        assert!(typed.starts_with("āāā"));

        for bad in [
            AuditEvent::new(Category::Iam, "Login", Outcome::Success),
            AuditEvent::new(Category::Iam, "", Outcome::Success),
            AuditEvent::new(Category::Iam, "-x", Outcome::Success),
            AuditEvent::new(Category::Iam, "x", Outcome::Success).reason("wrong-password"),
            AuditEvent::new(Category::Iam, "x", Outcome::Success).detail("new_password", "p"),
            AuditEvent::new(Category::Iam, "x", Outcome::Success).detail("Key", "v"),
            AuditEvent::new(Category::Iam, "x", Outcome::Success).method("LDAP"),
        ] {
            assert!(bad.clone().prepare().is_err(), "{bad:?}");
        }
    }
}
