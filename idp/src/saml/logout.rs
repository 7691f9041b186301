//! SAML Single Logout (SAML Profiles §4.4) at `/saml/slo`.
//!
//! A service provider's `LogoutRequest` ends the SSO session (which also sends the OIDC
//! back-channel logout tokens). The IdP then tells every other SAML service provider of
//! that session, one after the other through the browser (front channel): a signed
//! `LogoutRequest` to the provider's logout endpoint, whose signed `LogoutResponse` comes
//! back to `/saml/slo` and leads on to the next. Last, the initiator gets its
//! `LogoutResponse`: `Success`, or `Success` with `PartialLogout` when a provider could not
//! be told or did not answer `Success`.
//!
//! A logout that starts at the IdP itself (its `/logout` page, the OIDC end-session
//! endpoint) goes the same way through the session's SAML providers and ends on the
//! signed-out page or the relying party's post-logout redirect.

use super::metadata::{BINDING_POST, BINDING_REDIRECT, Endpoint};
use super::request::{self, Incoming};
use super::response::{self, Envelope};
use super::xml::{NS_ASSERTION, NS_PROTOCOL, Writer};
use super::{Answer, Participant, Provider, ServiceProvider, dsig, lock};
use crate::login::{BackChannelReport, FrontChannelLogout, LoggedOut, Login};
use crate::oidc::Origin;
use crate::session::Session;
use base64::Engine;
use kopa_store::audit::Outcome;
use std::sync::Arc;

/// How long a front-channel logout may take from start to end.
const RUN_TTL_MS: u64 = 5 * 60 * 1000;
/// Most logouts in progress at once.
const MAX_RUNS: usize = 10_000;

/// The status a `LogoutResponse` carries: top-level code, second-level code, message.
type Status = (&'static str, Option<&'static str>, Option<&'static str>);

/// Where a logout ends once every service provider was told.
#[derive(Debug)]
enum Finish {
    /// A `LogoutResponse` to the service provider that asked.
    Initiator {
        sp: Arc<ServiceProvider>,
        request_id: String,
        endpoint: Endpoint,
        relay_state: Option<String>,
    },
    /// The IdP's signed-out page, or this redirect (an OIDC post-logout URI).
    Page(Option<String>),
}

/// A service provider of the session that is to learn of the logout.
#[derive(Debug)]
struct Told {
    who: Participant,
    /// Its logout endpoint; `None` when it has none (it cannot be told).
    endpoint: Option<Endpoint>,
    /// The ID and time of the `LogoutRequest` it is sent (the same on every load of
    /// its frame).
    request_id: String,
    issued: i64,
    /// `None` while awaited; `Some("")` once it confirmed, else why it did not count.
    /// A provider's own answer is audited as it arrives; the rest when the run finishes.
    answer: Option<&'static str>,
}

impl Told {
    /// Whether its outcome came from the provider itself (and is audited already).
    fn answered_itself(&self) -> bool {
        self.endpoint.is_some() && self.answer.is_some()
    }
}

/// One logout in progress: the session's other providers are told all at once, each in
/// a frame of the logout page, and the run finishes when all answered or the wait ran
/// out (`/saml/slo/next`).
#[derive(Debug)]
pub(super) struct Run {
    finish: Finish,
    told: Vec<Told>,
    /// How the OIDC back-channel deliveries went.
    back_channel: BackChannelReport,
    /// The browser that shows the logout page: a secret in its cookie, set the first time
    /// the page is shown (before any provider learns the run's id); the frames and the
    /// finish answer only that browser.
    browser: Option<String>,
    session_id: String,
    created_ms: u64,
}

/// What the logout page shows: each provider being told, in its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutPage {
    /// The run, for the frame and continue URLs.
    pub run: String,
    /// Index and entity ID of each provider that is told.
    pub providers: Vec<(usize, String)>,
    /// Origins of their logout endpoints (the page may frame these, and https ones).
    pub origins: Vec<String>,
    /// Seconds the page waits before it goes on without the missing answers.
    pub wait_secs: u64,
    /// The browser's secret for this run, to set as its cookie (the first time).
    pub browser: Option<String>,
}

/// The logout endpoint a message goes to: HTTP-Redirect preferred, else HTTP-POST.
fn slo_endpoint(sp: &ServiceProvider) -> Option<Endpoint> {
    let by = |b: &str| sp.meta.slo.iter().find(|e| e.binding == b).cloned();
    by(BINDING_REDIRECT).or_else(|| by(BINDING_POST))
}

fn encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

impl Provider {
    /// Sends a protocol message (`field`: `SAMLRequest` or `SAMLResponse`) to `endpoint`:
    /// by a redirect whose query is signed, or by an auto-posted, enveloped-signed form.
    /// `xml` writes the message given whether it is to carry its own signature.
    fn deliver(
        &self,
        endpoint: &Endpoint,
        destination: &str,
        field: &'static str,
        xml: impl Fn(bool) -> String,
        relay_state: Option<String>,
    ) -> Answer {
        let b64 = base64::engine::general_purpose::STANDARD;
        if endpoint.binding == BINDING_POST {
            return Answer::Post {
                action: destination.to_owned(),
                field,
                message_b64: b64.encode(xml(true)),
                relay_state,
            };
        }
        let deflated = miniz_oxide::deflate::compress_to_vec(xml(false).as_bytes(), 6);
        let mut query = format!("{field}={}", encode(&b64.encode(deflated)));
        if let Some(r) = &relay_state {
            query.push_str("&RelayState=");
            query.push_str(&encode(r));
        }
        query.push_str("&SigAlg=");
        query.push_str(&encode(dsig::RSA_SHA256));
        let signature = self.signer.sign_b64(query.as_bytes());
        let sep = if destination.contains('?') { '&' } else { '?' };
        Answer::Redirect(format!(
            "{destination}{sep}{query}&Signature={}",
            encode(&signature)
        ))
    }

    /// Handles a message that arrived at `/saml/slo`: a service provider's `LogoutRequest`
    /// (`SAMLRequest`), or the `LogoutResponse` (`SAMLResponse`) of one the IdP told.
    pub async fn slo(
        &self,
        incoming: Incoming,
        is_response: bool,
        session: Option<Session>,
        origin: &Origin,
        login: &Login,
    ) -> Answer {
        if is_response {
            self.logout_answered(incoming, origin).await
        } else {
            self.logout(incoming, session, origin, login).await
        }
    }

    /// A service provider's `LogoutRequest`: ends the session it names and starts telling
    /// the session's other providers.
    async fn logout(
        &self,
        incoming: Incoming,
        session: Option<Session>,
        origin: &Origin,
        login: &Login,
    ) -> Answer {
        let (sp, req) = match self.check_logout(&incoming) {
            Ok(ok) => ok,
            Err((sp, reason, message)) => {
                return self.refuse(&sp, origin, reason, 400, message).await;
            }
        };
        let Some(endpoint) = slo_endpoint(&sp) else {
            return self
                .refuse(
                    sp.name(),
                    origin,
                    "no_slo_endpoint",
                    400,
                    "The service provider's metadata has no SingleLogoutService.".into(),
                )
                .await;
        };
        let now = self.now_secs();
        let skew = i64::try_from(self.config.clock_skew_secs).unwrap_or(0);
        let max_age = i64::try_from(self.config.request_max_age_secs).unwrap_or(0);
        let t = req.common.issue_instant;
        let fresh = t <= now + skew && t >= now - max_age - skew;
        let first =
            fresh && self.remember(&req.common.issuer, &req.common.id, now + max_age + 2 * skew);
        // The session: the browser's, or one named by SessionIndex; either way this
        // provider must have been given the NameID the request names.
        let matches = |sid: &str| -> Option<(String, Vec<Participant>)> {
            let parts = lock(&self.participants);
            let list = parts.get(sid)?;
            let me = list
                .iter()
                .find(|p| p.sp == sp.meta.entity_id && p.name_id == req.name_id)?;
            let others = list
                .iter()
                .filter(|p| p.sp != sp.meta.entity_id)
                .cloned()
                .collect();
            Some((me.subject.clone(), others))
        };
        let target = session
            .as_ref()
            .map(|s| s.id.clone())
            .into_iter()
            .chain(req.session_indexes.iter().cloned())
            .find_map(|sid| matches(&sid).map(|(subject, others)| (sid, subject, others)));
        let finish = Finish::Initiator {
            sp: sp.clone(),
            request_id: req.common.id.clone(),
            endpoint,
            relay_state: incoming.relay_state,
        };
        let failed: Option<Status> = if !first {
            Some((
                response::REQUESTER,
                Some(response::REQUEST_DENIED),
                Some("The request is expired or was already used."),
            ))
        } else {
            None
        };
        let (outcome, ended) = match (failed, target) {
            (Some(status), _) => (Err(status), None),
            // Nothing to end (already logged out): logout is idempotent.
            (None, None) => (Ok(()), None),
            (None, Some((sid, subject, others))) => {
                lock(&self.participants).remove(&sid);
                match login
                    .logout_by_id(&subject, &sid, origin.ip, &origin.user_agent, "saml")
                    .await
                {
                    Ok(logged_out) => {
                        let back_channel = logged_out.map(|l| l.back_channel).unwrap_or_default();
                        (Ok(()), Some((sid, others, back_channel)))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SAML logout could not end the session");
                        let status = (
                            response::RESPONDER,
                            None,
                            Some("The session could not be ended."),
                        );
                        (Err(status), None)
                    }
                }
            }
        };
        let mut e = self.event(
            "saml-logout",
            if outcome.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            sp.name(),
            origin,
        );
        e.session_id = ended.as_ref().map(|(sid, _, _)| sid.clone());
        e.details.insert(
            "providers_to_tell".into(),
            ended.as_ref().map_or(0, |(_, o, _)| o.len()).to_string(),
        );
        if let Err(err) = self.audit.append(e).await {
            tracing::error!(error = %err, "could not record a SAML logout");
        }
        let (sid, others, back_channel) = ended.unwrap_or_default();
        let run = self.new_run(finish, others, back_channel, sid);
        match outcome {
            Err(status) => self.finish(run, Some(status), origin).await,
            Ok(()) => self.start(run, origin).await,
        }
    }

    /// A run that is to tell `others` of the end of session `session_id`.
    fn new_run(
        &self,
        finish: Finish,
        others: Vec<Participant>,
        back_channel: BackChannelReport,
        session_id: String,
    ) -> Run {
        let issued = self.now_secs();
        let told = others
            .into_iter()
            .map(|who| {
                let endpoint = self.usable_sp(&who.sp).and_then(|sp| slo_endpoint(&sp));
                Told {
                    answer: endpoint.is_none().then_some("no_slo_endpoint"),
                    who,
                    endpoint,
                    request_id: response::new_id(),
                    issued,
                }
            })
            .collect();
        Run {
            finish,
            told,
            back_channel,
            browser: None,
            session_id,
            created_ms: self.clock.now_millis(),
        }
    }

    /// Shows the logout page of `run`, or finishes it at once when nobody can be told.
    async fn start(&self, run: Run, origin: &Origin) -> Answer {
        if run.told.iter().all(|t| t.endpoint.is_none()) {
            return self.finish(run, None, origin).await;
        }
        let run_id = response::new_id();
        match self.park(&run_id, run) {
            Ok(()) => self.logout_page(&run_id, None),
            Err(run) => {
                // Too many logouts in flight: the rest cannot be told; say so.
                tracing::warn!("too many SAML logouts in progress; reporting a partial logout");
                self.finish(*run, None, origin).await
            }
        }
    }

    /// Parses and authenticates a `LogoutRequest` (always signed: front-channel logout
    /// must be, SAML Profiles §4.4.3.1).
    fn check_logout(
        &self,
        incoming: &Incoming,
    ) -> Result<(Arc<ServiceProvider>, request::LogoutRequest), (String, &'static str, String)>
    {
        let doc = request::parse(&incoming.xml).map_err(|e| (String::new(), "malformed", e.0))?;
        let root = doc.root_element();
        let req = request::logout_request(root).map_err(|e| (String::new(), "malformed", e.0))?;
        let (sp, signed) = self.sender(incoming, root, &req.common.issuer)?;
        let issuer = req.common.issuer.clone();
        let fail = |reason: &'static str, message: String| (issuer.clone(), reason, message);
        if !signed {
            return Err(fail("unsigned", "A LogoutRequest must be signed.".into()));
        }
        if req.common.destination.as_deref() != Some(self.endpoints.slo.as_str()) {
            return Err(fail(
                "wrong_destination",
                "The LogoutRequest is not addressed to this identity provider's logout endpoint."
                    .into(),
            ));
        }
        Ok((sp, req))
    }

    /// The page that tells the providers of run `run_id` (`/saml/slo/page`), each in a
    /// frame. The first browser to see it owns the run (`browser`: its cookie); any other
    /// gets an error page, and so does an unknown or finished run.
    pub fn logout_page(&self, run_id: &str, browser: Option<&str>) -> Answer {
        let mut runs = lock(&self.logouts);
        let Some(run) = runs.get_mut(run_id).filter(|r| self.live(r)) else {
            return over();
        };
        let new_secret = match (&run.browser, browser) {
            (None, _) => {
                let secret = crate::session::new_token();
                run.browser = Some(secret.clone());
                Some(secret)
            }
            (Some(owner), Some(b)) if kopa_web::cookie::secrets_match(owner, b) => None,
            (Some(_), _) => return not_yours(),
        };
        let mut origins: Vec<String> = Vec::new();
        let mut providers = Vec::new();
        for (i, t) in run.told.iter().enumerate() {
            let Some(endpoint) = &t.endpoint else {
                continue;
            };
            providers.push((i, t.who.sp.clone()));
            if let Some(o) = url::Url::parse(&endpoint.location)
                .ok()
                .map(|u| u.origin())
                .filter(url::Origin::is_tuple)
            {
                let o = o.ascii_serialization();
                if !origins.contains(&o) {
                    origins.push(o);
                }
            }
        }
        Answer::LogoutPage(LogoutPage {
            run: run_id.to_owned(),
            providers,
            origins,
            wait_secs: self.config.logout_wait_secs,
            browser: new_secret,
        })
    }

    /// Whether `browser` (its cookie) owns `run`.
    fn owns(run: &Run, browser: Option<&str>) -> bool {
        match (&run.browser, browser) {
            (Some(owner), Some(b)) => kopa_web::cookie::secrets_match(owner, b),
            _ => false,
        }
    }

    /// The content of frame `n` of run `run_id` (`/saml/slo/frame`): the signed
    /// `LogoutRequest` to that provider, or how it went when it already answered.
    pub fn logout_frame(&self, run_id: &str, n: usize, browser: Option<&str>) -> Answer {
        let runs = lock(&self.logouts);
        let Some(run) = runs.get(run_id).filter(|r| self.live(r)) else {
            return over();
        };
        if !Self::owns(run, browser) {
            return not_yours();
        }
        let Some(told) = run.told.get(n) else {
            return over();
        };
        let Some(endpoint) = told.endpoint.as_ref() else {
            return Answer::ErrorPage {
                status: 404,
                message: "This service provider cannot be told of logouts.".into(),
            };
        };
        if let Some(answer) = told.answer {
            return Answer::LogoutStep {
                run: run_id.to_owned(),
                n,
                sp: told.who.sp.clone(),
                ok: answer.is_empty(),
            };
        }
        let lifetime = i64::try_from(self.config.request_max_age_secs).unwrap_or(300);
        let message = OutgoingLogout {
            id: &told.request_id,
            idp_entity: &self.endpoints.entity_id,
            destination: &endpoint.location,
            now: told.issued,
            not_on_or_after: told.issued + lifetime,
            who: &told.who,
            session_index: &run.session_id,
        };
        self.deliver(
            endpoint,
            &endpoint.location,
            "SAMLRequest",
            |sign| message.write(&self.signer, sign),
            Some(run_id.to_owned()),
        )
    }

    fn live(&self, run: &Run) -> bool {
        self.clock.now_millis().saturating_sub(run.created_ms) < RUN_TTL_MS
    }

    /// Keeps `run` under `run_id` until its provider answers; gives it back when full.
    fn park(&self, run_id: &str, run: Run) -> Result<(), Box<Run>> {
        let mut runs = lock(&self.logouts);
        if runs.len() >= MAX_RUNS / 2 {
            runs.retain(|_, r| self.live(r));
        }
        if runs.len() >= MAX_RUNS {
            return Err(Box::new(run));
        }
        runs.insert(run_id.to_owned(), run);
        Ok(())
    }

    async fn record_hop(&self, sp: &str, origin: &Origin, session_id: &str, failure: &str) {
        let outcome = if failure.is_empty() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut e = self.event("saml-logout-propagated", outcome, sp, origin);
        if !failure.is_empty() {
            e.reason = Some(failure.to_owned());
        }
        e.session_id = (!session_id.is_empty()).then(|| session_id.to_owned());
        if let Err(err) = self.audit.append(e).await {
            tracing::error!(error = %err, "could not record a SAML logout");
        }
    }

    /// The `LogoutResponse` of a provider the IdP told (it arrives in that provider's
    /// frame): checked, recorded, and shown as that provider's outcome. A response that
    /// does not check out counts as a provider that did not log out.
    async fn logout_answered(&self, incoming: Incoming, origin: &Origin) -> Answer {
        // Parsed once; it counts only for a run that awaits exactly this provider's
        // answer to exactly this request, so a stray message cannot touch anyone's logout.
        let judged = request::parse(&incoming.xml).ok().and_then(|doc| {
            let resp = request::logout_response(doc.root_element()).ok()?;
            let run_id = incoming.relay_state.clone()?;
            let awaited = |r: &Run| {
                r.told.iter().position(|t| {
                    t.answer.is_none()
                        && t.who.sp == resp.common.issuer
                        && Some(&t.request_id) == resp.in_response_to.as_ref()
                })
            };
            let (n, session_id) = lock(&self.logouts)
                .get(&run_id)
                .filter(|r| self.live(r))
                .and_then(|r| Some((awaited(r)?, r.session_id.clone())))?;
            let failure = self.logout_response_failure(&incoming, doc.root_element(), &resp);
            // Only the provider's own signed answer settles its part; anything else is
            // refused below and leaves the run waiting for the real one.
            if matches!(failure, Some("bad_signature" | "unsigned")) {
                return None;
            }
            if let Some(run) = lock(&self.logouts).get_mut(&run_id)
                && let Some(t) = run.told.get_mut(n)
                && t.answer.is_none()
            {
                t.answer = Some(failure.unwrap_or(""));
            }
            // (When the run finished in between, its finish counted this provider as
            // silent; the audit log still gets the real answer.)
            Some((run_id, n, resp.common.issuer, session_id, failure))
        });
        let Some((run, n, sp, session_id, failure)) = judged else {
            return self
                .refuse(
                    "",
                    origin,
                    "unknown_logout",
                    400,
                    "The LogoutResponse belongs to no logout in progress (or it took too long)."
                        .into(),
                )
                .await;
        };
        self.record_hop(&sp, origin, &session_id, failure.unwrap_or(""))
            .await;
        Answer::LogoutStep {
            run,
            n,
            sp,
            ok: failure.is_none(),
        }
    }

    /// Why the awaited provider's `LogoutResponse` does not count as a logout, if it
    /// does not: its signature, its Destination or its status.
    fn logout_response_failure(
        &self,
        incoming: &Incoming,
        root: roxmltree::Node<'_, '_>,
        resp: &request::LogoutResponse,
    ) -> Option<&'static str> {
        match self.sender(incoming, root, &resp.common.issuer) {
            Err(_) => return Some("bad_signature"),
            Ok((_, false)) => return Some("unsigned"),
            Ok((_, true)) => {}
        }
        // Signed messages must name their Destination (Bindings §3.4.5.2, §3.5.5.2).
        if resp.common.destination.as_deref() != Some(self.endpoints.slo.as_str()) {
            return Some("wrong_destination");
        }
        (resp.status != response::SUCCESS).then_some("not_success")
    }

    /// Ends `run`: the initiator's `LogoutResponse` (`status` when the logout itself
    /// failed), or the signed-out page / post-logout redirect. Providers that did not
    /// answer, could not be told, or did not confirm, and OIDC relying parties that did
    /// not confirm, make the logout partial.
    async fn finish(&self, run: Run, status: Option<Status>, origin: &Origin) -> Answer {
        let mut partial = false;
        for t in &run.told {
            let answer = t.answer.unwrap_or("no_answer");
            partial |= !answer.is_empty();
            if !t.answered_itself() {
                self.record_hop(&t.who.sp, origin, &run.session_id, answer)
                    .await;
            }
        }
        let wait = std::time::Duration::from_secs(self.config.logout_wait_secs);
        partial |= !run.back_channel.all_told(wait).await;
        let status = status.unwrap_or(if partial {
            (
                response::SUCCESS,
                Some(response::PARTIAL_LOGOUT),
                Some("Some services of this session could not be signed out."),
            )
        } else {
            (response::SUCCESS, None, None)
        });
        match run.finish {
            Finish::Page(Some(to)) => Answer::Redirect(to),
            Finish::Page(None) => Answer::SignedOut { partial },
            Finish::Initiator {
                sp,
                request_id,
                endpoint,
                relay_state,
            } => {
                let destination = endpoint
                    .response_location
                    .clone()
                    .unwrap_or(endpoint.location.clone());
                let env = Envelope {
                    idp_entity: &self.endpoints.entity_id,
                    sp_entity: &sp.meta.entity_id,
                    acs: &destination,
                    in_response_to: Some(&request_id),
                    now: self.now_secs(),
                };
                self.deliver(
                    &endpoint,
                    &destination,
                    "SAMLResponse",
                    |sign| response::logout_response(&self.signer, &env, status, sign),
                    relay_state,
                )
            }
        }
    }

    /// Finishes run `run_id` (`/saml/slo/next`), when every provider answered or the
    /// page's wait ran out; a provider still silent counts as not logged out.
    pub async fn continue_logout(
        &self,
        run_id: &str,
        browser: Option<&str>,
        origin: &Origin,
    ) -> Answer {
        let run = {
            let mut runs = lock(&self.logouts);
            match runs.get(run_id) {
                Some(r) if Self::owns(r, browser) => runs.remove(run_id),
                Some(_) => return not_yours(),
                None => None,
            }
        };
        match run.filter(|r| self.live(r)) {
            Some(run) => self.finish(run, None, origin).await,
            // Finished already, or abandoned for too long: nobody can tell how it went.
            None => Answer::SignedOut { partial: true },
        }
    }
}

impl FrontChannelLogout for Provider {
    fn begin(&self, ended: LoggedOut, then: Option<String>) -> Option<String> {
        let LoggedOut {
            session,
            back_channel,
        } = ended;
        let remaining = lock(&self.participants).remove(&session.id)?;
        if remaining.is_empty() {
            return None;
        }
        let run_id = response::new_id();
        let run = self.new_run(
            Finish::Page(then),
            remaining,
            back_channel,
            session.id.clone(),
        );
        match self.park(&run_id, run) {
            Ok(()) => Some(format!("/saml/slo/page?run={run_id}")),
            Err(run) => {
                // Kept for a later logout by a provider (SessionIndex) to find.
                tracing::warn!("too many SAML logouts in progress; providers not told");
                let again = run.told.into_iter().map(|t| t.who).collect();
                lock(&self.participants).insert(session.id.clone(), again);
                None
            }
        }
    }
}

/// The answer for a logout run that is unknown or over.
fn over() -> Answer {
    Answer::ErrorPage {
        status: 404,
        message: "This sign-out is over or unknown.".into(),
    }
}

/// The answer for a browser that does not own the logout run it names.
fn not_yours() -> Answer {
    Answer::ErrorPage {
        status: 403,
        message: "This sign-out belongs to another browser.".into(),
    }
}

/// A `LogoutRequest` the IdP sends to a service provider of the session.
struct OutgoingLogout<'a> {
    id: &'a str,
    idp_entity: &'a str,
    destination: &'a str,
    now: i64,
    not_on_or_after: i64,
    who: &'a Participant,
    session_index: &'a str,
}

impl OutgoingLogout<'_> {
    /// The request, enveloped-signed when `sign` (HTTP-POST).
    fn write(&self, signer: &dsig::Signer, sign: bool) -> String {
        let mut w = Writer::new();
        let expiry = response::instant(self.not_on_or_after);
        w.open(
            "samlp:LogoutRequest",
            Some(("samlp", NS_PROTOCOL)),
            &[
                ("Destination", Some(self.destination)),
                ("ID", Some(self.id)),
                ("IssueInstant", Some(&response::instant(self.now))),
                ("NotOnOrAfter", Some(&expiry)),
                ("Version", Some("2.0")),
            ],
        );
        w.leaf(
            "saml:Issuer",
            Some(("saml", NS_ASSERTION)),
            &[],
            self.idp_entity,
        );
        let head = w.len();
        // The NameID exactly as the assertion gave it (format and SP qualifier).
        w.leaf(
            "saml:NameID",
            Some(("saml", NS_ASSERTION)),
            &[
                ("Format", Some(&self.who.name_id_format)),
                ("SPNameQualifier", Some(&self.who.sp)),
            ],
            &self.who.name_id,
        );
        if !self.session_index.is_empty() {
            w.leaf("samlp:SessionIndex", None, &[], self.session_index);
        }
        w.close("samlp:LogoutRequest");
        response::enveloped(signer, w.finish(), head, self.id, sign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idps_logout_request_names_the_user_as_the_sp_knows_them_and_verifies() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let signer = dsig::Signer::new(&key.serialize_pem(), &cert.pem()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        let verify = dsig::VerifyKey(parsed.public_key().subject_public_key.data.to_vec());
        let who = Participant {
            sp: "https://sp.test/<&\"".into(),
            subject: "talsi:1".into(),
            name_id: "pairwise&<x>".into(),
            name_id_format: "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into(),
        };
        let message = OutgoingLogout {
            id: "_r1",
            idp_entity: "https://idp.test/saml/metadata",
            destination: "https://sp.test/sls",
            now: 1_800_000_000,
            not_on_or_after: 1_800_000_300,
            who: &who,
            session_index: "sid-1",
        };
        let posted = message.write(&signer, true);
        let doc = request::parse(&posted).unwrap();
        assert!(dsig::verify_enveloped(doc.root_element(), std::slice::from_ref(&verify)).unwrap());
        let req = request::logout_request(doc.root_element()).unwrap();
        assert_eq!(req.name_id, who.name_id);
        assert_eq!(req.session_indexes, ["sid-1"]);
        assert_eq!(
            req.common.destination.as_deref(),
            Some("https://sp.test/sls")
        );
        let name_id = doc
            .descendants()
            .find(|n| n.has_tag_name((NS_ASSERTION, "NameID")))
            .unwrap();
        assert_eq!(name_id.attribute("SPNameQualifier"), Some(who.sp.as_str()));
        // Changed after signing: refused.
        let changed = posted.replace("sid-1", "sid-2");
        let doc = request::parse(&changed).unwrap();
        assert!(dsig::verify_enveloped(doc.root_element(), &[verify]).is_err());
        // For the Redirect binding the query is signed instead.
        assert!(!message.write(&signer, false).contains("Signature"));
    }
}
