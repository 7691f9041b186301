//! From directory entries to Kopa users: search filters, the attributes to ask for,
//! account state, groups and roles. No I/O here.

use std::fmt::Write as _;

use kopa_config::{AccountRule, AccountState, AttributeMap, DirectoryConfig, GroupLookup};
use kopa_core::Role;
use ldap3::{SearchEntry, ldap_escape};

use crate::directory::{AuthFailure, DirectoryInfo, DirectoryUser};

/// Longest attribute value kept, in characters; directory data is untrusted input.
const MAX_VALUE_CHARS: usize = 1024;

/// How one directory's entries are read.
#[derive(Debug)]
pub(super) struct Mapping {
    pub user_base: String,
    user_filter: String,
    login_attribute: String,
    subject_attribute: String,
    attributes: AttributeMap,
    pub group_lookup: GroupLookup,
    member_of_attribute: String,
    pub group_base: String,
    group_filter: String,
    pub group_name_attribute: String,
    role_map: Vec<(GroupKey, Vec<Role>)>,
    account_rules: Vec<AccountRule>,
}

/// A `role_map` key: a DN (normalised) or a group name (lowercase).
#[derive(Debug, PartialEq, Eq)]
enum GroupKey {
    Dn(String),
    Name(String),
}

/// A group the user is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    pub dn: String,
    pub name: String,
}

/// The attributes of one entry, looked up by attribute description regardless of case
/// (servers answer with the schema's spelling, which need not be the configured one). An
/// entry carries a dozen attributes at most, so a scan beats hashing a lowered copy of
/// the name on every lookup.
#[derive(Debug, Default)]
pub(super) struct Attrs {
    pub dn: String,
    text: Vec<(String, Vec<String>)>,
    binary: Vec<(String, Vec<Vec<u8>>)>,
}

/// The values of attribute `name` in `attrs`, ignoring case.
fn lookup<'a, V>(attrs: &'a [(String, Vec<V>)], name: &str) -> Option<&'a [V]> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

impl Mapping {
    /// The reading rules of `config`; fails on what `Config::validate` refuses.
    pub fn from_config(config: &DirectoryConfig) -> Result<Self, String> {
        let mut role_map = Vec::with_capacity(config.role_map.len());
        for (group, names) in &config.role_map {
            let roles = names
                .iter()
                .map(|name| Role::parse(name).ok_or_else(|| format!("unknown role {name:?}")))
                .collect::<Result<Vec<Role>, String>>()?;
            role_map.push((GroupKey::parse(group), roles));
        }
        let user_base = config
            .user_base
            .clone()
            .ok_or_else(|| "user_base is not set".to_owned())?;
        let group_base = match config.group_lookup {
            GroupLookup::MemberOf => String::new(),
            GroupLookup::GroupSearch => config
                .group_base
                .clone()
                .ok_or_else(|| "group_base is not set".to_owned())?,
        };
        Ok(Self {
            user_base,
            user_filter: config.user_filter.clone(),
            login_attribute: config.login_attribute.clone(),
            subject_attribute: config.subject_attribute.clone(),
            attributes: config.attributes.clone(),
            group_lookup: config.group_lookup,
            member_of_attribute: config.member_of_attribute.clone(),
            group_base,
            group_filter: config.group_filter.clone(),
            group_name_attribute: config.group_name_attribute.clone(),
            role_map,
            account_rules: config.account_rules.clone(),
        })
    }

    /// The user search filter for what the user typed, escaped.
    pub fn user_filter(&self, login: &str) -> String {
        fill(&self.user_filter, &[("login", login)])
    }

    /// The group search filter for a user, escaped.
    pub fn group_filter(&self, dn: &str, login: &str) -> String {
        fill(&self.group_filter, &[("dn", dn), ("login", login)])
    }

    /// Every attribute the user search asks for; operational ones (`entryUUID`,
    /// `memberOf`, `pwdAccountLockedTime`) are only returned when named.
    pub fn user_attributes(&self) -> Vec<String> {
        let a = &self.attributes;
        let mut names = vec![
            self.login_attribute.clone(),
            self.subject_attribute.clone(),
            a.display_name.clone(),
            a.given_name.clone(),
            a.surname.clone(),
            a.mail.clone(),
            a.employee_id.clone(),
        ];
        if self.group_lookup == GroupLookup::MemberOf {
            names.push(self.member_of_attribute.clone());
        }
        names.extend(self.account_rules.iter().map(|r| r.attribute.clone()));
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.to_ascii_lowercase()));
        names
    }

    /// What the account rules say about an entry: `Disabled` wins over `Locked`,
    /// since unlocking would not help a disabled account.
    pub fn account_state(&self, attrs: &Attrs) -> Option<AuthFailure> {
        let matched: Vec<AccountState> = self
            .account_rules
            .iter()
            .filter(|rule| rule_matches(rule, attrs))
            .map(|rule| rule.state)
            .collect();
        if matched.contains(&AccountState::Disabled) {
            Some(AuthFailure::Disabled)
        } else if matched.contains(&AccountState::Locked) {
            Some(AuthFailure::Locked)
        } else {
            None
        }
    }

    /// The groups named in the user's `member_of_attribute`.
    pub fn member_of_groups(&self, attrs: &Attrs) -> Vec<Group> {
        attrs
            .all(&self.member_of_attribute)
            .iter()
            .map(|dn| Group {
                dn: dn.clone(),
                name: first_rdn_value(dn),
            })
            .collect()
    }

    /// A group found by the group search.
    pub fn group_from_entry(&self, attrs: &Attrs) -> Group {
        let name = attrs
            .first(&self.group_name_attribute)
            .map(clean)
            .unwrap_or_else(|| first_rdn_value(&attrs.dn));
        Group {
            dn: attrs.dn.clone(),
            name,
        }
    }

    /// The Kopa roles `role_map` grants for `groups`, sorted.
    pub fn roles(&self, groups: &[Group]) -> Vec<Role> {
        let mut roles: Vec<Role> = groups
            .iter()
            .flat_map(|group| {
                let dn = normalize_dn(&group.dn);
                let name = group.name.to_lowercase();
                self.role_map
                    .iter()
                    .filter(move |(key, _)| match key {
                        GroupKey::Dn(key) => *key == dn,
                        GroupKey::Name(key) => *key == name,
                    })
                    .flat_map(|(_, roles)| roles.iter().copied())
            })
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }

    /// The canonical login of an entry: the login attribute, else what was typed.
    pub fn login(&self, attrs: &Attrs, typed: &str) -> String {
        attrs
            .first(&self.login_attribute)
            .map(clean)
            .unwrap_or_else(|| typed.to_owned())
    }

    /// The user an entry describes.
    pub fn user(
        &self,
        info: &DirectoryInfo,
        attrs: &Attrs,
        login: String,
        groups: &[Group],
        server: &str,
    ) -> DirectoryUser {
        let a = &self.attributes;
        let text = |name: &str| attrs.first(name).map(clean).filter(|v| !v.is_empty());
        let given_name = text(&a.given_name);
        let surname = text(&a.surname);
        let display_name = text(&a.display_name)
            .or_else(|| {
                let parts: Vec<&str> = [&given_name, &surname]
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            })
            .unwrap_or_else(|| login.clone());
        let mut names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
        names.sort();
        names.dedup();
        DirectoryUser {
            directory_id: info.id.clone(),
            tenant: info.tenant.clone(),
            subject: self.subject(attrs),
            login,
            dn: Some(attrs.dn.clone()),
            display_name,
            given_name,
            surname,
            mail: text(&a.mail),
            employee_id: text(&a.employee_id),
            groups: names,
            roles: self.roles(groups),
            server: Some(server.to_owned()),
        }
    }

    /// The subject attribute's value (binary values in hex), else the DN.
    fn subject(&self, attrs: &Attrs) -> String {
        if let Some(value) = attrs.first(&self.subject_attribute).map(clean)
            && !value.is_empty()
        {
            return value;
        }
        if let Some(bytes) = attrs.first_binary(&self.subject_attribute) {
            return bytes.iter().fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            });
        }
        attrs.dn.clone()
    }
}

fn rule_matches(rule: &AccountRule, attrs: &Attrs) -> bool {
    if rule.present {
        return attrs.has(&rule.attribute);
    }
    let values = attrs.all(&rule.attribute);
    if let Some(expected) = &rule.equals {
        let expected = expected.to_lowercase();
        return values.iter().any(|v| v.trim().to_lowercase() == expected);
    }
    if let Some(mask) = rule.bit {
        return values.iter().any(|v| {
            let v = v.trim();
            // AD writes userAccountControl as a signed 32-bit integer.
            let bits = v
                .parse::<u64>()
                .ok()
                .or_else(|| v.parse::<i64>().ok().map(i64::cast_unsigned));
            bits.is_some_and(|bits| bits & mask != 0)
        });
    }
    false
}

impl GroupKey {
    fn parse(key: &str) -> Self {
        if key.contains('=') {
            GroupKey::Dn(normalize_dn(key))
        } else {
            GroupKey::Name(key.trim().to_lowercase())
        }
    }
}

impl Attrs {
    /// The attributes of a search result entry. `SearchEntry::construct` panics on a
    /// malformed entry; the entry comes from the network, so that panic is contained
    /// and the entry treated as unreadable.
    pub fn from_result(entry: ldap3::ResultEntry) -> Option<Self> {
        let entry = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SearchEntry::construct(entry)
        }))
        .ok()?;
        Some(Self::from_entry(entry))
    }

    fn from_entry(entry: SearchEntry) -> Self {
        Self {
            dn: entry.dn,
            text: entry.attrs.into_iter().collect(),
            binary: entry.bin_attrs.into_iter().collect(),
        }
    }

    /// The text values of an attribute (none when absent or binary).
    pub fn all(&self, name: &str) -> &[String] {
        lookup(&self.text, name).unwrap_or_default()
    }

    /// The first text value of an attribute.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.all(name).first().map(String::as_str)
    }

    fn first_binary(&self, name: &str) -> Option<&[u8]> {
        lookup(&self.binary, name)
            .and_then(<[_]>::first)
            .map(Vec::as_slice)
    }

    /// Whether the attribute has any value, text or binary.
    pub fn has(&self, name: &str) -> bool {
        lookup(&self.text, name).is_some_and(|v| !v.is_empty())
            || lookup(&self.binary, name).is_some_and(|v| !v.is_empty())
    }
}

/// Replaces `{name}` placeholders of `template` in one pass with escaped values, so a
/// value that itself contains `{login}` is never substituted again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let replaced = after.find('}').and_then(|end| {
            let name = &after[..end];
            let (_, value) = values.iter().find(|(n, _)| *n == name)?;
            Some((ldap_escape(*value), end))
        });
        match replaced {
            Some((value, end)) => {
                out.push_str(&value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Drops control characters and caps the length of a value from the directory.
fn clean(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_VALUE_CHARS)
        .collect()
}

/// Lowercases a DN and drops the spaces around `,` and `=` that separate its parts,
/// so `CN=Admini, OU=Grupas` and `cn=admini,ou=grupas` compare equal.
pub(super) fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut escaped = false;
    for c in dn.trim().chars() {
        if escaped {
            out.extend(c.to_lowercase());
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                out.push(c);
                escaped = true;
            }
            ',' | '=' => {
                while out.ends_with(' ') && !out.ends_with("\\ ") {
                    out.pop();
                }
                out.push(c);
            }
            ' ' if out.ends_with([',', '=']) => {}
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// The value of the first part of a DN, unescaped: `cn=Vadība,ou=groups,…` → `Vadība`.
fn first_rdn_value(dn: &str) -> String {
    let mut bytes = Vec::new();
    let mut in_value = false;
    let mut chars = dn.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '=' if !in_value => in_value = true,
            ',' | '+' if in_value => break,
            '\\' => {
                let hex: String = chars.clone().take(2).collect();
                if hex.len() == 2
                    && let Ok(byte) = u8::from_str_radix(&hex, 16)
                {
                    if in_value {
                        bytes.push(byte);
                    }
                    chars.next();
                    chars.next();
                } else if let Some(next) = chars.next()
                    && in_value
                {
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(next.encode_utf8(&mut buf).as_bytes());
                }
            }
            c if in_value => {
                let mut buf = [0; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => {}
        }
    }
    clean(String::from_utf8_lossy(&bytes).trim())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use kopa_config::DirectoryKind;
    use kopa_core::TenantId;

    use super::*;

    fn mapping(role_map: &[(&str, &[&str])]) -> Mapping {
        let mut config = DirectoryConfig::ldap("ventspils", "ventspils", "Ventspils");
        config.user_base = Some("ou=people,dc=ventspils,dc=lv".into());
        config.role_map = role_map
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.iter().map(|r| (*r).to_owned()).collect()))
            .collect::<BTreeMap<_, _>>();
        Mapping::from_config(&config).unwrap()
    }

    fn attrs(dn: &str, pairs: &[(&str, &[&str])]) -> Attrs {
        Attrs::from_entry(SearchEntry {
            dn: dn.into(),
            attrs: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        })
    }

    #[test]
    fn filter_values_are_escaped_in_one_pass() {
        let m = mapping(&[]);
        assert_eq!(
            m.user_filter("*)(uid=*"),
            "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))"
        );
        assert_eq!(
            m.user_filter("a\\b\0"),
            "(&(objectClass=inetOrgPerson)(uid=a\\5cb\\00))"
        );
        assert_eq!(
            m.user_filter("bērziņa"),
            "(&(objectClass=inetOrgPerson)(uid=bērziņa))"
        );
        assert_eq!(
            fill(
                "(&(member={dn})(uid={login}))",
                &[("dn", "cn={login}"), ("login", "x")]
            ),
            "(&(member=cn={login})(uid=x))"
        );
        assert_eq!(fill("({other}={login})", &[("login", "x")]), "({other}=x)");
    }

    #[test]
    fn operational_attributes_are_requested_by_name() {
        let names = mapping(&[]).user_attributes();
        for expected in [
            "uid",
            "entryUUID",
            "memberOf",
            "pwdAccountLockedTime",
            "userAccountControl",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
    }

    #[test]
    fn account_rules() {
        let m = mapping(&[]);
        let dn = "uid=x,dc=lv";
        assert_eq!(m.account_state(&attrs(dn, &[("cn", &["X"])])), None);
        let locked = attrs(dn, &[("pwdAccountLockedTime", &["000001010000Z"])]);
        assert_eq!(m.account_state(&locked), Some(AuthFailure::Locked));
        let disabled = attrs(dn, &[("nsaccountlock", &["TRUE"])]);
        assert_eq!(m.account_state(&disabled), Some(AuthFailure::Disabled));
        assert_eq!(
            m.account_state(&attrs(dn, &[("nsAccountLock", &["false"])])),
            None
        );
        let ad = |v: &'static str| attrs(dn, &[("userAccountControl", std::slice::from_ref(&v))]);
        assert_eq!(m.account_state(&ad("514")), Some(AuthFailure::Disabled));
        assert_eq!(m.account_state(&ad("512")), None);
        assert_eq!(
            m.account_state(&ad("-2147483646")),
            Some(AuthFailure::Disabled)
        );
        assert_eq!(m.account_state(&ad("garbage")), None);
        let both = attrs(
            dn,
            &[
                ("pwdAccountLockedTime", &["x"]),
                ("nsAccountLock", &["true"]),
            ],
        );
        assert_eq!(m.account_state(&both), Some(AuthFailure::Disabled));
    }

    #[test]
    fn roles_come_from_group_names_and_dns() {
        let m = mapping(&[
            ("speciālisti", &["specialist"]),
            (
                "CN=IT-admini, OU=groups,DC=ventspils,DC=lv",
                &["tenant_admin", "auditor"],
            ),
            ("vadītāji", &["supervisor", "specialist"]),
        ]);
        let user = attrs(
            "uid=janis,ou=people,dc=ventspils,dc=lv",
            &[(
                "memberOf",
                &[
                    "cn=Speciālisti,ou=groups,dc=ventspils,dc=lv",
                    "cn=it-admini,ou=groups,dc=ventspils,dc=lv",
                    "cn=Sports,ou=groups,dc=ventspils,dc=lv",
                ],
            )],
        );
        let groups = m.member_of_groups(&user);
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["Speciālisti", "it-admini", "Sports"]);
        assert_eq!(
            m.roles(&groups),
            [Role::Specialist, Role::TenantAdmin, Role::Auditor]
        );
    }

    #[test]
    fn dn_helpers() {
        assert_eq!(
            normalize_dn(" CN=Kopa IT , OU=Grupas,DC=ad "),
            "cn=kopa it,ou=grupas,dc=ad"
        );
        assert_eq!(first_rdn_value("cn=Vad\\c4\\abba,ou=x"), "Vadība");
        assert_eq!(first_rdn_value("cn=Smith\\, John,ou=x"), "Smith, John");
        assert_eq!(
            first_rdn_value("cn=Klientu centrs+ou=x,dc=y"),
            "Klientu centrs"
        );
        assert_eq!(first_rdn_value("garbage"), "");
    }

    #[test]
    fn users_are_built_from_attributes() {
        let m = mapping(&[("sports", &["auditor"])]);
        let info = DirectoryInfo {
            id: "ventspils".into(),
            tenant: TenantId::new("ventspils").unwrap(),
            display_name_lv: "Ventspils".into(),
            display_name_en: "Ventspils".into(),
            domains: vec![],
            kind: DirectoryKind::Ldap,
        };
        let entry = attrs(
            "uid=liga,ou=people,dc=ventspils,dc=lv",
            &[
                ("uid", &["Liga"]),
                ("givenName", &["Līga"]),
                ("sn", &["Ūdre\u{7}"]),
                ("entryUUID", &["c0ffee00-0000-4000-8000-000000000001"]),
            ],
        );
        let groups = [Group {
            dn: "cn=Sports,ou=groups,dc=ventspils,dc=lv".into(),
            name: "Sports".into(),
        }];
        let login = m.login(&entry, "liga");
        let user = m.user(&info, &entry, login, &groups, "ldap://a");
        assert_eq!(user.login, "Liga");
        assert_eq!(
            user.display_name, "Līga Ūdre",
            "falls back to given name and surname"
        );
        assert_eq!(
            user.surname.as_deref(),
            Some("Ūdre"),
            "control characters dropped"
        );
        assert_eq!(user.subject, "c0ffee00-0000-4000-8000-000000000001");
        assert_eq!(user.roles, [Role::Auditor]);
        assert_eq!(user.mail, None);

        let bare = attrs("uid=x,dc=lv", &[]);
        assert_eq!(
            m.subject(&bare),
            "uid=x,dc=lv",
            "DN when there is no subject attribute"
        );

        // A server may spell attribute descriptions differently from the configuration.
        let spelled = attrs(
            "uid=liga,ou=people,dc=ventspils,dc=lv",
            &[
                ("UID", &["liga"]),
                ("GivenName", &["Līga"]),
                ("entryuuid", &["c0ffee00-0000-4000-8000-000000000002"]),
                ("NSACCOUNTLOCK", &["TRUE"]),
            ],
        );
        let user = m.user(&info, &spelled, "liga".into(), &[], "ldap://a");
        assert_eq!(user.given_name.as_deref(), Some("Līga"));
        assert_eq!(user.subject, "c0ffee00-0000-4000-8000-000000000002");
        assert!(spelled.has("nsAccountLock") && !spelled.has("pwdAccountLockedTime"));
        assert_eq!(spelled.all("uid"), ["liga"]);
        assert!(spelled.all("mail").is_empty());
    }
}
