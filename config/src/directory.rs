//! `[[directory]]`: the directories (municipal LDAP servers, local accounts) that users
//! sign in against, one or more per tenant.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kopa_core::{Role, TenantId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::tree::join;
use crate::validate::range_message;

/// Inclusive bounds of the numeric keys of a directory.
pub(crate) mod limits {
    use std::ops::RangeInclusive;

    pub const CONNECT_TIMEOUT_SECS: RangeInclusive<u64> = 1..=60;
    pub const OPERATION_TIMEOUT_SECS: RangeInclusive<u64> = 1..=300;
    pub const POOL_SIZE: RangeInclusive<u32> = 1..=256;
    pub const RETRY_AFTER_SECS: RangeInclusive<u64> = 1..=3600;
}

/// Longest display name, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// Longest search filter template, in bytes.
const MAX_FILTER_BYTES: usize = 4096;

/// One directory users sign in against.
///
/// `id`, `tenant`, `kind` and `display_name_lv` are required. For `kind = "ldap"`,
/// `urls`, `bind_dn`, `bind_password_file` and `user_base` are required too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// Loading refuses two entries with the same id or a domain listed by two entries.
#[schemars(extend("x-unique-keys" = ["id", "domains"]))]
pub struct DirectoryConfig {
    /// Identifier of the directory, unique on the appliance and stable: it appears in
    /// audit records and in the subject of its users. 1 to 63 characters of `a-z`,
    /// `0-9` and `-`, e.g. `ventspils-ad`.
    pub id: String,
    /// Tenant (institution) the users of this directory belong to, e.g. `ventspils`.
    pub tenant: String,
    /// Name of the institution shown on the login page, in Latvian, e.g.
    /// `Ventspils valstspilsētas pašvaldība`.
    pub display_name_lv: String,
    /// Name of the institution shown on the English login page. When unset, the
    /// Latvian name is shown.
    #[serde(default)]
    pub display_name_en: Option<String>,
    /// Domains that select this directory: a user who signs in as `name@domain` is
    /// looked up as `name` here. Compared without regard to case; each domain may
    /// belong to one directory only. Without domains, the directory is reached only by
    /// choosing the institution on the login page.
    #[serde(default)]
    pub domains: Vec<String>,
    /// `ldap` for an LDAP directory (OpenLDAP, Active Directory, 389 DS), `local` for
    /// the appliance's own accounts (break-glass administrators, demos).
    pub kind: DirectoryKind,

    /// LDAP servers, tried in this order; a server that cannot be reached is skipped
    /// for `retry_after_secs`. `ldaps://host[:port]` speaks TLS from the start,
    /// `ldap://host[:port]` is upgraded with StartTLS. Use host names or IP addresses
    /// that the server certificate names.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Whether `ldap://` URLs are upgraded with StartTLS. Turning it off sends
    /// passwords in clear text and is refused unless `allow_insecure = true`.
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// Allows `starttls = false` with `ldap://` URLs. For test directories on
    /// loopback only: never set it in production.
    #[serde(default)]
    pub allow_insecure: bool,
    /// PEM file with the CA certificates that sign the LDAP servers' certificates.
    /// When unset, the operating system's trust store is used.
    #[serde(default)]
    #[schemars(extend("format" = "path"))]
    pub ca_file: Option<PathBuf>,
    /// DN of the service account that searches for users, e.g.
    /// `cn=kopa,ou=system,dc=ventspils,dc=lv`. It needs read access to the user and
    /// group entries and their attributes, nothing more.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// File holding the password of `bind_dn`.
    #[serde(default)]
    #[schemars(extend("format" = "path"))]
    pub bind_password_file: Option<PathBuf>,
    /// DN below which users are searched (whole subtree), e.g.
    /// `ou=people,dc=ventspils,dc=lv`.
    #[serde(default)]
    pub user_base: Option<String>,
    /// Search filter that finds a user; `{login}` is replaced by the name the user
    /// typed, escaped for LDAP filters. Active Directory:
    /// `(&(objectClass=user)(sAMAccountName={login}))`.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Attribute holding the login name as the directory spells it; it becomes the
    /// user's canonical login (AD: `sAMAccountName`).
    #[serde(default = "default_login_attribute")]
    pub login_attribute: String,
    /// Attribute holding a stable, never reused identifier of a user: `entryUUID`
    /// (OpenLDAP, 389 DS) or `objectGUID` (Active Directory; binary values are used in
    /// hexadecimal). When an entry lacks it, the entry's DN is used instead.
    #[serde(default = "default_subject_attribute")]
    pub subject_attribute: String,
    /// Which LDAP attributes hold the user's details.
    #[serde(default)]
    pub attributes: AttributeMap,
    /// How group memberships are found: `member_of` reads the user's `memberOf`
    /// attribute (Active Directory; OpenLDAP with the memberof overlay), `group_search`
    /// searches `group_base` with `group_filter` (any server).
    #[serde(default)]
    pub group_lookup: GroupLookup,
    /// Attribute listing the DNs of a user's groups, for `group_lookup = "member_of"`.
    #[serde(default = "default_member_of_attribute")]
    pub member_of_attribute: String,
    /// DN below which groups are searched, required for
    /// `group_lookup = "group_search"`, e.g. `ou=groups,dc=talsi,dc=lv`.
    #[serde(default)]
    pub group_base: Option<String>,
    /// Search filter that finds a user's groups; `{dn}` is replaced by the user's DN
    /// and `{login}` by the canonical login, both escaped.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// Attribute holding a group's name, for `group_lookup = "group_search"`. With
    /// `member_of`, a group's name is the value of the first part of its DN.
    #[serde(default = "default_group_name_attribute")]
    pub group_name_attribute: String,
    /// Kopa roles granted by group membership: a table from group name or group DN
    /// (compared without regard to case) to a list of roles, e.g.
    /// `"cn=kopa-admins,ou=groups,dc=ventspils,dc=lv" = ["tenant_admin"]`. Roles:
    /// `specialist`, `supervisor`, `service_owner`, `security_officer`,
    /// `tenant_admin`, `platform_admin`, `auditor`. Users in no mapped group sign in
    /// without roles.
    #[serde(default)]
    pub role_map: BTreeMap<String, Vec<String>>,
    /// Rules that recognise disabled or locked accounts from their attributes, checked
    /// before the password. The default recognises OpenLDAP's password policy lock
    /// (`pwdAccountLockedTime`), 389 DS's `nsAccountLock` and Active Directory's
    /// ACCOUNTDISABLE flag. Setting the key replaces the whole list.
    #[serde(default = "default_account_rules")]
    pub account_rules: Vec<AccountRule>,
    /// Seconds to establish a connection (TCP, TLS and the service bind) before the
    /// next server is tried.
    #[serde(default = "default_connect_timeout_secs")]
    #[schemars(range(
        min = *limits::CONNECT_TIMEOUT_SECS.start(),
        max = *limits::CONNECT_TIMEOUT_SECS.end()
    ))]
    pub connect_timeout_secs: u64,
    /// Seconds one LDAP operation (search or bind) may take.
    #[serde(default = "default_operation_timeout_secs")]
    #[schemars(range(
        min = *limits::OPERATION_TIMEOUT_SECS.start(),
        max = *limits::OPERATION_TIMEOUT_SECS.end()
    ))]
    pub operation_timeout_secs: u64,
    /// Most connections held open to each server, for searches and for user binds
    /// each.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = *limits::POOL_SIZE.start(), max = *limits::POOL_SIZE.end()))]
    pub pool_size: u32,
    /// Seconds a server that could not be reached is skipped before it is tried again
    /// (first, in the order of `urls`).
    #[serde(default = "default_retry_after_secs")]
    #[schemars(range(
        min = *limits::RETRY_AFTER_SECS.start(),
        max = *limits::RETRY_AFTER_SECS.end()
    ))]
    pub retry_after_secs: u64,
}

/// The kind of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    /// An LDAP server (or several replicas of one).
    Ldap,
    /// The appliance's own local accounts.
    Local,
}

/// How a user's groups are found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupLookup {
    /// Read the DNs in the user's `member_of_attribute`.
    #[default]
    MemberOf,
    /// Search `group_base` with `group_filter`.
    GroupSearch,
}

/// LDAP attributes holding a user's details; each is optional in the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AttributeMap {
    /// Full name shown in the UI (AD: `displayName`).
    pub display_name: String,
    /// Given name.
    pub given_name: String,
    /// Surname.
    pub surname: String,
    /// E-mail address.
    pub mail: String,
    /// Employee number.
    pub employee_id: String,
}

/// What an [`AccountRule`] concludes about an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// The account is switched off by an administrator.
    #[default]
    Disabled,
    /// The account is locked, e.g. after too many wrong passwords.
    Locked,
}

/// One rule recognising a disabled or locked account. Set exactly one of `present`,
/// `equals` and `bit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRule {
    /// The attribute to look at, e.g. `nsAccountLock`.
    pub attribute: String,
    /// Matches when the attribute has any value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
    /// Matches when a value equals this text, without regard to case.
    #[serde(default)]
    pub equals: Option<String>,
    /// Matches when an integer value has any of these bits set (Active Directory's
    /// ACCOUNTDISABLE in `userAccountControl` is 2).
    #[serde(default)]
    pub bit: Option<u64>,
    /// What a match means.
    #[serde(default)]
    pub state: AccountState,
}

fn default_true() -> bool {
    true
}

fn default_user_filter() -> String {
    "(&(objectClass=inetOrgPerson)(uid={login}))".to_owned()
}

fn default_login_attribute() -> String {
    "uid".to_owned()
}

fn default_subject_attribute() -> String {
    "entryUUID".to_owned()
}

fn default_member_of_attribute() -> String {
    "memberOf".to_owned()
}

fn default_group_filter() -> String {
    "(&(objectClass=groupOfNames)(member={dn}))".to_owned()
}

fn default_group_name_attribute() -> String {
    "cn".to_owned()
}

fn default_account_rules() -> Vec<AccountRule> {
    vec![
        AccountRule {
            attribute: "pwdAccountLockedTime".to_owned(),
            present: true,
            equals: None,
            bit: None,
            state: AccountState::Locked,
        },
        AccountRule {
            attribute: "nsAccountLock".to_owned(),
            present: false,
            equals: Some("true".to_owned()),
            bit: None,
            state: AccountState::Disabled,
        },
        AccountRule {
            attribute: "userAccountControl".to_owned(),
            present: false,
            equals: None,
            bit: Some(2),
            state: AccountState::Disabled,
        },
    ]
}

fn default_connect_timeout_secs() -> u64 {
    3
}

fn default_operation_timeout_secs() -> u64 {
    5
}

fn default_pool_size() -> u32 {
    8
}

fn default_retry_after_secs() -> u64 {
    10
}

impl Default for AttributeMap {
    fn default() -> Self {
        Self {
            display_name: "cn".to_owned(),
            given_name: "givenName".to_owned(),
            surname: "sn".to_owned(),
            mail: "mail".to_owned(),
            employee_id: "employeeNumber".to_owned(),
        }
    }
}

impl DirectoryConfig {
    /// An LDAP directory with every optional key at its default; the required LDAP keys
    /// (`urls`, `bind_dn`, `bind_password_file`, `user_base`) are left for the caller.
    pub fn ldap(id: &str, tenant: &str, display_name_lv: &str) -> Self {
        Self {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            display_name_lv: display_name_lv.to_owned(),
            display_name_en: None,
            domains: Vec::new(),
            kind: DirectoryKind::Ldap,
            urls: Vec::new(),
            starttls: true,
            allow_insecure: false,
            ca_file: None,
            bind_dn: None,
            bind_password_file: None,
            user_base: None,
            user_filter: default_user_filter(),
            login_attribute: default_login_attribute(),
            subject_attribute: default_subject_attribute(),
            attributes: AttributeMap::default(),
            group_lookup: GroupLookup::default(),
            member_of_attribute: default_member_of_attribute(),
            group_base: None,
            group_filter: default_group_filter(),
            group_name_attribute: default_group_name_attribute(),
            role_map: BTreeMap::new(),
            account_rules: default_account_rules(),
            connect_timeout_secs: default_connect_timeout_secs(),
            operation_timeout_secs: default_operation_timeout_secs(),
            pool_size: default_pool_size(),
            retry_after_secs: default_retry_after_secs(),
        }
    }

    /// A directory of the appliance's local accounts.
    pub fn local(id: &str, tenant: &str, display_name_lv: &str) -> Self {
        Self {
            kind: DirectoryKind::Local,
            ..Self::ldap(id, tenant, display_name_lv)
        }
    }

    /// The tenant, when `tenant` is a valid tenant id (`validate()` reports it if not).
    pub fn tenant_id(&self) -> Option<TenantId> {
        TenantId::new(self.tenant.as_str()).ok()
    }

    /// The English display name, falling back to the Latvian one.
    pub fn display_name_en(&self) -> &str {
        self.display_name_en
            .as_deref()
            .unwrap_or(&self.display_name_lv)
    }

    /// The files this entry names, by key within the entry (`ca_file`,
    /// `bind_password_file`), for the readability checks of `Config::check_files`.
    pub fn referenced_files(&self) -> Vec<(&'static str, &Path)> {
        [
            ("ca_file", self.ca_file.as_deref()),
            ("bind_password_file", self.bind_password_file.as_deref()),
        ]
        .into_iter()
        .filter_map(|(key, path)| Some((key, path?)))
        .collect()
    }

    /// Semantic checks of entry `index` of `[[directory]]`.
    pub(crate) fn validate(&self, index: usize, out: &mut Vec<Problem>) {
        let mut v = Checker {
            prefix: format!("directory[{index}]"),
            out,
        };
        v.check("id", check_slug(&self.id));
        if self.tenant_id().is_none() {
            v.push(
                "tenant",
                "Must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
            );
        }
        v.check("display_name_lv", check_display_name(&self.display_name_lv));
        if let Some(name) = &self.display_name_en {
            v.check("display_name_en", check_display_name(name));
        }
        let mut seen = BTreeSet::new();
        for (i, domain) in self.domains.iter().enumerate() {
            let key = format!("domains[{i}]");
            v.check(&key, check_domain(domain));
            if !seen.insert(domain.to_lowercase()) {
                v.push(&key, format!("Domain {domain:?} is listed twice"));
            }
        }
        match self.kind {
            DirectoryKind::Ldap => self.validate_ldap(&mut v),
            DirectoryKind::Local => self.validate_local(&mut v),
        }
    }

    fn validate_local(&self, v: &mut Checker<'_>) {
        let set = [
            ("urls", !self.urls.is_empty()),
            ("ca_file", self.ca_file.is_some()),
            ("bind_dn", self.bind_dn.is_some()),
            ("bind_password_file", self.bind_password_file.is_some()),
            ("user_base", self.user_base.is_some()),
            ("group_base", self.group_base.is_some()),
            ("role_map", !self.role_map.is_empty()),
        ];
        for (key, is_set) in set {
            if is_set {
                v.push(key, "Only for kind = \"ldap\"");
            }
        }
    }

    fn validate_ldap(&self, v: &mut Checker<'_>) {
        if self.urls.is_empty() {
            v.push(
                "urls",
                "At least one LDAP URL is required for kind = \"ldap\"",
            );
        }
        let mut seen = BTreeSet::new();
        let mut plain = false;
        for (i, url) in self.urls.iter().enumerate() {
            let key = format!("urls[{i}]");
            match LdapUrl::parse(url) {
                Ok(parsed) => {
                    plain |= !parsed.tls;
                    if !seen.insert(url.to_ascii_lowercase()) {
                        v.push(&key, format!("URL {url:?} is listed twice"));
                    }
                }
                Err(message) => v.push(&key, message),
            }
        }
        // Refused by default: a plain connection would carry every password in clear text.
        if plain && !self.starttls && !self.allow_insecure {
            v.push(
                "starttls",
                "Turning StartTLS off sends passwords in clear text; it needs allow_insecure = true (tests only)",
            );
        }
        check_path(v, "ca_file", self.ca_file.as_deref());
        check_path(v, "bind_password_file", self.bind_password_file.as_deref());
        match &self.bind_dn {
            None => v.push("bind_dn", "Required for kind = \"ldap\""),
            Some(dn) => v.check("bind_dn", check_dn(dn)),
        }
        if self.bind_password_file.is_none() {
            v.push("bind_password_file", "Required for kind = \"ldap\"");
        }
        match &self.user_base {
            None => v.push("user_base", "Required for kind = \"ldap\""),
            Some(dn) => v.check("user_base", check_dn(dn)),
        }
        v.check(
            "user_filter",
            check_filter(&self.user_filter, &["login"], true),
        );
        let attributes = [
            ("login_attribute", &self.login_attribute),
            ("subject_attribute", &self.subject_attribute),
            ("attributes.display_name", &self.attributes.display_name),
            ("attributes.given_name", &self.attributes.given_name),
            ("attributes.surname", &self.attributes.surname),
            ("attributes.mail", &self.attributes.mail),
            ("attributes.employee_id", &self.attributes.employee_id),
            ("member_of_attribute", &self.member_of_attribute),
            ("group_name_attribute", &self.group_name_attribute),
        ];
        for (key, name) in attributes {
            v.check(key, check_attribute(name));
        }
        if self.group_lookup == GroupLookup::GroupSearch {
            match &self.group_base {
                None => v.push("group_base", "Required for group_lookup = \"group_search\""),
                Some(dn) => v.check("group_base", check_dn(dn)),
            }
            v.check(
                "group_filter",
                check_filter(&self.group_filter, &["dn", "login"], false),
            );
        }
        for (group, roles) in &self.role_map {
            let key = join("role_map", group);
            if group.trim().is_empty() {
                v.push(&key, "Group name must not be empty");
            }
            if roles.is_empty() {
                v.push(&key, "Must name at least one role");
            }
            for role in roles {
                if Role::parse(role).is_none() {
                    let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                    v.push(
                        &key,
                        format!(
                            "Unknown role {role:?} (expected one of {})",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        for (i, rule) in self.account_rules.iter().enumerate() {
            rule.validate(&format!("account_rules[{i}]"), v);
        }
        let ranges = [
            (
                "connect_timeout_secs",
                self.connect_timeout_secs,
                limits::CONNECT_TIMEOUT_SECS,
            ),
            (
                "operation_timeout_secs",
                self.operation_timeout_secs,
                limits::OPERATION_TIMEOUT_SECS,
            ),
            (
                "retry_after_secs",
                self.retry_after_secs,
                limits::RETRY_AFTER_SECS,
            ),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                v.push(key, range_message(value, *range.start(), *range.end()));
            }
        }
        if !limits::POOL_SIZE.contains(&self.pool_size) {
            let (min, max) = (*limits::POOL_SIZE.start(), *limits::POOL_SIZE.end());
            v.push("pool_size", range_message(self.pool_size, min, max));
        }
    }
}

impl AccountRule {
    fn validate(&self, key: &str, v: &mut Checker<'_>) {
        v.check(
            &format!("{key}.attribute"),
            check_attribute(&self.attribute),
        );
        let conditions = usize::from(self.present)
            + usize::from(self.equals.is_some())
            + usize::from(self.bit.is_some());
        if conditions != 1 {
            v.push(key, "Set exactly one of present = true, equals and bit");
        }
        if self.bit == Some(0) {
            v.push(
                &format!("{key}.bit"),
                "Must not be 0 (it would never match)",
            );
        }
    }
}

/// Pushes problems under one `directory[i]` prefix.
struct Checker<'a> {
    prefix: String,
    out: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        // `key` is already a (possibly quoted) relative path.
        let path = format!("{}.{key}", self.prefix);
        self.out.push(Problem::default_origin(path, message));
    }

    fn check(&mut self, key: &str, result: Result<(), String>) {
        if let Err(message) = result {
            self.push(key, message);
        }
    }
}

fn check_path(v: &mut Checker<'_>, key: &str, path: Option<&Path>) {
    if path.is_some_and(|p| p.as_os_str().is_empty()) {
        v.push(key, "Must not be empty");
    }
}

fn check_slug(id: &str) -> Result<(), String> {
    // The same shape as a tenant id: safe in URLs, file names and log fields.
    TenantId::new(id).map(drop).map_err(|_| {
        "Must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'".to_owned()
    })
}

fn check_display_name(name: &str) -> Result<(), String> {
    let count = name.chars().count();
    if name.trim().is_empty() {
        return Err("Must not be empty".to_owned());
    }
    if count > MAX_DISPLAY_NAME_CHARS {
        return Err(format!("Longer than {MAX_DISPLAY_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("Must not contain control characters".to_owned());
    }
    Ok(())
}

/// A domain name: dot-separated labels of letters (any script, so `rīga.lv` is
/// fine), digits and inner hyphens.
fn check_domain(domain: &str) -> Result<(), String> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.chars().count() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "Not a domain name: {domain:?} (expected e.g. ventspils.lv)"
        ))
    }
}

/// An attribute description: a name (`givenName`) or OID, optionally with options
/// (`cn;lang-lv`).
fn check_attribute(name: &str) -> Result<(), String> {
    let mut parts = name.split(';');
    let base = parts.next().unwrap_or_default();
    let is_name = base.starts_with(|c: char| c.is_ascii_alphabetic())
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let is_oid = !base.is_empty()
        && base
            .split('.')
            .all(|arc| !arc.is_empty() && arc.chars().all(|c| c.is_ascii_digit()));
    let options_ok = parts.all(|option| {
        !option.is_empty()
            && option
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if (is_name || is_oid) && options_ok {
        Ok(())
    } else {
        Err(format!("Not an LDAP attribute name: {name:?}"))
    }
}

/// A DN: comma-separated `attribute=value` parts. Only the shape is checked; the
/// server judges the rest.
fn check_dn(dn: &str) -> Result<(), String> {
    let shape_ok = !dn.trim().is_empty()
        && !dn.chars().any(char::is_control)
        && dn.split(',').all(|rdn| {
            rdn.split_once('=')
                .is_some_and(|(a, _)| !a.trim().is_empty())
        });
    if shape_ok {
        Ok(())
    } else {
        Err(format!(
            "Not a distinguished name: {dn:?} (expected e.g. ou=people,dc=ventspils,dc=lv)"
        ))
    }
}

/// A filter template: parenthesised, balanced, with only the `allowed` placeholders;
/// with `require_all`, each of them must occur, else at least one.
fn check_filter(filter: &str, allowed: &[&str], require_all: bool) -> Result<(), String> {
    if filter.len() > MAX_FILTER_BYTES {
        return Err(format!("Longer than {MAX_FILTER_BYTES} bytes"));
    }
    if !filter.starts_with('(') || !filter.ends_with(')') {
        return Err("Must be an LDAP filter in parentheses".to_owned());
    }
    let mut depth = 0_i64;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c.is_control() => return Err("Must not contain control characters".to_owned()),
            _ => {}
        }
        if depth < 0 {
            return Err("Unbalanced parentheses".to_owned());
        }
    }
    if depth != 0 {
        return Err("Unbalanced parentheses".to_owned());
    }
    let mut rest = filter;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err("Unclosed `{`".to_owned());
        };
        let name = &after[..end];
        if !allowed.contains(&name) {
            let list: Vec<String> = allowed.iter().map(|a| format!("{{{a}}}")).collect();
            return Err(format!(
                "Unknown placeholder {{{name}}} (allowed: {})",
                list.join(", ")
            ));
        }
        rest = &after[end + 1..];
    }
    let present: Vec<&&str> = allowed
        .iter()
        .filter(|a| filter.contains(&format!("{{{a}}}")))
        .collect();
    let list: Vec<String> = allowed.iter().map(|a| format!("{{{a}}}")).collect();
    if require_all && present.len() != allowed.len() {
        return Err(format!("Must contain {}", list.join(" and ")));
    }
    if present.is_empty() {
        return Err(format!("Must contain {}", list.join(" or ")));
    }
    Ok(())
}

/// A parsed `ldap://` or `ldaps://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUrl {
    /// Whether TLS starts with the connection (`ldaps://`).
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port; 389 or 636 when the URL names none.
    pub port: u16,
}

impl LdapUrl {
    /// Parses `ldap[s]://host[:port][/]`; anything else (a path, query, user
    /// information) is refused, because Kopa takes those settings from its own keys.
    pub fn parse(url: &str) -> Result<Self, String> {
        let lower = url.to_ascii_lowercase();
        let (tls, rest) = if lower.starts_with("ldaps://") {
            (true, &url["ldaps://".len()..])
        } else if lower.starts_with("ldap://") {
            (false, &url["ldap://".len()..])
        } else {
            return Err(format!(
                "Not an LDAP URL: {url:?} (expected ldap://host or ldaps://host)"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(format!("No host in {url:?}"));
        }
        if authority.contains(['/', '?', '#', '@'])
            || authority
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "Only ldap[s]://host[:port] is allowed, found {url:?}"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("Invalid host in {url:?}"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("Invalid host in {url:?}"));
            }
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(format!("Invalid host in {url:?}")),
            };
            (addr.to_owned(), port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        let host_ok = !host.is_empty()
            && (host.contains(':')
                || host.split('.').all(|label| {
                    !label.is_empty()
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }));
        if !host_ok {
            return Err(format!("Invalid host in {url:?}"));
        }
        let port = match port {
            None => {
                if tls {
                    636
                } else {
                    389
                }
            }
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(format!("Invalid port in {url:?}")),
            },
        };
        Ok(Self { tls, host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Origin, Overrides, Problems, load_str};

    fn ldap() -> DirectoryConfig {
        DirectoryConfig {
            domains: vec!["ventspils.lv".into()],
            urls: vec![
                "ldap://ldap1.ventspils.lv".into(),
                "ldaps://10.0.0.2:1636".into(),
            ],
            bind_dn: Some("cn=kopa,ou=system,dc=ventspils,dc=lv".into()),
            bind_password_file: Some("/etc/kopa/secrets/ldap".into()),
            user_base: Some("ou=people,dc=ventspils,dc=lv".into()),
            ..DirectoryConfig::ldap("ventspils", "ventspils", "Ventspils")
        }
    }

    fn keys(directories: &[DirectoryConfig]) -> Vec<String> {
        let mut out = Vec::new();
        for (index, directory) in directories.iter().enumerate() {
            directory.validate(index, &mut out);
        }
        out.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn a_complete_ldap_directory_and_a_local_one_are_valid() {
        let local = DirectoryConfig {
            domains: vec!["kopa.local".into()],
            ..DirectoryConfig::local("local", "kopa", "Kopa")
        };
        assert!(keys(&[ldap(), local]).is_empty());
    }

    #[test]
    fn ldap_directories_need_their_keys() {
        let bare = DirectoryConfig::ldap("x", "x", "X");
        assert_eq!(
            keys(&[bare]),
            [
                "directory[0].urls",
                "directory[0].bind_dn",
                "directory[0].bind_password_file",
                "directory[0].user_base",
            ]
        );
    }

    #[test]
    fn local_directories_refuse_ldap_keys() {
        let local = DirectoryConfig {
            urls: vec!["ldaps://x".into()],
            role_map: BTreeMap::from([("a".into(), vec!["auditor".into()])]),
            ..DirectoryConfig::local("local", "kopa", "Kopa")
        };
        assert_eq!(
            keys(&[local]),
            ["directory[0].urls", "directory[0].role_map"]
        );
    }

    #[test]
    fn bad_values_are_reported_with_their_paths() {
        let mut d = ldap();
        d.id = "Ventspils".into();
        d.tenant = "-".into();
        d.domains.push("VENTSPILS.lv".into());
        d.domains.push("no domain".into());
        d.urls.push("http://x".into());
        d.starttls = false;
        d.user_filter = "(uid=x)".into();
        d.attributes.mail = "e mail".into();
        d.role_map.insert(
            "cn=Admini,ou=groups,dc=ventspils,dc=lv".into(),
            vec!["root".into()],
        );
        d.account_rules.push(AccountRule {
            attribute: "x".into(),
            present: true,
            equals: Some("y".into()),
            bit: None,
            state: AccountState::Disabled,
        });
        d.pool_size = 0;
        assert_eq!(
            keys(&[d]),
            [
                "directory[0].id",
                "directory[0].tenant",
                "directory[0].domains[1]",
                "directory[0].domains[2]",
                "directory[0].urls[2]",
                "directory[0].starttls",
                "directory[0].user_filter",
                "directory[0].attributes.mail",
                "directory[0].role_map.\"cn=Admini,ou=groups,dc=ventspils,dc=lv\"",
                "directory[0].account_rules[3]",
                "directory[0].pool_size",
            ]
        );
    }

    #[test]
    fn insecure_plain_ldap_needs_the_explicit_switch() {
        let mut d = ldap();
        d.starttls = false;
        d.allow_insecure = true;
        assert!(keys(&[d.clone()]).is_empty());
        d.allow_insecure = false;
        d.urls = vec!["ldaps://only.tls".into()];
        assert!(
            keys(&[d]).is_empty(),
            "no ldap:// URL, nothing goes in clear"
        );
    }

    #[test]
    fn duplicate_ids_and_domains_across_entries() {
        let text = "[[directory]]\nid = \"a\"\ntenant = \"a\"\nkind = \"local\"\n\
                    display_name_lv = \"A\"\ndomains = [\"talsi.lv\", \"a.lv\"]\n\n\
                    [[directory]]\nid = \"a\"\ntenant = \"b\"\nkind = \"local\"\n\
                    display_name_lv = \"B\"\ndomains = [\"b.lv\", \"Talsi.LV\"]\n";
        let problems = load_problems(text);
        let found: Vec<(&str, Option<usize>, &str)> = problems
            .iter()
            .map(|(k, l, m)| (k.as_str(), *l, m.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "directory[1].id",
                    Some(9),
                    "\"a\" is already used by directory[0]"
                ),
                (
                    "directory[1].domains[1]",
                    Some(13),
                    "\"Talsi.LV\" is already used by directory[0]"
                ),
            ]
        );
    }

    #[test]
    fn group_search_needs_a_base_and_a_placeholder() {
        let mut d = ldap();
        d.group_lookup = GroupLookup::GroupSearch;
        d.group_filter = "(objectClass=groupOfNames)".into();
        assert_eq!(
            keys(&[d]),
            ["directory[0].group_base", "directory[0].group_filter"]
        );
    }

    #[test]
    fn filters() {
        assert!(check_filter("(uid={login})", &["login"], true).is_ok());
        assert!(check_filter("(&(a={dn})(b={login}))", &["dn", "login"], false).is_ok());
        for bad in [
            "uid={login}",
            "((uid={login})",
            "(uid={user})",
            "(uid=x)",
            "(uid={login)",
        ] {
            assert!(check_filter(bad, &["login"], true).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        let parsed = LdapUrl::parse("LDAPS://[::1]:1636/").unwrap();
        assert_eq!(
            (parsed.tls, parsed.host.as_str(), parsed.port),
            (true, "::1", 1636)
        );
        assert_eq!(LdapUrl::parse("ldap://dc1.talsi.lv").unwrap().port, 389);
        assert_eq!(LdapUrl::parse("ldaps://dc1.talsi.lv").unwrap().port, 636);
        for bad in [
            "ldap://",
            "ldapi:///var/run/slapd",
            "ldap://h:0",
            "ldap://h:70000",
            "ldap://u@h",
            "ldap://h/dc=x??sub",
            "ldap://h h",
        ] {
            assert!(LdapUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attributes_and_dns() {
        for good in ["cn", "givenName", "cn;lang-lv", "2.5.4.3", "employee-id"] {
            assert!(check_attribute(good).is_ok(), "{good}");
        }
        for bad in ["", "1cn", "a b", "cn;", "2..5"] {
            assert!(check_attribute(bad).is_err(), "{bad}");
        }
        assert!(check_dn("ou=people,dc=ventspils,dc=lv").is_ok());
        assert!(check_dn("people").is_err());
    }

    const EXAMPLE: &str = r#"
[[directory]]
id = "local"
tenant = "kopa"
kind = "local"
display_name_lv = "Kopa"

[[directory]]
id = "ventspils"
tenant = "ventspils"
kind = "ldap"
display_name_lv = "Ventspils"
urls = ["ldap://dc1.ventspils.lv", "ftp://x"]
bind_dn = "cn=kopa,dc=ventspils,dc=lv"
bind_password_file = "/etc/kopa/ldap"
user_base = "ou=people,dc=ventspils,dc=lv"
pool_size = 0

[directory.role_map]
"cn=Admini,dc=ventspils,dc=lv" = ["tenant_admin", "king"]

[[directory.account_rules]]
attribute = "nsAccountLock"
bit = 0
"#;

    fn load_problems(text: &str) -> Vec<(String, Option<usize>, String)> {
        let Err(Problems(problems)) =
            load_str(text, "kopa.toml", Vec::new(), &Overrides::default())
        else {
            panic!("expected problems");
        };
        problems
            .into_iter()
            .map(|p| {
                let line = match p.origin {
                    Origin::File { line, .. } => line,
                    _ => None,
                };
                (p.key, line, p.message)
            })
            .collect()
    }

    #[test]
    fn problems_inside_arrays_of_tables_carry_path_and_line() {
        let problems = load_problems(EXAMPLE);
        let found: Vec<(&str, Option<usize>)> =
            problems.iter().map(|(k, l, _)| (k.as_str(), *l)).collect();
        assert_eq!(
            found,
            [
                ("directory[1].urls[1]", Some(13)),
                ("directory[1].pool_size", Some(17)),
                (
                    "directory[1].role_map.\"cn=Admini,dc=ventspils,dc=lv\"",
                    Some(20)
                ),
                ("directory[1].account_rules[0].bit", Some(24)),
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn missing_required_keys_point_at_the_entry() {
        let text = "[[directory]]\nid = \"a\"\n\n[[directory]]\nid = \"b\"\ntenant = \"b\"\nkind = \"local\"\ndisplay_name_lv = \"B\"\nfoo = 1\n";
        let problems = load_problems(text);
        let found: Vec<(&str, Option<usize>)> =
            problems.iter().map(|(k, l, _)| (k.as_str(), *l)).collect();
        assert_eq!(
            found,
            [
                ("directory[0].tenant", Some(1)),
                ("directory[0].display_name_lv", Some(1)),
                ("directory[0].kind", Some(1)),
                ("directory[1].foo", Some(9)),
            ],
            "{problems:#?}"
        );
        assert_eq!(problems[0].2, "Missing required key");
    }

    #[test]
    fn a_full_entry_loads() {
        let text = EXAMPLE
            .replace(", \"ftp://x\"", "")
            .replace("pool_size = 0", "pool_size = 4")
            .replace(", \"king\"", "")
            .replace("bit = 0", "equals = \"true\"");
        let config = load_str(&text, "kopa.toml", Vec::new(), &Overrides::default()).unwrap();
        let d = &config.directories[1];
        assert_eq!(d.pool_size, 4);
        assert_eq!(d.account_rules.len(), 1);
        assert_eq!(d.attributes, AttributeMap::default());
        assert_eq!(d.connect_timeout_secs, 3);
        assert_eq!(d.display_name_en(), "Ventspils");
        assert_eq!(config.directories[0].kind, DirectoryKind::Local);
    }
}
