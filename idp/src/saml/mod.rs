//! The SAML 2.0 identity provider: Web Browser SSO with the HTTP-Redirect and HTTP-POST
//! bindings, on the same sign-in, MFA, brute-force rules, SSO session and audit log as
//! the OpenID Connect provider.
//!
//! XML is read with roxmltree (no DTD, so no entity expansion) and signatures are checked
//! by [`dsig`]; the IdP's own messages are written canonically by [`xml`] and signed once
//! with a key parsed at start (see `docs/adr/0003-saml.md`).

mod admin;
pub mod dsig;
pub mod http;
mod logout;
pub mod metadata;
pub mod registry;
pub mod request;
pub mod response;
pub mod xml;

use crate::oidc::Origin;
use crate::session::Session;
pub use dsig::{SigError, Signer};
use kopa_config::{NameIdFormat, SamlConfig, SamlSpConfig};
use kopa_core::Clock;
use kopa_store::audit::{AuditEvent, AuditLog, Category, Outcome};
pub use logout::LogoutPage;
use metadata::{BINDING_POST, IdpEndpoints, SpMetadata};
use request::{AuthnRequest, Incoming};
use response::{Envelope, Released, Statement};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// How long a request parked for sign-in stays usable.
const PENDING_TTL_MS: u64 = 10 * 60 * 1000;
/// Most remembered request IDs; beyond this new requests are refused until old ones age
/// out, so a flood cannot grow memory without bound.
const MAX_SEEN: usize = 200_000;
/// Most sessions whose SAML participants are remembered for Single Logout.
const MAX_TRACKED_SESSIONS: usize = 100_000;
/// Most service providers remembered per session for Single Logout.
const MAX_PROVIDERS_PER_SESSION: usize = 64;
/// Most requests parked for sign-in at once.
const MAX_PENDING: usize = 50_000;

/// A trusted service provider: its configuration and what its metadata says.
#[derive(Debug)]
pub struct ServiceProvider {
    pub config: SamlSpConfig,
    pub meta: SpMetadata,
}

impl ServiceProvider {
    /// The provider `config` describes, with its checked metadata.
    pub fn checked(config: &SamlSpConfig, meta: SpMetadata) -> Result<Self, String> {
        if (config.require_signed_requests || meta.authn_requests_signed)
            && meta.signing_keys.is_empty()
        {
            return Err(
                "signed requests are required but the metadata has no signing certificate".into(),
            );
        }
        Ok(Self {
            config: config.clone(),
            meta,
        })
    }

    fn requires_signed_requests(&self) -> bool {
        self.config.require_signed_requests || self.meta.authn_requests_signed
    }

    fn name(&self) -> &str {
        &self.meta.entity_id
    }
}

/// What `/saml/sso` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The request cannot be answered to a trusted ACS: an error page.
    ErrorPage { status: u16, message: String },
    /// The user must sign in, then come back to `/saml/sso/resume?request=…`.
    Login { request: String, force: bool },
    /// Send the browser here (a Redirect-binding message to the service provider).
    Redirect(String),
    /// Auto-post a message (`field`: `SAMLResponse` or `SAMLRequest`, base64) to the
    /// service provider.
    Post {
        action: String,
        field: &'static str,
        message_b64: String,
        relay_state: Option<String>,
    },
    /// A logout the IdP started is over: the signed-out page, saying whether some
    /// application could not be signed out.
    SignedOut { partial: bool },
    /// Single Logout: the page that tells the session's other service providers.
    LogoutPage(logout::LogoutPage),
    /// Single Logout: how telling provider `sp` (frame `n` of run `run`) went.
    LogoutStep {
        run: String,
        n: usize,
        sp: String,
        ok: bool,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    sp: Arc<ServiceProvider>,
    request_id: Option<String>,
    acs: String,
    relay_state: Option<String>,
    name_id_format: NameIdFormat,
    force: bool,
    passive: bool,
    created_ms: u64,
}

/// Which service providers a session signed in to, for Single Logout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub sp: String,
    pub subject: String,
    pub name_id: String,
    pub name_id_format: String,
}

/// The SAML identity provider.
pub struct Provider {
    endpoints: IdpEndpoints,
    config: SamlConfig,
    sps: RwLock<HashMap<String, Arc<ServiceProvider>>>,
    signer: Signer,
    pairwise: aws_lc_rs::hmac::Key,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    seen: Mutex<HashMap<(String, String), i64>>,
    pending: Mutex<HashMap<String, Pending>>,
    participants: Mutex<HashMap<String, Vec<Participant>>>,
    logouts: Mutex<HashMap<String, logout::Run>>,
    sources: Mutex<Vec<registry::Source>>,
    store: std::sync::OnceLock<kopa_store::Store>,
    /// Certificates published beside the signing one (base64 DER): a staged next key's,
    /// recently retired ones'.
    extra_certificates: Vec<String>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("saml::Provider")
            .field("entity_id", &self.endpoints.entity_id)
            .field("sps", &self.sps.read().map_or(0, |m| m.len()))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Provider {
    /// The provider at `base` (the public URL), with its signer and the secret for
    /// pairwise identifiers; the service providers come with [`Provider::load_sources`].
    pub fn new(
        base: &str,
        config: SamlConfig,
        signer: Signer,
        pairwise_secret: &[u8],
        audit: AuditLog,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            endpoints: IdpEndpoints {
                entity_id: format!("{base}/saml/metadata"),
                sso: format!("{base}/saml/sso"),
                slo: format!("{base}/saml/slo"),
            },
            config,
            sps: RwLock::new(HashMap::new()),
            signer,
            pairwise: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pairwise_secret),
            audit,
            clock,
            seen: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            participants: Mutex::new(HashMap::new()),
            logouts: Mutex::new(HashMap::new()),
            sources: Mutex::new(Vec::new()),
            store: std::sync::OnceLock::new(),
            extra_certificates: Vec::new(),
        }
    }

    /// Also publishes these PEM certificates in the metadata (certificate rollover: the
    /// staged next one before it signs, retired ones for a while after).
    pub fn with_published_certificates(mut self, pems: &[String]) -> Self {
        self.extra_certificates = pems
            .iter()
            .filter_map(|pem| dsig::pem_body(pem, "CERTIFICATE"))
            .map(|der| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(der)
            })
            .collect();
        self
    }

    /// The registered service provider `entity_id`.
    pub fn sp(&self, entity_id: &str) -> Option<Arc<ServiceProvider>> {
        self.sps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(entity_id)
            .cloned()
    }

    /// The registered service provider `entity_id`, unless its metadata has expired.
    fn usable_sp(&self, entity_id: &str) -> Option<Arc<ServiceProvider>> {
        let now = self.now_secs();
        self.sp(entity_id)
            .filter(|sp| sp.meta.valid_until.is_none_or(|v| v > now))
    }

    /// The IdP's entity ID.
    pub fn entity_id(&self) -> &str {
        &self.endpoints.entity_id
    }

    fn now_secs(&self) -> i64 {
        i64::try_from(self.clock.now_millis() / 1000).unwrap_or(i64::MAX)
    }

    /// The signed metadata document.
    pub fn metadata(&self) -> String {
        let valid_until = response::instant(self.now_secs() + 7 * 86_400);
        metadata::idp_metadata(
            &self.endpoints,
            &self.signer,
            &self.extra_certificates,
            &response::new_id(),
            &valid_until,
        )
    }

    fn event(&self, action: &str, outcome: Outcome, sp: &str, origin: &Origin) -> AuditEvent {
        let mut e = AuditEvent::new(Category::Authentication, action, outcome);
        e.client = Some(sp.chars().take(256).collect());
        e.source_ip = Some(origin.ip);
        e.user_agent = Some(origin.user_agent.chars().take(512).collect());
        e.method = Some("saml".into());
        e
    }

    pub(crate) async fn refuse(
        &self,
        sp: &str,
        origin: &Origin,
        reason: &str,
        status: u16,
        message: String,
    ) -> Answer {
        let mut e = self.event("saml-request", Outcome::Failure, sp, origin);
        e.reason = Some(reason.into());
        e.details
            .insert("error".into(), message.chars().take(512).collect());
        if let Err(err) = self.audit.append(e).await {
            tracing::error!(error = %err, "could not record a refused SAML request");
        }
        Answer::ErrorPage { status, message }
    }

    /// Handles an `AuthnRequest` that arrived at `/saml/sso`.
    pub async fn sso(
        &self,
        incoming: Incoming,
        session: Option<Session>,
        origin: &Origin,
    ) -> Answer {
        match self.check_request(&incoming) {
            Ok((sp, req)) => {
                self.accept(sp, req, incoming.relay_state, session, origin)
                    .await
            }
            Err((sp, reason, message)) => self.refuse(&sp, origin, reason, 400, message).await,
        }
    }

    /// The configured provider `issuer`, and whether `incoming` carries its valid
    /// signature (over the raw query for Redirect, where an XML signature is refused;
    /// enveloped for POST). A bad signature is an error, a missing one is `false`.
    fn sender(
        &self,
        incoming: &Incoming,
        root: roxmltree::Node<'_, '_>,
        issuer: &str,
    ) -> Result<(Arc<ServiceProvider>, bool), (String, &'static str, String)> {
        let fail = |reason: &'static str, message: String| (issuer.to_owned(), reason, message);
        let sp = self.sp(issuer).ok_or_else(|| {
            fail(
                "unknown_sp",
                "The service provider is not registered with this identity provider.".into(),
            )
        })?;
        if sp.meta.valid_until.is_some_and(|v| v <= self.now_secs()) {
            return Err(fail(
                "metadata_expired",
                "The service provider's metadata has expired (validUntil); it must be renewed."
                    .into(),
            ));
        }
        let signed = match (&incoming.query_signature, incoming.post) {
            (Some(q), false) => {
                if root
                    .descendants()
                    .any(|n| n.has_tag_name((xml::NS_DSIG, "Signature")))
                {
                    return Err(fail(
                        "bad_signature",
                        "A Redirect-binding message must not carry an XML signature.".into(),
                    ));
                }
                verify_query(&sp, q).map_err(|e| fail("bad_signature", e.0))?;
                true
            }
            (None, false) => false,
            (_, true) => dsig::verify_enveloped(root, &sp.meta.signing_keys)
                .map_err(|e| fail("bad_signature", e.0))?,
        };
        Ok((sp, signed))
    }

    /// Parses, authenticates and checks a request up to the point where its ACS is known
    /// to be the service provider's own.
    fn check_request(
        &self,
        incoming: &Incoming,
    ) -> Result<(Arc<ServiceProvider>, AuthnRequest), (String, &'static str, String)> {
        let unknown = String::new();
        let doc = request::parse(&incoming.xml).map_err(|e| (unknown.clone(), "malformed", e.0))?;
        let root = doc.root_element();
        let req = request::authn_request(root).map_err(|e| (unknown.clone(), "malformed", e.0))?;
        let (sp, signed) = self.sender(incoming, root, &req.common.issuer)?;
        let issuer = req.common.issuer.clone();
        let fail = |reason: &'static str, message: String| (issuer.clone(), reason, message);
        if !signed && sp.requires_signed_requests() {
            return Err(fail(
                "unsigned",
                "This service provider's requests must be signed.".into(),
            ));
        }
        match &req.common.destination {
            Some(d) if *d != self.endpoints.sso => {
                return Err(fail(
                    "wrong_destination",
                    format!("The request is addressed to {d}, not to this identity provider."),
                ));
            }
            None if signed => {
                return Err(fail(
                    "wrong_destination",
                    "A signed request must name its Destination.".into(),
                ));
            }
            _ => {}
        }
        if req
            .protocol_binding
            .as_deref()
            .is_some_and(|b| b != BINDING_POST)
        {
            return Err(fail(
                "unsupported_binding",
                "Only the HTTP-POST binding is supported for responses.".into(),
            ));
        }
        Ok((sp, req))
    }

    /// The ACS to answer at: the one named (by URL or index) if the metadata lists it,
    /// else the metadata's default.
    fn acs(sp: &ServiceProvider, url: Option<&str>, index: Option<u16>) -> Result<String, String> {
        let post = sp.meta.acs.iter().filter(|e| e.binding == BINDING_POST);
        if let Some(url) = url {
            return post
                .clone()
                .find(|e| e.location == *url)
                .map(|e| e.location.clone())
                .ok_or_else(|| {
                    "The AssertionConsumerServiceURL is not in the service provider's metadata."
                        .to_owned()
                });
        }
        if let Some(index) = index {
            return post
                .clone()
                .find(|e| e.index == Some(index))
                .map(|e| e.location.clone())
                .ok_or_else(|| {
                    "The AssertionConsumerServiceIndex is not in the service provider's metadata."
                        .to_owned()
                });
        }
        post.clone()
            .find(|e| e.is_default)
            .or_else(|| post.clone().next())
            .map(|e| e.location.clone())
            .ok_or_else(|| "The service provider has no HTTP-POST endpoint.".to_owned())
    }

    async fn accept(
        &self,
        sp: Arc<ServiceProvider>,
        req: AuthnRequest,
        relay_state: Option<String>,
        session: Option<Session>,
        origin: &Origin,
    ) -> Answer {
        let acs = match Self::acs(&sp, req.acs_url.as_deref(), req.acs_index) {
            Ok(acs) => acs,
            Err(message) => {
                return self
                    .refuse(sp.name(), origin, "unknown_acs", 400, message)
                    .await;
            }
        };
        let now = self.now_secs();
        let mut pending = Pending {
            sp: sp.clone(),
            request_id: Some(req.common.id.clone()),
            acs,
            relay_state,
            name_id_format: sp.config.name_id_format,
            force: req.force_authn,
            passive: req.is_passive,
            created_ms: self.clock.now_millis(),
        };
        // From here on the ACS is the provider's own: errors go back to it as statuses.
        let skew = i64::try_from(self.config.clock_skew_secs).unwrap_or(0);
        let max_age = i64::try_from(self.config.request_max_age_secs).unwrap_or(0);
        let t = req.common.issue_instant;
        if t > now + skew || t < now - max_age - skew {
            return self
                .status(
                    &pending,
                    origin,
                    "expired",
                    response::REQUESTER,
                    Some(response::REQUEST_DENIED),
                    "The request is too old or from the future.",
                )
                .await;
        }
        if !self.remember(&req.common.issuer, &req.common.id, now + max_age + 2 * skew) {
            return self
                .status(
                    &pending,
                    origin,
                    "replayed",
                    response::REQUESTER,
                    Some(response::REQUEST_DENIED),
                    "This request was already used.",
                )
                .await;
        }
        match req.name_id_format.as_deref() {
            None | Some("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified") => {}
            Some(urn) => {
                match NameIdFormat::from_urn(urn) {
                    // What the provider is configured for, or an identifier that cannot
                    // correlate the user across providers (transient, pairwise persistent).
                    Some(f)
                        if f == sp.config.name_id_format
                            || matches!(f, NameIdFormat::Transient | NameIdFormat::Persistent) =>
                    {
                        pending.name_id_format = f;
                    }
                    _ => {
                        return self
                        .status(&pending, origin, "name_id_policy", response::REQUESTER, Some(response::INVALID_NAME_ID_POLICY), "The requested NameID format is not released to this service provider.")
                        .await;
                    }
                }
            }
        }
        self.proceed(pending, session, origin).await
    }

    /// Remembers a request ID until `until`; false if it was already seen.
    fn remember(&self, issuer: &str, id: &str, until: i64) -> bool {
        let now = self.now_secs();
        let mut seen = lock(&self.seen);
        if seen.len() >= MAX_SEEN / 2 {
            seen.retain(|_, exp| *exp > now);
        }
        if seen.len() >= MAX_SEEN {
            return false;
        }
        let key = (issuer.to_owned(), id.to_owned());
        if seen.get(&key).is_some_and(|exp| *exp > now) {
            return false;
        }
        seen.insert(key, until);
        true
    }

    async fn proceed(&self, pending: Pending, session: Option<Session>, origin: &Origin) -> Answer {
        let fresh = |s: &Session| !pending.force || s.created_ms >= pending.created_ms;
        match session {
            Some(s) if fresh(&s) => self.issue(&pending, &s, origin).await,
            _ if pending.passive => {
                self.status(
                    &pending,
                    origin,
                    "no_passive",
                    response::RESPONDER,
                    Some(response::NO_PASSIVE),
                    "The user is not signed in.",
                )
                .await
            }
            _ => {
                let force = pending.force;
                let id = crate::session::new_token();
                let mut map = lock(&self.pending);
                let now = self.clock.now_millis();
                map.retain(|_, p| now.saturating_sub(p.created_ms) < PENDING_TTL_MS);
                if map.len() >= MAX_PENDING {
                    return Answer::ErrorPage {
                        status: 503,
                        message: "Too many sign-ins are waiting; please try again shortly.".into(),
                    };
                }
                map.insert(id.clone(), pending);
                Answer::Login { request: id, force }
            }
        }
    }

    /// Continues a request parked for sign-in.
    pub async fn resume(&self, request: &str, session: Option<Session>, origin: &Origin) -> Answer {
        let pending = lock(&self.pending)
            .remove(request)
            .filter(|p| self.clock.now_millis().saturating_sub(p.created_ms) < PENDING_TTL_MS);
        let Some(pending) = pending else {
            return Answer::ErrorPage {
                status: 400,
                message:
                    "This sign-in request has expired. Please start again from the application."
                        .into(),
            };
        };
        match session {
            Some(s) => {
                self.proceed(
                    Pending {
                        passive: true,
                        ..pending
                    },
                    Some(s),
                    origin,
                )
                .await
            }
            None => self.proceed(pending, None, origin).await,
        }
    }

    /// IdP-initiated sign-in to the provider `entity_id`, if it allows it.
    pub async fn initiate(
        &self,
        entity_id: &str,
        relay_state: Option<String>,
        session: Option<Session>,
        origin: &Origin,
    ) -> Answer {
        let Some(sp) = self.usable_sp(entity_id) else {
            return self
                .refuse(
                    entity_id,
                    origin,
                    "unknown_sp",
                    404,
                    "The service provider is not registered with this identity provider.".into(),
                )
                .await;
        };
        if !sp.config.allow_idp_initiated {
            return self
                .refuse(
                    entity_id,
                    origin,
                    "idp_initiated_refused",
                    403,
                    "This service provider does not accept sign-in started here.".into(),
                )
                .await;
        }
        if relay_state
            .as_ref()
            .is_some_and(|r| r.len() > request::MAX_RELAY_STATE)
        {
            return self
                .refuse(
                    entity_id,
                    origin,
                    "malformed",
                    400,
                    "RelayState is too long.".into(),
                )
                .await;
        }
        let acs = match Self::acs(&sp, None, None) {
            Ok(acs) => acs,
            Err(message) => {
                return self
                    .refuse(entity_id, origin, "unknown_acs", 400, message)
                    .await;
            }
        };
        let pending = Pending {
            name_id_format: sp.config.name_id_format,
            sp,
            request_id: None,
            acs,
            relay_state,
            force: false,
            passive: false,
            created_ms: self.clock.now_millis(),
        };
        self.proceed(pending, session, origin).await
    }

    fn name_id(&self, sp: &ServiceProvider, format: NameIdFormat, s: &Session) -> Option<String> {
        match format {
            NameIdFormat::Persistent => {
                let mut input = sp.meta.entity_id.as_bytes().to_vec();
                input.push(0);
                input.extend_from_slice(s.data.subject.as_bytes());
                let tag = aws_lc_rs::hmac::sign(&self.pairwise, &input);
                use base64::Engine;
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag.as_ref()[..24]))
            }
            NameIdFormat::Transient => Some(response::new_id()),
            NameIdFormat::EmailAddress => s.data.email.clone(),
            NameIdFormat::Unspecified => Some(s.data.subject.clone()),
        }
    }

    fn attribute_values(source: &str, s: &Session) -> Vec<String> {
        let d = &s.data;
        let one = |v: Option<&String>| v.into_iter().cloned().collect();
        match source {
            "subject" => vec![d.subject.clone()],
            "login" => vec![d.login.clone()],
            "display_name" => vec![d.display_name.clone()],
            "email" => one(d.email.as_ref()),
            "given_name" => one(d.given_name.as_ref()),
            "family_name" => one(d.family_name.as_ref()),
            "tenant" => d.tenant.iter().map(|t| t.as_str().to_owned()).collect(),
            "roles" => d.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            "groups" => d.groups.clone(),
            _ => Vec::new(),
        }
    }

    async fn issue(&self, p: &Pending, s: &Session, origin: &Origin) -> Answer {
        let sp = &p.sp;
        if let Some(t) = &sp.config.tenant
            && s.data.tenant.as_ref().map(|x| x.as_str()) != Some(t.as_str())
        {
            return self
                .status(
                    p,
                    origin,
                    "wrong_tenant",
                    response::RESPONDER,
                    Some(response::REQUEST_DENIED),
                    "Your account may not sign in to this service.",
                )
                .await;
        }
        let Some(name_id) = self.name_id(sp, p.name_id_format, s) else {
            return self
                .status(
                    p,
                    origin,
                    "name_id_unavailable",
                    response::RESPONDER,
                    Some(response::INVALID_NAME_ID_POLICY),
                    "The account has no value for the NameID format.",
                )
                .await;
        };
        let now = self.now_secs();
        let skew = i64::try_from(self.config.clock_skew_secs).unwrap_or(0);
        let lifetime = i64::try_from(self.config.assertion_lifetime_secs).unwrap_or(300);
        let values: Vec<Vec<String>> = sp
            .config
            .attributes
            .iter()
            .map(|a| Self::attribute_values(&a.source, s))
            .collect();
        let statement = Statement {
            name_id: &name_id,
            name_id_format: p.name_id_format.urn(),
            session_index: &s.id,
            authn_instant: i64::try_from(s.created_ms / 1000).unwrap_or(now),
            authn_context: if s.data.amr.iter().any(|m| m == "otp") {
                response::REFEDS_MFA
            } else {
                response::PASSWORD_PROTECTED
            },
            not_before: now - skew,
            not_on_or_after: now + lifetime,
            attributes: sp
                .config
                .attributes
                .iter()
                .zip(values)
                .map(|(a, values)| Released {
                    name: &a.name,
                    name_format: a.name_format.as_deref(),
                    friendly_name: a.friendly_name.as_deref(),
                    values,
                })
                .collect(),
        };
        let env = Envelope {
            idp_entity: &self.endpoints.entity_id,
            sp_entity: &sp.meta.entity_id,
            acs: &p.acs,
            in_response_to: p.request_id.as_deref(),
            now,
        };
        let xml = response::success(&self.signer, &env, &statement, sp.config.sign);
        let mut e = self.event("saml-assertion-issued", Outcome::Success, sp.name(), origin);
        e.tenant = s.data.tenant.clone();
        e.user_resolved = Some(s.data.subject.clone());
        e.session_id = Some(s.id.clone());
        e.details
            .insert("name_id_format".into(), p.name_id_format.urn().into());
        e.details.insert(
            "initiated_by".into(),
            if p.request_id.is_some() { "sp" } else { "idp" }.into(),
        );
        if let Err(err) = self.audit.append(e).await {
            tracing::error!(error = %err, "could not record a SAML assertion; not sending it");
            return Answer::ErrorPage {
                status: 503,
                message: "The sign-in could not be recorded; please try again.".into(),
            };
        }
        {
            let mut parts = lock(&self.participants);
            if parts.len() >= MAX_TRACKED_SESSIONS {
                // Sessions that ended without a SAML logout leave entries behind. Ids are
                // random, so this drops an arbitrary half; a later LogoutRequest for one
                // of those finds its session only by the browser's cookie.
                let mut ids: Vec<String> = parts.keys().cloned().collect();
                ids.sort_unstable();
                for id in ids.into_iter().take(MAX_TRACKED_SESSIONS / 2) {
                    parts.remove(&id);
                }
            }
            let list = parts.entry(s.id.clone()).or_default();
            let who = Participant {
                sp: sp.meta.entity_id.clone(),
                subject: s.data.subject.clone(),
                name_id: name_id.clone(),
                name_id_format: p.name_id_format.urn().to_owned(),
            };
            // One entry per provider, the NameID it was given last (a transient one is new
            // every time), and a bounded list.
            list.retain(|p| p.sp != who.sp);
            if list.len() < MAX_PROVIDERS_PER_SESSION {
                list.push(who);
            }
        }
        Answer::Post {
            action: p.acs.clone(),
            field: "SAMLResponse",
            message_b64: {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(xml)
            },
            relay_state: p.relay_state.clone(),
        }
    }

    async fn status(
        &self,
        p: &Pending,
        origin: &Origin,
        reason: &str,
        top: &str,
        second: Option<&str>,
        message: &str,
    ) -> Answer {
        let mut e = self.event("saml-request", Outcome::Failure, p.sp.name(), origin);
        e.reason = Some(reason.into());
        if let Err(err) = self.audit.append(e).await {
            tracing::error!(error = %err, "could not record a refused SAML request");
        }
        let env = Envelope {
            idp_entity: &self.endpoints.entity_id,
            sp_entity: &p.sp.meta.entity_id,
            acs: &p.acs,
            in_response_to: p.request_id.as_deref(),
            now: self.now_secs(),
        };
        let xml = response::failure(&self.signer, &env, top, second, message);
        use base64::Engine;
        Answer::Post {
            action: p.acs.clone(),
            field: "SAMLResponse",
            message_b64: base64::engine::general_purpose::STANDARD.encode(xml),
            relay_state: p.relay_state.clone(),
        }
    }
}

/// The secret behind pairwise NameIDs, in `keys/saml-pairwise.secret` (mode 0600), made
/// on first start. Losing it changes every persistent NameID, so `kopa backup` copies it
/// (with the rest of `keys/`).
pub fn pairwise_secret(keys_dir: &std::path::Path) -> Result<Vec<u8>, String> {
    let path = keys_dir.join("saml-pairwise.secret");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        Ok(_) => Err(format!("{}: must hold exactly 32 bytes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            kopa_store::fsutil::write_private_file_atomic(&path, &bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(bytes)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn verify_query(sp: &ServiceProvider, q: &request::QuerySignature) -> Result<(), SigError> {
    let mut last = SigError("No signing certificate is known for the service provider".into());
    for key in &sp.meta.signing_keys {
        match key.verify(&q.alg, q.signed.as_bytes(), &q.signature) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}
