//! `[oidc]` (token lifetimes, key overlap) and `[[oidc_client]]` (relying parties).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::validate::check_range;

pub(crate) mod limits {
    use std::ops::RangeInclusive;

    /// OIDC Core advises codes live at most ten minutes; we allow at most one.
    pub const CODE_LIFETIME_SECS: RangeInclusive<u64> = 5..=60;
    pub const ACCESS_TOKEN_LIFETIME_SECS: RangeInclusive<u64> = 30..=86_400;
    pub const ID_TOKEN_LIFETIME_SECS: RangeInclusive<u64> = 30..=86_400;
    pub const REFRESH_TOKEN_LIFETIME_SECS: RangeInclusive<u64> = 60..=30 * 86_400;
    pub const KEY_OVERLAP_SECS: RangeInclusive<u64> = 60..=30 * 86_400;
    pub const BACKCHANNEL_TIMEOUT_SECS: RangeInclusive<u64> = 1..=60;
    pub const CLIENT_ID_CHARS: usize = 64;
    pub const URIS: usize = 32;
    pub const URI_BYTES: usize = 2048;
}

/// Scopes a client may be allowed.
pub const SCOPES: [&str; 6] = [
    "openid",
    "profile",
    "email",
    "roles",
    "offline_access",
    "api",
];
/// Grant types a client may be allowed.
pub const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// The OpenID Connect provider: lifetimes that apply to every client unless the client
/// sets its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// Seconds an authorization code may wait to be exchanged. Codes are single-use.
    #[schemars(range(min = *limits::CODE_LIFETIME_SECS.start(), max = *limits::CODE_LIFETIME_SECS.end()))]
    pub code_lifetime_secs: u64,
    /// Seconds an access token (a signed JWT) is valid.
    #[schemars(range(
        min = *limits::ACCESS_TOKEN_LIFETIME_SECS.start(),
        max = *limits::ACCESS_TOKEN_LIFETIME_SECS.end()
    ))]
    pub access_token_lifetime_secs: u64,
    /// Seconds an ID token is valid.
    #[schemars(range(
        min = *limits::ID_TOKEN_LIFETIME_SECS.start(),
        max = *limits::ID_TOKEN_LIFETIME_SECS.end()
    ))]
    pub id_token_lifetime_secs: u64,
    /// Seconds a refresh token stays usable after it is issued. Each use returns a new
    /// one; using a replaced token again revokes the whole chain. A refresh token also
    /// ends with the single sign-on session it came from, unless `offline_access` was
    /// granted.
    #[schemars(range(
        min = *limits::REFRESH_TOKEN_LIFETIME_SECS.start(),
        max = *limits::REFRESH_TOKEN_LIFETIME_SECS.end()
    ))]
    pub refresh_token_lifetime_secs: u64,
    /// Seconds a signing key stays in the published key set after `kopa keys rotate`
    /// replaced it, so that tokens it signed still verify. Must be at least the longest
    /// access or ID token lifetime.
    #[schemars(range(min = *limits::KEY_OVERLAP_SECS.start(), max = *limits::KEY_OVERLAP_SECS.end()))]
    pub key_overlap_secs: u64,
    /// Seconds a relying party's back-channel logout endpoint gets to answer.
    #[schemars(range(
        min = *limits::BACKCHANNEL_TIMEOUT_SECS.start(),
        max = *limits::BACKCHANNEL_TIMEOUT_SECS.end()
    ))]
    pub backchannel_timeout_secs: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            code_lifetime_secs: 60,
            access_token_lifetime_secs: 300,
            id_token_lifetime_secs: 300,
            refresh_token_lifetime_secs: 8 * 3600,
            key_overlap_secs: 86_400,
            backchannel_timeout_secs: 5,
        }
    }
}

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the client id and secret (confidential clients).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` form fields (confidential clients).
    ClientSecretPost,
    /// No secret: a public client (a browser or mobile app). PKCE is then required.
    None,
}

/// The JWS algorithm a client's tokens are signed with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256.
    #[default]
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit key).
    RS256,
}

impl SigningAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }
}

/// One relying party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcClientConfig {
    /// The `client_id`: letters, digits, `.`, `_`, `-`; at most 64 characters.
    pub id: String,
    /// Name shown to users on the consent page.
    #[serde(default)]
    pub name: String,
    /// How the client authenticates at the token endpoint.
    #[serde(default)]
    pub auth_method: ClientAuthMethod,
    /// File holding the client secret (confidential clients; at least 32 characters).
    /// Only a hash of it is kept in memory.
    #[schemars(extend("format" = "path"))]
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Redirect URIs, matched exactly. `https://`, or `http://` on a loopback address.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where the client may ask to be sent after logout, matched exactly.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Where a logout token is POSTed when a session this client has tokens from ends.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Grant types allowed: `authorization_code`, `refresh_token`, `client_credentials`.
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
    /// Scopes the client may ask for: `openid`, `profile`, `email`, `roles`,
    /// `offline_access`, `api`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// A client run by the platform itself: users are not asked to consent.
    #[serde(default)]
    pub first_party: bool,
    /// Algorithm of this client's ID and access tokens.
    #[serde(default)]
    pub signing_alg: SigningAlg,
    /// Tenant whose users may sign in to this client; unset allows every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Overrides `oidc.access_token_lifetime_secs` for this client.
    #[serde(default)]
    pub access_token_lifetime_secs: Option<u64>,
    /// Overrides `oidc.id_token_lifetime_secs` for this client.
    #[serde(default)]
    pub id_token_lifetime_secs: Option<u64>,
    /// Overrides `oidc.refresh_token_lifetime_secs` for this client.
    #[serde(default)]
    pub refresh_token_lifetime_secs: Option<u64>,
}

impl OidcClientConfig {
    /// A confidential client (`client_secret_basic`) with the default grants and scopes
    /// and nothing else set; callers fill in the rest.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: String::new(),
            auth_method: ClientAuthMethod::ClientSecretBasic,
            secret_file: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
            grant_types: default_grant_types(),
            scopes: default_scopes(),
            first_party: false,
            signing_alg: SigningAlg::ES256,
            tenant: None,
            access_token_lifetime_secs: None,
            id_token_lifetime_secs: None,
            refresh_token_lifetime_secs: None,
        }
    }
}

fn default_grant_types() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "roles"]
        .map(String::from)
        .to_vec()
}

impl OidcConfig {
    pub(crate) fn validate(&self, out: &mut Vec<Problem>) {
        check_range(
            out,
            "oidc.code_lifetime_secs",
            self.code_lifetime_secs,
            &limits::CODE_LIFETIME_SECS,
        );
        check_range(
            out,
            "oidc.access_token_lifetime_secs",
            self.access_token_lifetime_secs,
            &limits::ACCESS_TOKEN_LIFETIME_SECS,
        );
        check_range(
            out,
            "oidc.id_token_lifetime_secs",
            self.id_token_lifetime_secs,
            &limits::ID_TOKEN_LIFETIME_SECS,
        );
        check_range(
            out,
            "oidc.refresh_token_lifetime_secs",
            self.refresh_token_lifetime_secs,
            &limits::REFRESH_TOKEN_LIFETIME_SECS,
        );
        check_range(
            out,
            "oidc.key_overlap_secs",
            self.key_overlap_secs,
            &limits::KEY_OVERLAP_SECS,
        );
        check_range(
            out,
            "oidc.backchannel_timeout_secs",
            self.backchannel_timeout_secs,
            &limits::BACKCHANNEL_TIMEOUT_SECS,
        );
        if self.key_overlap_secs
            < self
                .access_token_lifetime_secs
                .max(self.id_token_lifetime_secs)
        {
            out.push(Problem::default_origin(
                "oidc.key_overlap_secs",
                "Must be at least the access and ID token lifetimes, or tokens signed by a \
                 retired key would stop verifying before they expire",
            ));
        }
    }
}

impl OidcClientConfig {
    /// Checks one `[[oidc_client]]` entry; `index` is its position, for the key path.
    pub fn validate(&self, index: usize, out: &mut Vec<Problem>) {
        let key = |field: &str| format!("oidc_client[{index}].{field}");
        if let Err(message) = check_client_id(&self.id) {
            out.push(Problem::default_origin(key("id"), message));
        }
        let public = self.auth_method == ClientAuthMethod::None;
        match (&self.secret_file, public) {
            (Some(_), true) => out.push(Problem::default_origin(
                key("secret_file"),
                "A public client (auth_method = \"none\") has no secret",
            )),
            (None, false) => out.push(Problem::default_origin(
                key("secret_file"),
                "A confidential client needs a secret file",
            )),
            _ => {}
        }
        for (field, uris) in [
            ("redirect_uris", &self.redirect_uris),
            ("post_logout_redirect_uris", &self.post_logout_redirect_uris),
        ] {
            if uris.len() > limits::URIS {
                out.push(Problem::default_origin(
                    key(field),
                    format!("At most {} URIs", limits::URIS),
                ));
            }
            for (i, uri) in uris.iter().enumerate() {
                if let Err(message) = check_client_uri(uri) {
                    out.push(Problem::default_origin(
                        key(&format!("{field}[{i}]")),
                        message,
                    ));
                }
            }
        }
        if let Some(uri) = &self.backchannel_logout_uri
            && let Err(message) = check_client_uri(uri)
        {
            out.push(Problem::default_origin(
                key("backchannel_logout_uri"),
                message,
            ));
        }
        for (i, grant) in self.grant_types.iter().enumerate() {
            if !GRANT_TYPES.contains(&grant.as_str()) {
                out.push(Problem::default_origin(
                    key(&format!("grant_types[{i}]")),
                    format!(
                        "Unknown grant type {grant:?} (expected one of {})",
                        GRANT_TYPES.join(", ")
                    ),
                ));
            }
        }
        let grants = |g: &str| self.grant_types.iter().any(|x| x == g);
        if grants("authorization_code") && self.redirect_uris.is_empty() {
            out.push(Problem::default_origin(
                key("redirect_uris"),
                "The authorization_code grant needs at least one redirect URI",
            ));
        }
        if grants("client_credentials") && public {
            out.push(Problem::default_origin(
                key("grant_types"),
                "A public client cannot use client_credentials",
            ));
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            if !SCOPES.contains(&scope.as_str()) {
                out.push(Problem::default_origin(
                    key(&format!("scopes[{i}]")),
                    format!(
                        "Unknown scope {scope:?} (expected one of {})",
                        SCOPES.join(", ")
                    ),
                ));
            }
        }
        for (field, value, range) in [
            (
                "access_token_lifetime_secs",
                self.access_token_lifetime_secs,
                &limits::ACCESS_TOKEN_LIFETIME_SECS,
            ),
            (
                "id_token_lifetime_secs",
                self.id_token_lifetime_secs,
                &limits::ID_TOKEN_LIFETIME_SECS,
            ),
            (
                "refresh_token_lifetime_secs",
                self.refresh_token_lifetime_secs,
                &limits::REFRESH_TOKEN_LIFETIME_SECS,
            ),
        ] {
            if let Some(value) = value {
                check_range(out, &key(field), value, range);
            }
        }
    }
}

/// Checks a `client_id`.
pub fn check_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > limits::CLIENT_ID_CHARS {
        return Err(format!(
            "Must be 1 to {} characters long",
            limits::CLIENT_ID_CHARS
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("Only letters, digits, '.', '_' and '-' are allowed".to_owned());
    }
    Ok(())
}

/// Checks a redirect, post-logout or back-channel URI: absolute, `https://` (or `http://`
/// on a loopback host, for native apps and tests), without a fragment.
pub fn check_client_uri(uri: &str) -> Result<(), String> {
    if uri.len() > limits::URI_BYTES {
        return Err(format!("Must be at most {} bytes", limits::URI_BYTES));
    }
    if uri.chars().any(|c| c.is_control() || c == ' ') {
        return Err("Must not contain spaces or control characters".to_owned());
    }
    if uri.contains('#') {
        return Err("Must not contain a fragment (#)".to_owned());
    }
    let rest = if let Some(rest) = uri.strip_prefix("https://") {
        rest
    } else if let Some(rest) = uri.strip_prefix("http://") {
        let host = authority_host(rest);
        if !(host == "localhost" || host == "127.0.0.1" || host == "[::1]") {
            return Err("Must use https:// (http:// only on a loopback address)".to_owned());
        }
        rest
    } else {
        return Err("Must start with https://".to_owned());
    };
    if authority_host(rest).is_empty() {
        return Err("Must name a host".to_owned());
    }
    Ok(())
}

fn authority_host(rest: &str) -> &str {
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return "";
    }
    if authority.starts_with('[') {
        return authority.split(']').next().map_or("", |h| {
            &authority[..h.len() + usize::from(authority.len() > h.len())]
        });
    }
    authority.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OidcClientConfig {
        OidcClientConfig {
            secret_file: Some("/run/secret".into()),
            redirect_uris: vec!["https://rp.example.lv/cb".into()],
            ..OidcClientConfig::new("rp")
        }
    }

    fn problems(c: &OidcClientConfig) -> Vec<String> {
        let mut out = Vec::new();
        c.validate(0, &mut out);
        out.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn a_plain_confidential_client_is_valid() {
        assert!(problems(&client()).is_empty());
        let mut out = Vec::new();
        OidcConfig::default().validate(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn uris_must_be_https_or_loopback_http() {
        for ok in [
            "https://rp.example.lv/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9000/cb",
        ] {
            assert_eq!(check_client_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://rp.example.lv/cb",
            "https://rp.example.lv/cb#frag",
            "javascript:alert(1)",
            "https:///cb",
            "http://127.0.0.1@evil.example/cb",
            "https://rp.example.lv/c b",
            "/relative",
        ] {
            assert!(check_client_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inconsistent_clients_are_reported_field_by_field() {
        let mut c = client();
        c.id = "bad id".into();
        c.auth_method = ClientAuthMethod::None;
        c.grant_types.push("client_credentials".into());
        c.grant_types.push("password".into());
        c.scopes.push("admin".into());
        c.redirect_uris = vec!["http://example.lv/cb".into()];
        c.access_token_lifetime_secs = Some(1);
        assert_eq!(
            problems(&c),
            [
                "oidc_client[0].id",
                "oidc_client[0].secret_file",
                "oidc_client[0].redirect_uris[0]",
                "oidc_client[0].grant_types[3]",
                "oidc_client[0].grant_types",
                "oidc_client[0].scopes[4]",
                "oidc_client[0].access_token_lifetime_secs",
            ]
        );
    }

    #[test]
    fn key_overlap_must_cover_token_lifetimes() {
        let config = OidcConfig {
            key_overlap_secs: 120,
            access_token_lifetime_secs: 600,
            ..OidcConfig::default()
        };
        let mut out = Vec::new();
        config.validate(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, "oidc.key_overlap_secs");
    }
}
