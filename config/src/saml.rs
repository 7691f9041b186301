//! `[saml]` (lifetimes, clock skew) and `[[saml_sp]]` (service providers).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::validate::check_range;

pub(crate) mod limits {
    use std::ops::RangeInclusive;

    pub const CLOCK_SKEW_SECS: RangeInclusive<u64> = 0..=600;
    pub const ASSERTION_LIFETIME_SECS: RangeInclusive<u64> = 60..=3600;
    pub const REQUEST_MAX_AGE_SECS: RangeInclusive<u64> = 30..=3600;
    pub const ENTITY_ID_BYTES: usize = 1024;
    pub const METADATA_REFRESH_SECS: RangeInclusive<u64> = 60..=7 * 86_400;
    pub const METADATA_MIN_REFRESH_SECS: RangeInclusive<u64> = 1..=3600;
    pub const LOGOUT_WAIT_SECS: RangeInclusive<u64> = 2..=120;
    pub const ATTRIBUTES: usize = 64;
}

/// Where a released attribute's values come from.
pub const ATTRIBUTE_SOURCES: [&str; 9] = [
    "subject",
    "login",
    "display_name",
    "email",
    "given_name",
    "family_name",
    "tenant",
    "roles",
    "groups",
];

/// The SAML identity provider: rules that apply to every service provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SamlConfig {
    /// Seconds of clock difference tolerated with service providers (request
    /// `IssueInstant`, assertion `NotBefore`).
    #[schemars(range(min = *limits::CLOCK_SKEW_SECS.start(), max = *limits::CLOCK_SKEW_SECS.end()))]
    pub clock_skew_secs: u64,
    /// Seconds an assertion may be presented to the service provider
    /// (`NotOnOrAfter` of the conditions and of the subject confirmation).
    #[schemars(range(
        min = *limits::ASSERTION_LIFETIME_SECS.start(),
        max = *limits::ASSERTION_LIFETIME_SECS.end()
    ))]
    pub assertion_lifetime_secs: u64,
    /// Oldest `IssueInstant` accepted on an AuthnRequest; its ID is remembered this long
    /// to refuse replays.
    #[schemars(range(
        min = *limits::REQUEST_MAX_AGE_SECS.start(),
        max = *limits::REQUEST_MAX_AGE_SECS.end()
    ))]
    pub request_max_age_secs: u64,
    /// Shortest time between two fetches of a service provider's metadata URL, whatever
    /// its `cacheDuration` says (and the retry delay after a failed fetch).
    #[schemars(range(
        min = *limits::METADATA_MIN_REFRESH_SECS.start(),
        max = *limits::METADATA_MIN_REFRESH_SECS.end()
    ))]
    pub metadata_min_refresh_secs: u64,
    /// Seconds Single Logout waits for the session's other applications (a service
    /// provider's `LogoutResponse`, an OIDC back-channel answer) before it goes on and
    /// reports a partial logout.
    #[schemars(range(
        min = *limits::LOGOUT_WAIT_SECS.start(),
        max = *limits::LOGOUT_WAIT_SECS.end()
    ))]
    pub logout_wait_secs: u64,
}

impl Default for SamlConfig {
    fn default() -> Self {
        Self {
            clock_skew_secs: 120,
            assertion_lifetime_secs: 300,
            request_max_age_secs: 300,
            metadata_min_refresh_secs: 60,
            logout_wait_secs: 10,
        }
    }
}

/// What the IdP signs in its answers to a service provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SamlSigning {
    /// The Assertion only.
    #[default]
    Assertion,
    /// The Response only.
    Response,
    /// Both the Assertion and the Response around it.
    Both,
}

/// The NameID the service provider receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NameIdFormat {
    /// A pairwise pseudonym: stable for one user at one service provider, different at
    /// every other, so providers cannot correlate users.
    #[default]
    Persistent,
    /// A new random value for every assertion.
    Transient,
    /// The user's e-mail address from the directory.
    EmailAddress,
    /// The user's qualified login (`directory:login`).
    Unspecified,
}

impl NameIdFormat {
    /// The SAML URN of the format.
    pub fn urn(self) -> &'static str {
        match self {
            Self::Persistent => "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            Self::Transient => "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
            Self::EmailAddress => "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            Self::Unspecified => "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        }
    }

    /// The format with this URN.
    pub fn from_urn(urn: &str) -> Option<Self> {
        [
            Self::Persistent,
            Self::Transient,
            Self::EmailAddress,
            Self::Unspecified,
        ]
        .into_iter()
        .find(|f| f.urn() == urn)
    }
}

/// One attribute released to a service provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlAttribute {
    /// The attribute's `Name`, e.g. `urn:oid:0.9.2342.19200300.100.1.3` or `mail`.
    pub name: String,
    /// Where the values come from: `subject`, `login`, `display_name`, `email`,
    /// `given_name`, `family_name`, `tenant`, `roles` or `groups`.
    pub source: String,
    /// Optional `FriendlyName`.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// `NameFormat`; defaults to `urn:oasis:names:tc:SAML:2.0:attrname-format:uri`.
    #[serde(default)]
    pub name_format: Option<String>,
}

/// One service provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlSpConfig {
    /// Name shown in logs and admin lists.
    #[serde(default)]
    pub name: String,
    /// The provider's `entityID`. Required with `metadata_url`: a fetched document naming
    /// another entity is refused, so one URL can never take over another provider.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// The service provider's SAML metadata (an `EntityDescriptor`) in a file, read at
    /// start. Its `entityID`, assertion consumer and logout endpoints and signing
    /// certificates are the only ones trusted. Set this or `metadata_url`.
    #[serde(default)]
    #[schemars(extend("format" = "path"))]
    pub metadata_file: Option<PathBuf>,
    /// The metadata fetched from this URL at start and again every
    /// `metadata_refresh_secs` (sooner when its `cacheDuration` says so); a fetched
    /// document that fails a check is refused and the last good one kept until its
    /// `validUntil`. `https://`, or `http://` when `metadata_signing_cert` is set.
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// A PEM certificate (e.g. the federation's) that must have signed the metadata; when
    /// set, unsigned or wrongly signed metadata is refused.
    #[serde(default)]
    #[schemars(extend("format" = "path"))]
    pub metadata_signing_cert: Option<PathBuf>,
    /// Seconds between fetches of `metadata_url`.
    #[serde(default = "default_refresh")]
    #[schemars(range(
        min = *limits::METADATA_REFRESH_SECS.start(),
        max = *limits::METADATA_REFRESH_SECS.end()
    ))]
    pub metadata_refresh_secs: u64,
    /// What the IdP signs.
    #[serde(default)]
    pub sign: SamlSigning,
    /// The NameID format sent unless the request asks for another allowed one.
    #[serde(default)]
    pub name_id_format: NameIdFormat,
    /// Attributes released, in this order.
    #[serde(default)]
    pub attributes: Vec<SamlAttribute>,
    /// Refuse AuthnRequests without a valid signature (also implied by the metadata's
    /// `AuthnRequestsSigned="true"`).
    #[serde(default = "yes")]
    pub require_signed_requests: bool,
    /// Allow IdP-initiated sign-in (an unsolicited Response) to this provider.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// Tenant whose users may sign in to this provider; unset allows every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_refresh() -> u64 {
    3600
}

impl SamlSpConfig {
    /// A provider with its metadata in `metadata_file` and every other setting at its
    /// default.
    pub fn new(metadata_file: PathBuf) -> Self {
        Self {
            name: String::new(),
            entity_id: None,
            metadata_file: Some(metadata_file),
            metadata_url: None,
            metadata_signing_cert: None,
            metadata_refresh_secs: default_refresh(),
            sign: SamlSigning::Assertion,
            name_id_format: NameIdFormat::Persistent,
            attributes: Vec::new(),
            require_signed_requests: true,
            allow_idp_initiated: false,
            tenant: None,
        }
    }

    /// Checks one `[[saml_sp]]` entry; `index` is its position, for the key path.
    pub fn validate(&self, index: usize, out: &mut Vec<Problem>) {
        let key = |field: &str| format!("saml_sp[{index}].{field}");
        match (&self.metadata_file, &self.metadata_url) {
            (Some(_), Some(_)) => out.push(Problem::default_origin(
                key("metadata_url"),
                "Set metadata_file or metadata_url, not both",
            )),
            (None, None) => out.push(Problem::default_origin(
                key("metadata_file"),
                "The service provider's metadata is required (metadata_file or metadata_url)",
            )),
            (Some(f), None) if f.as_os_str().is_empty() => out.push(Problem::default_origin(
                key("metadata_file"),
                "The metadata file path is empty",
            )),
            (_, Some(u)) => {
                let host = |rest: &str| {
                    let h = rest.split(['/', '?', '#']).next().unwrap_or_default();
                    !h.is_empty() && !h.contains(char::is_whitespace)
                };
                let scheme = if u.strip_prefix("https://").is_some_and(host) {
                    Some("https")
                } else if u.strip_prefix("http://").is_some_and(host) {
                    Some("http")
                } else {
                    None
                };
                match scheme {
                    Some("https") => {}
                    Some("http") if self.metadata_signing_cert.is_some() => {}
                    Some("http") => out.push(Problem::default_origin(
                        key("metadata_url"),
                        "A plain http:// metadata URL needs metadata_signing_cert (the \
                         signature is then what makes it trustworthy)",
                    )),
                    _ => out.push(Problem::default_origin(
                        key("metadata_url"),
                        format!("{u:?} is not an https:// URL"),
                    )),
                }
            }
            _ => {}
        }
        if self.metadata_url.is_some() && self.entity_id.as_deref().is_none_or(str::is_empty) {
            out.push(Problem::default_origin(
                key("entity_id"),
                "Required with metadata_url: the entityID the fetched metadata must name",
            ));
        }
        check_range(
            out,
            &key("metadata_refresh_secs"),
            self.metadata_refresh_secs,
            &limits::METADATA_REFRESH_SECS,
        );
        if self.attributes.len() > limits::ATTRIBUTES {
            out.push(Problem::default_origin(
                key("attributes"),
                format!("At most {} attributes", limits::ATTRIBUTES),
            ));
        }
        for (i, a) in self.attributes.iter().enumerate() {
            if a.name.trim().is_empty() || a.name.len() > limits::ENTITY_ID_BYTES {
                out.push(Problem::default_origin(
                    key(&format!("attributes[{i}].name")),
                    "Must be 1 to 1024 bytes",
                ));
            }
            if !ATTRIBUTE_SOURCES.contains(&a.source.as_str()) {
                out.push(Problem::default_origin(
                    key(&format!("attributes[{i}].source")),
                    format!(
                        "Unknown source {:?} (expected one of {})",
                        a.source,
                        ATTRIBUTE_SOURCES.join(", ")
                    ),
                ));
            }
            if self.attributes[..i].iter().any(|b| b.name == a.name) {
                out.push(Problem::default_origin(
                    key(&format!("attributes[{i}].name")),
                    format!("Attribute {:?} is released twice", a.name),
                ));
            }
        }
    }
}

impl SamlConfig {
    pub(crate) fn validate(&self, out: &mut Vec<Problem>) {
        check_range(
            out,
            "saml.clock_skew_secs",
            self.clock_skew_secs,
            &limits::CLOCK_SKEW_SECS,
        );
        check_range(
            out,
            "saml.assertion_lifetime_secs",
            self.assertion_lifetime_secs,
            &limits::ASSERTION_LIFETIME_SECS,
        );
        check_range(
            out,
            "saml.metadata_min_refresh_secs",
            self.metadata_min_refresh_secs,
            &limits::METADATA_MIN_REFRESH_SECS,
        );
        check_range(
            out,
            "saml.logout_wait_secs",
            self.logout_wait_secs,
            &limits::LOGOUT_WAIT_SECS,
        );
        check_range(
            out,
            "saml.request_max_age_secs",
            self.request_max_age_secs,
            &limits::REQUEST_MAX_AGE_SECS,
        );
    }
}
