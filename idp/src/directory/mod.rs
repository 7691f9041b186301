//! Directories users sign in against: municipal LDAP servers and the appliance's local
//! accounts, behind one port, [`Directory`].
//!
//! [`Directories`] is built from the `[[directory]]` entries of the configuration; the
//! login page hands it what the user typed (`name@domain`) and gets back the directory
//! that owns the domain and the name to look up there. Authentication answers with a
//! [`DirectoryUser`] (attributes, groups and Kopa roles) or an [`AuthFailure`] whose
//! kind is what the audit log records.

mod input;
pub mod ldap;
mod local;
mod registry;

use std::fmt;

use futures_util::future::BoxFuture;
use kopa_config::{DirectoryKind, Secret};
use kopa_core::{Role, TenantId};
use serde::{Deserialize, Serialize};

pub use input::{MAX_LOGIN_CHARS, MAX_PASSWORD_BYTES};
pub use ldap::LdapDirectory;
pub use local::LocalDirectory;
pub use registry::{BuildError, Directories, ResolveError};

/// What the institution picker and the audit log need to know about a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryInfo {
    /// The configured id, unique on the appliance.
    pub id: String,
    /// The tenant its users belong to.
    pub tenant: TenantId,
    /// Name of the institution in Latvian.
    pub display_name_lv: String,
    /// Name of the institution in English (the Latvian one when none is configured).
    pub display_name_en: String,
    /// Domains that select it, lowercase.
    pub domains: Vec<String>,
    /// LDAP or local accounts.
    pub kind: DirectoryKind,
}

/// A directory users sign in against (a port: LDAP and local accounts implement it,
/// tests may bring their own).
pub trait Directory: Send + Sync + fmt::Debug {
    /// Who this directory is.
    fn info(&self) -> &DirectoryInfo;

    /// The configured id.
    fn id(&self) -> &str {
        &self.info().id
    }

    /// The tenant its users belong to.
    fn tenant(&self) -> &TenantId {
        &self.info().tenant
    }

    /// Domains that select it, lowercase.
    fn domains(&self) -> &[String] {
        &self.info().domains
    }

    /// Checks `password` for `login` (the name without `@domain`). Input that cannot be
    /// a valid login or password is refused before anything reaches the network.
    fn authenticate<'a>(
        &'a self,
        login: &'a str,
        password: &'a Secret,
    ) -> BoxFuture<'a, Result<DirectoryUser, AuthFailure>>;

    /// Readiness: whether the directory can answer sign-ins right now.
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>>;
}

/// A user the directory vouched for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// The directory that authenticated the user.
    pub directory_id: String,
    /// The tenant the user belongs to (the directory's).
    pub tenant: TenantId,
    /// Stable identifier within the directory (LDAP: `subject_attribute`, else the DN;
    /// local: the username). Unique together with `directory_id`; see
    /// [`DirectoryUser::qualified_subject`].
    pub subject: String,
    /// The login name as the directory spells it.
    pub login: String,
    /// The entry's DN (LDAP only).
    pub dn: Option<String>,
    /// Name shown in the UI.
    pub display_name: String,
    /// Given name.
    pub given_name: Option<String>,
    /// Surname.
    pub surname: Option<String>,
    /// E-mail address.
    pub mail: Option<String>,
    /// Employee number.
    pub employee_id: Option<String>,
    /// Names of the groups the user is in, sorted.
    pub groups: Vec<String>,
    /// Kopa roles granted through `role_map` (local accounts: their own roles), sorted.
    pub roles: Vec<Role>,
    /// The LDAP URL that answered, for the audit record; `None` for local accounts.
    pub server: Option<String>,
}

impl DirectoryUser {
    /// `directory_id:subject`, unique on the appliance (two directories may well hold
    /// the same DN or name).
    pub fn qualified_subject(&self) -> String {
        format!("{}:{}", self.directory_id, self.subject)
    }
}

/// Why a sign-in failed. The kind is for the audit log and the operator; what the
/// login page shows an anonymous user is its own decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No such account (or more than one entry matched the login).
    #[error("Unknown user")]
    UnknownUser,
    /// The account exists and the password is wrong.
    #[error("Wrong password")]
    WrongPassword,
    /// The account is switched off. Reported without checking the password.
    #[error("Account disabled")]
    Disabled,
    /// The account is locked. Reported without checking the password.
    #[error("Account locked")]
    Locked,
    /// The directory could not be asked; never a statement about the password.
    #[error("Directory unavailable")]
    Unavailable,
    /// The login or password cannot be valid (empty password, control characters,
    /// overlong login); refused before any network traffic.
    #[error("Invalid login or password")]
    InvalidInput,
}

impl AuthFailure {
    /// Stable reason code for audit records (`event.reason`).
    pub fn reason_code(self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::WrongPassword => "wrong_password",
            AuthFailure::Disabled => "account_disabled",
            AuthFailure::Locked => "account_locked",
            AuthFailure::Unavailable => "directory_unavailable",
            AuthFailure::InvalidInput => "invalid_input",
        }
    }
}

/// Why a directory is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Directory {directory} is unavailable: {reason}")]
pub struct CheckError {
    /// The directory id.
    pub directory: String,
    /// What went wrong (never a secret).
    pub reason: String,
}
