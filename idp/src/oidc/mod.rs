//! The OpenID Connect provider (OIDC Core 1.0, RFC 6749, PKCE RFC 7636, introspection
//! RFC 7662, revocation RFC 7009, RP-initiated and back-channel logout, JWT access tokens
//! RFC 9068). openidconnect supplies the ID token claims and JWS; endpoints, state and
//! rules are here. No HTTP types: [`http`] maps requests to these calls.

pub mod backchannel;
pub mod clients;
pub(crate) mod grants;
pub mod http;
pub mod jose;
mod params;
mod tokens;

pub use clients::{Client, Clients};
pub use params::Params;

use crate::login::{EndedNotice, EndedSession};
use crate::session::{Session, new_token};
use grants::{
    CODES, CONSENTS, CodeRecord, ENDED, FAMILIES, Family, REVOKED, RefreshRecord, SID_CLIENTS,
    SID_FAMILIES,
};
use jose::{PublicKey, SigningKey};
use kopa_config::{OidcConfig, SigningAlg};
use kopa_core::Clock;
use kopa_store::Store;
use kopa_store::audit::{AuditEvent, AuditLog, Category, Outcome};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

/// Longest `state`, `nonce` or `login_hint` accepted, in bytes.
const MAX_PARAM_BYTES: usize = 2048;
/// Authorization requests waiting for a sign-in or a consent: how long and how many.
const PENDING_TTL_MS: u64 = 15 * 60 * 1000;
const MAX_PENDING: usize = 10_000;

/// An OAuth error as RFC 6749 §5.2 / OIDC Core §3.1.2.6 name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// HTTP status for direct (token endpoint) answers.
    pub status: u16,
    /// The `error` code.
    pub error: &'static str,
    /// The `error_description`.
    pub description: String,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
    fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", d)
    }
    fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", d)
    }
    fn invalid_client() -> Self {
        Self::new(401, "invalid_client", "Client authentication failed")
    }
    fn server_error() -> Self {
        Self::new(500, "server_error", "The request could not be completed")
    }
}

/// Signing keys: the current one per algorithm and every key still published.
#[derive(Debug)]
pub struct Keyring {
    es256: Arc<SigningKey>,
    rs256: Arc<SigningKey>,
    published: Vec<PublicKey>,
}

impl Keyring {
    /// From the current keys and those retired but still inside their overlap.
    pub fn new(es256: SigningKey, rs256: SigningKey, retired: Vec<PublicKey>) -> Self {
        let mut published = vec![es256.public().clone(), rs256.public().clone()];
        published.extend(retired);
        Self {
            es256: Arc::new(es256),
            rs256: Arc::new(rs256),
            published,
        }
    }

    fn signer(&self, alg: SigningAlg) -> &Arc<SigningKey> {
        match alg {
            SigningAlg::ES256 => &self.es256,
            SigningAlg::RS256 => &self.rs256,
        }
    }
}

/// Who is calling the token, introspection or revocation endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    /// From HTTP Basic (already percent-decoded).
    pub basic: Option<(String, String)>,
    /// From the form.
    pub form_id: Option<String>,
    /// From the form.
    pub form_secret: Option<String>,
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Source IP.
    pub ip: IpAddr,
    /// User agent.
    pub user_agent: String,
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    client: Arc<Client>,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: Vec<String>,
    code_challenge: Option<String>,
    prompt_none: bool,
    prompt_consent: bool,
    /// A sign-in no older than this (ms) is required (`prompt=login`, `max_age`).
    fresh_after_ms: Option<u64>,
    max_age_secs: Option<u64>,
    /// `login_hint`, passed to the login form.
    pub login_hint: Option<String>,
    created_ms: u64,
}

/// What the authorization endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorize {
    /// The request cannot be trusted to redirect (unknown client, unregistered
    /// `redirect_uri`): an error page, never a redirect.
    ErrorPage {
        /// HTTP status.
        status: u16,
        /// What went wrong, for the user.
        message: String,
    },
    /// Redirect to this URL (the client, with a code or an error).
    Redirect(String),
    /// The user must sign in, then come back to `/oidc/authorize/resume?request=…`.
    Login {
        /// The pending request's id.
        request: String,
        /// Show the form even when a session exists.
        force: bool,
        /// Pre-filled username.
        login_hint: Option<String>,
    },
    /// The user must consent first.
    Consent {
        /// The pending request's id.
        request: String,
        /// The client's name.
        client_name: String,
        /// Scopes asked for.
        scopes: Vec<String>,
    },
}

/// The OpenID Connect provider.
pub struct Provider {
    issuer: String,
    config: OidcConfig,
    clients: Clients,
    keys: RwLock<Arc<Keyring>>,
    store: Store,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    pending: Mutex<HashMap<String, AuthRequest>>,
    backchannel: backchannel::Sender,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

use crate::session::hash_token as hash;

fn append_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", out.finish())
}

fn scope_string(scope: &[String]) -> String {
    scope.join(" ")
}

impl Provider {
    /// A provider at `issuer` (the appliance's external base URL).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        issuer: String,
        config: OidcConfig,
        clients: Clients,
        keys: Keyring,
        store: Store,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let backchannel = backchannel::Sender::new(config.backchannel_timeout_secs);
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            config,
            clients,
            keys: RwLock::new(Arc::new(keys)),
            store,
            audit,
            clock,
            pending: Mutex::default(),
            backchannel,
        }
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client registry.
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    fn keyring(&self) -> Arc<Keyring> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the signing keys (after `kopa keys rotate`).
    pub fn set_keys(&self, keys: Keyring) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// The JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        jose::jwks(self.keyring().published.iter())
    }

    /// The discovery document (OIDC Discovery 1.0 §3).
    pub fn discovery(&self) -> serde_json::Value {
        let i = &self.issuer;
        serde_json::json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/oidc/authorize"),
            "token_endpoint": format!("{i}/oidc/token"),
            "userinfo_endpoint": format!("{i}/oidc/userinfo"),
            "jwks_uri": format!("{i}/oidc/jwks"),
            "introspection_endpoint": format!("{i}/oidc/introspect"),
            "revocation_endpoint": format!("{i}/oidc/revoke"),
            "end_session_endpoint": format!("{i}/oidc/logout"),
            "scopes_supported": kopa_config::SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": kopa_config::GRANT_TYPES,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "userinfo_signing_alg_values_supported": ["none"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr",
                "sid", "name", "given_name", "family_name", "preferred_username", "email",
                "tenant", "roles", "groups"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "frontchannel_logout_supported": false,
            "ui_locales_supported": ["lv", "en"],
        })
    }

    pub(crate) async fn record(&self, e: AuditEvent) {
        if let Err(err) = self.audit.append(e).await {
            tracing::error!(error = %err, "audit append failed");
        }
    }

    fn event(&self, action: &str, outcome: Outcome, client: &str, origin: &Origin) -> AuditEvent {
        let mut e = AuditEvent::new(Category::Authentication, action, outcome);
        e.client = Some(client.to_owned());
        e.source_ip = Some(origin.ip);
        e.user_agent = Some(origin.user_agent.chars().take(512).collect());
        e.method = Some("oidc".into());
        e
    }

    // ---- authorization endpoint ----

    /// Validates an authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1).
    pub async fn authorize(
        &self,
        params: &Params,
        session: Option<Session>,
        origin: &Origin,
    ) -> Authorize {
        let request = match self.parse_request(params) {
            Ok(r) => r,
            Err(answer) => return *answer,
        };
        self.continue_request(request, session, origin).await
    }

    fn parse_request(&self, p: &Params) -> Result<AuthRequest, Box<Authorize>> {
        let page = |status, message: &str| {
            Box::new(Authorize::ErrorPage {
                status,
                message: message.to_owned(),
            })
        };
        // Nothing may be redirected until the client and its redirect URI are known good.
        let client_id = p
            .single("client_id")
            .map_err(|_| page(400, "The request names its client more than once."))?
            .ok_or_else(|| page(400, "The request does not name a client (client_id)."))?;
        let client = self
            .clients
            .get(client_id)
            .ok_or_else(|| page(400, "The application (client_id) is not registered."))?;
        let redirect_uri = p
            .single("redirect_uri")
            .map_err(|_| page(400, "The request has more than one redirect_uri."))?
            .ok_or_else(|| page(400, "The request has no redirect_uri."))?;
        if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(page(
                400,
                "The redirect_uri is not registered for this application.",
            ));
        }
        let state = p.single("state").ok().flatten().map(str::to_owned);
        let fail = |error: &'static str, description: &str| {
            Box::new(self.to_client(
                redirect_uri,
                state.as_deref(),
                vec![("error", error), ("error_description", description)],
            ))
        };
        if let Some(name) = p.duplicated() {
            return Err(fail(
                "invalid_request",
                &format!("Parameter {name} is repeated"),
            ));
        }
        for name in ["request", "request_uri"] {
            if p.get(name).is_some() {
                return Err(fail(
                    if name == "request" {
                        "request_not_supported"
                    } else {
                        "request_uri_not_supported"
                    },
                    "Request objects are not supported",
                ));
            }
        }
        match p.get("response_type") {
            Some("code") => {}
            None => return Err(fail("invalid_request", "response_type is missing")),
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "Only response_type=code is supported",
                ));
            }
        }
        if p.get("response_mode").is_some_and(|m| m != "query") {
            return Err(fail(
                "invalid_request",
                "Only response_mode=query is supported",
            ));
        }
        if !client.allows_grant("authorization_code") {
            return Err(fail(
                "unauthorized_client",
                "This client may not use the authorization code flow",
            ));
        }
        for name in ["state", "nonce", "login_hint"] {
            if p.get(name).is_some_and(|v| v.len() > MAX_PARAM_BYTES) {
                return Err(fail("invalid_request", &format!("{name} is too long")));
            }
        }
        let scope: Vec<String> = p
            .get("scope")
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = scope.iter().find(|s| !client.scopes.contains(s)) {
            return Err(fail(
                "invalid_scope",
                &format!("Scope {bad:?} is not allowed for this client"),
            ));
        }
        let challenge = p.get("code_challenge");
        match (challenge, p.get("code_challenge_method")) {
            (Some(_), Some("S256")) => {}
            (Some(_), None | Some("plain")) | (None, Some("plain")) => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is not accepted)",
                ));
            }
            (_, Some(m)) if m != "S256" => {
                return Err(fail("invalid_request", "Unsupported code_challenge_method"));
            }
            (None, Some(_)) => {
                return Err(fail("invalid_request", "code_challenge is missing"));
            }
            (None, None) if client.is_public() => {
                return Err(fail(
                    "invalid_request",
                    "PKCE (code_challenge with S256) is required for this client",
                ));
            }
            _ => {}
        }
        if let Some(c) = challenge
            && (c.len() != 43
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(fail(
                "invalid_request",
                "code_challenge must be a base64url SHA-256 (43 characters)",
            ));
        }
        let prompts: Vec<&str> = p
            .get("prompt")
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = prompts
            .iter()
            .find(|v| !matches!(**v, "none" | "login" | "consent" | "select_account"))
        {
            return Err(fail(
                "invalid_request",
                &format!("Unknown prompt value {bad:?}"),
            ));
        }
        let prompt_none = prompts.contains(&"none");
        if prompt_none && prompts.len() > 1 {
            return Err(fail(
                "invalid_request",
                "prompt=none cannot be combined with other values",
            ));
        }
        let max_age_secs = match p.get("max_age") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| fail("invalid_request", "max_age must be a number of seconds"))?,
            ),
        };
        let now = self.clock.now_millis();
        let fresh_after_ms =
            (prompts.contains(&"login") || prompts.contains(&"select_account")).then_some(now);
        Ok(AuthRequest {
            redirect_uri: redirect_uri.to_owned(),
            state,
            nonce: p.get("nonce").map(str::to_owned),
            scope,
            code_challenge: challenge.map(str::to_owned),
            prompt_none,
            prompt_consent: prompts.contains(&"consent"),
            fresh_after_ms,
            max_age_secs,
            login_hint: p.get("login_hint").map(str::to_owned),
            created_ms: now,
            client,
        })
    }

    fn error_redirect(&self, r: &AuthRequest, error: &str, description: &str) -> Authorize {
        self.to_client(
            &r.redirect_uri,
            r.state.as_deref(),
            vec![("error", error), ("error_description", description)],
        )
    }

    /// The redirect back to the client: `pairs`, then `state` and `iss` (RFC 9207).
    fn to_client<'a>(
        &'a self,
        redirect_uri: &str,
        state: Option<&'a str>,
        mut pairs: Vec<(&'a str, &'a str)>,
    ) -> Authorize {
        if let Some(s) = state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &self.issuer));
        Authorize::Redirect(append_query(redirect_uri, &pairs))
    }

    fn park(&self, r: AuthRequest) -> String {
        let id = new_token();
        let now = self.clock.now_millis();
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, v| now.saturating_sub(v.created_ms) < PENDING_TTL_MS);
        if map.len() >= MAX_PENDING
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, v)| v.created_ms)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), r);
        id
    }

    fn take_pending(&self, id: &str) -> Option<AuthRequest> {
        let now = self.clock.now_millis();
        // Taken out: a request continues once; if it needs another step it is parked anew.
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id)
            .filter(|r| now.saturating_sub(r.created_ms) < PENDING_TTL_MS)
    }

    /// Continues a request parked for sign-in, once the user is back.
    pub async fn resume(
        &self,
        request: &str,
        session: Option<Session>,
        origin: &Origin,
    ) -> Authorize {
        let Some(r) = self.take_pending(request) else {
            return Authorize::ErrorPage {
                status: 400,
                message:
                    "This sign-in request has expired. Please start again from the application."
                        .into(),
            };
        };
        self.continue_request(r, session, origin).await
    }

    /// Records the user's answer on the consent page.
    pub async fn consent(
        &self,
        request: &str,
        session: Option<Session>,
        allow: bool,
        origin: &Origin,
    ) -> Authorize {
        let Some(mut r) = self.take_pending(request) else {
            return Authorize::ErrorPage {
                status: 400,
                message:
                    "This sign-in request has expired. Please start again from the application."
                        .into(),
            };
        };
        let Some(session) = session else {
            return self.continue_request(r, None, origin).await;
        };
        if !allow {
            let mut e = self.event("oidc-consent", Outcome::Failure, &r.client.id, origin);
            e.user_resolved = Some(session.data.subject.clone());
            e.reason = Some("denied".into());
            self.record(e).await;
            return self.error_redirect(&r, "access_denied", "The user declined");
        }
        let key = (session.data.subject.clone(), r.client.id.clone());
        let scopes = r.scope.clone();
        if let Err(e) = self
            .store
            .write(move |txn| txn.insert(&CONSENTS, &key, &scopes).map(|_| ()))
            .await
        {
            tracing::error!(error = %e, "storing consent failed");
            return self.error_redirect(&r, "server_error", "Consent could not be stored");
        }
        let mut e = self.event("oidc-consent", Outcome::Success, &r.client.id, origin);
        e.user_resolved = Some(session.data.subject.clone());
        e.details.insert("scope".into(), scope_string(&r.scope));
        self.record(e).await;
        r.prompt_consent = false;
        self.continue_request(r, Some(session), origin).await
    }

    async fn continue_request(
        &self,
        r: AuthRequest,
        session: Option<Session>,
        origin: &Origin,
    ) -> Authorize {
        let now = self.clock.now_millis();
        let usable = session.filter(|s| {
            r.fresh_after_ms.is_none_or(|t| s.created_ms >= t)
                && r.max_age_secs
                    .is_none_or(|age| now.saturating_sub(s.created_ms) <= age * 1000)
        });
        let Some(session) = usable else {
            if r.prompt_none {
                return self.error_redirect(&r, "login_required", "The user is not signed in");
            }
            let login_hint = r.login_hint.clone();
            let force = r.fresh_after_ms.is_some() || r.max_age_secs.is_some();
            // After the sign-in, a forced request needs a session at least this new.
            let mut parked = r;
            if force {
                parked.fresh_after_ms = Some(now);
                parked.max_age_secs = None;
            }
            return Authorize::Login {
                request: self.park(parked),
                force,
                login_hint,
            };
        };
        if let Some(tenant) = &r.client.tenant
            && session.data.tenant.as_ref().map(|t| t.as_str()) != Some(tenant.as_str())
        {
            let mut e = self.event("oidc-code-issued", Outcome::Failure, &r.client.id, origin);
            e.user_resolved = Some(session.data.subject.clone());
            e.reason = Some("wrong_tenant".into());
            self.record(e).await;
            return self.error_redirect(
                &r,
                "access_denied",
                "This application is not available to your institution",
            );
        }
        if !r.client.first_party {
            let key = (session.data.subject.clone(), r.client.id.clone());
            let consented = self
                .store
                .read(move |txn| txn.get(&CONSENTS, &key))
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            let covered = r.scope.iter().all(|s| consented.contains(s));
            if !covered || r.prompt_consent {
                if r.prompt_none {
                    return self.error_redirect(&r, "consent_required", "Consent is required");
                }
                let (client_name, scopes) = (r.client.name.clone(), r.scope.clone());
                return Authorize::Consent {
                    request: self.park(r),
                    client_name,
                    scopes,
                };
            }
        }
        self.issue_code(r, session, origin).await
    }

    async fn issue_code(&self, r: AuthRequest, session: Session, origin: &Origin) -> Authorize {
        let code = new_token();
        let now = self.clock.now_millis();
        let record = CodeRecord {
            client_id: r.client.id.clone(),
            redirect_uri: r.redirect_uri.clone(),
            scope: r.scope.clone(),
            nonce: r.nonce.clone(),
            code_challenge: r.code_challenge.clone(),
            sid: session.id.clone(),
            data: session.data.clone(),
            auth_time_ms: session.created_ms,
            expires_ms: now + self.config.code_lifetime_secs * 1000,
            used: None,
        };
        let key = hash(&code);
        // Durable before the code leaves: a code the browser carries must exist after a crash.
        let stored = self
            .store
            .write_grouped(Box::new(move |txn| {
                txn.insert(&CODES, &key, &record)?;
                Ok(())
            }))
            .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "storing an authorization code failed");
            return self.error_redirect(&r, "server_error", "The code could not be stored");
        }
        let mut e = self.event("oidc-code-issued", Outcome::Success, &r.client.id, origin);
        e.user_resolved = Some(session.data.subject.clone());
        e.tenant = session.data.tenant.clone();
        e.session_id = Some(session.id.clone());
        self.record(e).await;
        self.to_client(
            &r.redirect_uri,
            r.state.as_deref(),
            vec![("code", code.as_str())],
        )
    }

    // ---- client authentication ----

    /// Authenticates the caller of a back-channel endpoint (RFC 6749 §2.3.1).
    pub fn authenticate_client(
        &self,
        creds: &ClientCredentials,
    ) -> Result<Arc<Client>, OAuthError> {
        use kopa_config::ClientAuthMethod as M;
        let (id, secret, method) = match (&creds.basic, &creds.form_secret) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "Use one client authentication method, not two",
                ));
            }
            (Some((id, secret)), None) => {
                if creds.form_id.as_ref().is_some_and(|f| f != id) {
                    return Err(OAuthError::invalid_request("client_id does not match"));
                }
                (id.as_str(), Some(secret.as_str()), M::ClientSecretBasic)
            }
            (None, Some(secret)) => (
                creds.form_id.as_deref().unwrap_or(""),
                Some(secret.as_str()),
                M::ClientSecretPost,
            ),
            (None, None) => (creds.form_id.as_deref().unwrap_or(""), None, M::None),
        };
        let client = self
            .clients
            .get(id)
            .ok_or_else(OAuthError::invalid_client)?;
        if client.auth_method != method {
            return Err(OAuthError::invalid_client());
        }
        if let Some(secret) = secret
            && !client.secret_matches(secret)
        {
            return Err(OAuthError::invalid_client());
        }
        Ok(client)
    }

    // ---- ended sessions ----

    /// Handles sessions ended by logout or an administrator: refresh tokens of the session
    /// stop working, its access tokens become inactive, and every client with a
    /// back-channel logout URI is told, all at once. Returns whether every one of them
    /// confirmed (a 2xx answer in time).
    pub async fn session_ended(&self, ended: EndedSession) -> bool {
        let now = self.clock.now_millis();
        let sid = ended.id.clone();
        let result = self
            .store
            .write(move |txn| {
                txn.insert(&ENDED, &sid, &now)?;
                for ((_, family), _) in txn.scan_prefix(&SID_FAMILIES, &sid)? {
                    if let Some(f) = txn.get(&FAMILIES, &family)?
                        && !f.offline
                    {
                        grants::revoke_family(txn, &family)?;
                    }
                }
                let clients: Vec<String> = txn
                    .scan_prefix(&SID_CLIENTS, &sid)?
                    .into_iter()
                    .map(|((_, c), _)| c)
                    .collect();
                Ok(clients)
            })
            .await;
        let client_ids = match result {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "recording an ended session failed");
                return false;
            }
        };
        let deliveries = client_ids.into_iter().filter_map(|id| {
            let client = self.clients.get(&id)?;
            let uri = client.backchannel_logout_uri.clone()?;
            Some(self.tell_client(client, uri, &ended))
        });
        futures_util::future::join_all(deliveries)
            .await
            .into_iter()
            .all(|told| told)
    }

    /// Sends `client` its logout token for `ended` and records how that went.
    async fn tell_client(&self, client: Arc<Client>, uri: String, ended: &EndedSession) -> bool {
        let sent = match self.logout_token(&client, ended) {
            Ok(token) => self.backchannel.post_logout_token(&uri, &token).await,
            Err(e) => {
                tracing::error!(error = %e, "signing a logout token failed");
                Err("signing_failed".into())
            }
        };
        let outcome = if sent.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut e = AuditEvent::new(Category::Session, "oidc-backchannel-logout", outcome);
        e.client = Some(client.id.clone());
        e.user_resolved = Some(ended.subject.clone());
        e.session_id = Some(ended.id.clone());
        let told = sent.is_ok();
        if let Err(reason) = sent {
            e.reason = Some(reason);
        }
        self.record(e).await;
        told
    }

    /// Deletes what can no longer matter: expired codes, refresh tokens and their
    /// families, revocations of expired access tokens, and ended-session marks older
    /// than any token that could carry them. Returns how many entries went.
    pub async fn sweep(&self) -> Result<usize, kopa_store::StoreError> {
        let now = self.clock.now_millis();
        // An ended-session mark must outlive every token of that session.
        let keep_ended_ms = 1000
            * self
                .config
                .refresh_token_lifetime_secs
                .max(self.config.access_token_lifetime_secs)
                .max(
                    self.clients
                        .list()
                        .iter()
                        .map(|c| c.refresh_token_secs.max(c.access_token_secs))
                        .max()
                        .unwrap_or(0),
                );
        self.store
            .write(move |txn| {
                let mut gone = 0;
                for (k, c) in txn.iter(&CODES)? {
                    // Spent codes stay while their tokens may live, to catch a replay.
                    let until = c
                        .used
                        .as_ref()
                        .map_or(c.expires_ms, |u| u.access_expires_ms.max(c.expires_ms));
                    if until < now {
                        txn.remove(&CODES, &k)?;
                        gone += 1;
                    }
                }
                for (k, r) in txn.iter(&grants::REFRESH)? {
                    if r.expires_ms < now {
                        txn.remove(&grants::REFRESH, &k)?;
                        gone += 1;
                    }
                }
                for (k, f) in txn.iter(&FAMILIES)? {
                    if f.expires_ms < now {
                        txn.remove(&FAMILIES, &k)?;
                        txn.remove(&SID_FAMILIES, &(f.sid.clone(), k.clone()))?;
                        gone += 1;
                    }
                }
                for (k, exp) in txn.iter(&REVOKED)? {
                    if exp < now {
                        txn.remove(&REVOKED, &k)?;
                        gone += 1;
                    }
                }
                for (sid, at) in txn.iter(&ENDED)? {
                    if at + keep_ended_ms < now {
                        txn.remove(&ENDED, &sid)?;
                        for (key, _) in txn.scan_prefix(&SID_CLIENTS, &sid)? {
                            txn.remove(&SID_CLIENTS, &key)?;
                        }
                        gone += 1;
                    }
                }
                Ok(gone)
            })
            .await
    }

    /// Sweeps every `every` until the appliance stops.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        crate::sweep::every(self, every, |me| async move {
            match me.sweep().await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "expired OIDC grants removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeping OIDC grants failed"),
            }
        })
    }

    /// Listens for ended sessions until the sender side closes; each is handled on its
    /// own (a slow relying party holds up no other logout), at most 64 at once (a bulk
    /// revocation waits its turn), and its report sent back.
    pub fn spawn_listener(
        self: &Arc<Self>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<EndedNotice>,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        let slots = Arc::new(tokio::sync::Semaphore::new(64));
        tokio::spawn(async move {
            while let Some(notice) = rx.recv().await {
                let me = Arc::clone(&me);
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    let _slot = slot;
                    let told = me.session_ended(notice.session).await;
                    // The one waiting may have given up; that is fine.
                    let _ = notice.report.send(told);
                });
            }
        })
    }

    /// Whether the single sign-on session `sid` has not been ended.
    pub async fn session_alive(&self, sid: &str) -> bool {
        !self.sid_ended(sid).await
    }

    /// Records at once that `sid` ended (the listener does the rest later), so that the
    /// very next request of any app already sees it.
    pub async fn mark_ended(&self, sid: &str) {
        let (key, now) = (sid.to_owned(), self.clock.now_millis());
        if let Err(e) = self
            .store
            .write(move |txn| txn.insert(&ENDED, &key, &now).map(|_| ()))
            .await
        {
            tracing::error!(error = %e, "recording an ended session failed");
        }
    }

    /// Verifies a JWS signed by one of the published keys; returns its claims.
    pub fn verify_jws(&self, token: &str) -> Result<serde_json::Value, jose::JoseError> {
        jose::verify(self.keyring().published.iter(), token, None)
    }

    async fn sid_ended(&self, sid: &str) -> bool {
        let key = sid.to_owned();
        self.store
            .read(move |txn| txn.contains(&ENDED, &key))
            .await
            .unwrap_or(true)
    }

    /// Whether an access token (`jti`, from session `sid`) was revoked or its session
    /// ended: one read. A failed read counts as revoked.
    async fn token_dead(&self, jti: &str, sid: Option<&str>) -> bool {
        let (jti, sid) = (jti.to_owned(), sid.map(str::to_owned));
        self.store
            .read(move |txn| {
                Ok(txn.contains(&REVOKED, &jti)?
                    || sid.is_some_and(|sid| txn.contains(&ENDED, &sid).unwrap_or(true)))
            })
            .await
            .unwrap_or(true)
    }
}

// Refresh-token bookkeeping shared by the token endpoint.
fn new_family(client_id: &str, sid: &str, offline: bool, expires_ms: u64) -> (String, Family) {
    (
        new_token(),
        Family {
            client_id: client_id.to_owned(),
            sid: sid.to_owned(),
            revoked: false,
            offline,
            expires_ms,
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn refresh_record(
    family: &str,
    client_id: &str,
    scope: &[String],
    sid: &str,
    data: &crate::session::SessionData,
    auth_time_ms: u64,
    expires_ms: u64,
) -> RefreshRecord {
    RefreshRecord {
        family: family.to_owned(),
        client_id: client_id.to_owned(),
        scope: scope.to_vec(),
        sid: sid.to_owned(),
        data: data.clone(),
        auth_time_ms,
        expires_ms,
        rotated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_appended_encoded() {
        assert_eq!(
            append_query("https://rp.lv/cb", &[("code", "a b"), ("state", "x&y")]),
            "https://rp.lv/cb?code=a+b&state=x%26y"
        );
        assert_eq!(
            append_query("https://rp.lv/cb?k=1", &[("code", "c")]),
            "https://rp.lv/cb?k=1&code=c"
        );
    }
}
