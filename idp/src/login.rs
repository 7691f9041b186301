//! The sign-in flow, free of HTTP: directory authentication behind the brute-force guard,
//! then the second factor when the user's roles (or their own enrolment) call for it, then
//! a fresh SSO session. Every attempt, and every lock, unlock and logout, is appended to
//! the audit log and durable before the caller gets its answer.

use crate::IdpError;
use crate::directory::{AuthFailure, Directories, DirectoryUser};
use crate::mfa::{Mfa, MfaError};
use crate::session::{Session, SessionData, Sessions, new_token};
use crate::throttle::{LockChange, Outcome, Refusal, Throttle};
use crate::ui::Text;
use kopa_config::Secret;
use kopa_core::Clock;
use kopa_store::audit::{AuditEvent, AuditLog, Category, Outcome as EventOutcome};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// How long the step between password and second factor may take.
const PENDING_TTL_MS: u64 = 5 * 60 * 1000;
/// Wrong codes allowed per password sign-in before it must start over.
const MFA_ATTEMPTS: u32 = 5;
/// Longest username accepted at all.
const MAX_USERNAME: usize = 256;

/// One password sign-in attempt.
#[derive(Debug)]
pub struct Attempt {
    /// What the user typed (`name@domain` or a name with an institution chosen).
    pub username: String,
    /// The password; never logged, never stored.
    pub password: Secret,
    /// Directory chosen in the picker, if any.
    pub institution: Option<String>,
    /// Source address.
    pub ip: IpAddr,
    /// User agent.
    pub user_agent: String,
}

/// Why sign-in did not go through, as the user may learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Unknown user or wrong password: deliberately the same to the user.
    BadCredentials,
    /// The directory could not be reached.
    Unavailable,
    /// The account is locked (here or in its directory).
    Locked,
    /// Too many attempts just now.
    Throttled,
    /// The input cannot be a login (unknown domain, control characters…).
    InvalidInput,
    /// The second factor was wrong.
    MfaFailed,
    /// The step between password and second factor expired or never existed.
    Expired,
}

impl Refused {
    /// The message shown.
    pub fn text(self) -> Text {
        match self {
            Refused::BadCredentials => Text::BadCredentials,
            Refused::Unavailable => Text::Unavailable,
            Refused::Locked => Text::Locked,
            Refused::Throttled => Text::Throttled,
            Refused::InvalidInput => Text::InvalidInput,
            Refused::MfaFailed => Text::MfaFailed,
            Refused::Expired => Text::FormExpired,
        }
    }

    /// The HTTP status of the page that says so.
    pub fn status(self) -> u16 {
        match self {
            Refused::Unavailable => 503,
            Refused::Throttled | Refused::Locked => 429,
            Refused::InvalidInput => 400,
            Refused::BadCredentials | Refused::MfaFailed | Refused::Expired => 401,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refused::BadCredentials => "wrong_password",
            Refused::Unavailable => "directory_unavailable",
            Refused::Locked => "locked",
            Refused::Throttled => "throttled",
            Refused::InvalidInput => "invalid_input",
            Refused::MfaFailed => "mfa_failed",
            Refused::Expired => "expired",
        }
    }
}

/// Where a successful step leads.
#[derive(Debug)]
pub enum Step {
    /// Signed in: set this token as the session cookie.
    SignedIn {
        /// Cookie value.
        token: String,
        /// The new session.
        session: Box<Session>,
    },
    /// Password accepted; a second factor is needed. Keep `pending` in a cookie.
    Mfa {
        /// Pending-step cookie value.
        pending: String,
    },
    /// Password accepted; the user must first enrol a second factor.
    Enrol {
        /// Pending-step cookie value.
        pending: String,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    user: DirectoryUser,
    typed: String,
    created_ms: u64,
    attempts: u32,
    enrolled: bool,
    /// The enrolment begun for this sign-in: shown again (not replaced) until confirmed.
    enrolment: Option<crate::mfa::Enrolment>,
}

impl Pending {
    /// A failed second-factor event about this user (callers mark successes).
    fn event(&self, category: Category, action: &str, ip: IpAddr, user_agent: &str) -> AuditEvent {
        let mut e = event(category, action, EventOutcome::Failure, ip, user_agent);
        e.user_resolved = Some(self.user.qualified_subject());
        e.tenant = Some(self.user.tenant.clone());
        e.method = Some("totp".into());
        e
    }
}

/// The sign-in service.
#[derive(Debug, Clone)]
pub struct Login {
    directories: Arc<Directories>,
    sessions: Sessions,
    throttle: Throttle,
    mfa: Mfa,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    /// Told of every session that logout or an administrator ended (the OIDC provider
    /// listens, for back-channel logout and token revocation).
    ended: Option<tokio::sync::mpsc::UnboundedSender<EndedNotice>>,
    /// Tells the session's SAML service providers through the browser when the user logs
    /// out at the IdP.
    front_channel: OnceLock<Arc<dyn FrontChannelLogout>>,
}

/// A protocol whose applications learn of a logout through the user's browser.
pub trait FrontChannelLogout: Send + Sync + std::fmt::Debug {
    /// Starts telling the applications of the `ended` session; the URL to send the browser
    /// to, or `None` when there is nobody to tell. `then` is where the browser goes at the
    /// end (else the signed-out page).
    fn begin(&self, ended: LoggedOut, then: Option<String>) -> Option<String>;
}

/// What the listener of ended sessions gets: the session, and where to report once the
/// applications that learn of it in the background (OIDC back-channel logout) were told.
#[derive(Debug)]
pub struct EndedNotice {
    /// The session that ended.
    pub session: EndedSession,
    /// `true` when every such application confirmed.
    pub report: tokio::sync::oneshot::Sender<bool>,
}

/// The listener's coming report on one ended session (see [`EndedNotice`]).
#[derive(Debug, Default)]
pub struct BackChannelReport(Option<tokio::sync::oneshot::Receiver<bool>>);

impl BackChannelReport {
    /// Whether every back-channel application confirmed the logout within `limit`
    /// (trivially so when nobody listens).
    pub async fn all_told(self, limit: std::time::Duration) -> bool {
        match self.0 {
            None => true,
            Some(rx) => matches!(tokio::time::timeout(limit, rx).await, Ok(Ok(true))),
        }
    }
}

/// A session the user's own logout ended.
#[derive(Debug)]
pub struct LoggedOut {
    /// The session as it was.
    pub session: Session,
    /// How telling its back-channel applications went.
    pub back_channel: BackChannelReport,
}

/// A single sign-on session that was ended on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    /// The session id (`sid`).
    pub id: String,
    /// Whose it was.
    pub subject: String,
}

fn event(
    category: Category,
    action: &str,
    outcome: EventOutcome,
    ip: IpAddr,
    user_agent: &str,
) -> AuditEvent {
    let mut e = AuditEvent::new(category, action, outcome);
    e.source_ip = Some(ip);
    e.user_agent = Some(user_agent.chars().take(512).collect());
    e
}

impl Login {
    /// Wires the flow together.
    pub fn new(
        directories: Arc<Directories>,
        sessions: Sessions,
        throttle: Throttle,
        mfa: Mfa,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            directories,
            sessions,
            throttle,
            mfa,
            audit,
            clock,
            pending: Arc::default(),
            ended: None,
            front_channel: OnceLock::new(),
        }
    }

    /// Sends every session that logout or an administrator ends to `listener`.
    pub fn notify_ended(&mut self, listener: tokio::sync::mpsc::UnboundedSender<EndedNotice>) {
        self.ended = Some(listener);
    }

    /// Sets the front-channel logout of the SAML provider (once, at start).
    pub fn set_front_channel(&self, fc: Arc<dyn FrontChannelLogout>) {
        if self.front_channel.set(fc).is_err() {
            tracing::warn!("the front-channel logout was already set");
        }
    }

    /// Where to send the browser after the user's own logout `ended` a session, so that
    /// its front-channel applications learn of it; `None` when there is nobody to tell.
    pub fn front_channel_logout(&self, ended: LoggedOut, then: Option<String>) -> Option<String> {
        self.front_channel.get()?.begin(ended, then)
    }

    fn tell_ended(&self, id: &str, subject: &str) -> BackChannelReport {
        let Some(tx) = &self.ended else {
            return BackChannelReport::default();
        };
        let (report, rx) = tokio::sync::oneshot::channel();
        let notice = EndedNotice {
            session: EndedSession {
                id: id.to_owned(),
                subject: subject.to_owned(),
            },
            report,
        };
        // The listener lives as long as the appliance; a send fails only at shutdown.
        match tx.send(notice) {
            Ok(()) => BackChannelReport(Some(rx)),
            Err(_) => BackChannelReport::default(),
        }
    }

    /// Sweeps expired SSO sessions every `every` until the appliance stops.
    pub fn spawn_session_sweeper(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        crate::sweep::every(self, every, |me| async move {
            let mut removed = 0;
            loop {
                match me.sessions.purge_expired(crate::session::PURGE_CHUNK).await {
                    Ok(n) => {
                        removed += n;
                        if n < crate::session::PURGE_CHUNK {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sweeping SSO sessions failed");
                        break;
                    }
                }
            }
            if removed > 0 {
                tracing::info!(removed, "expired SSO sessions removed");
            }
        })
    }

    /// The session store (for the pages and the admin API).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The brute-force guard (for the admin API).
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// The directories (for the institution picker).
    pub fn directories(&self) -> &Directories {
        &self.directories
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Which directory a login goes to: the institution picked (then `name@domain` must
    /// belong to it), else the domain of `name@domain`, else — a bare name — the local
    /// accounts (the break-glass path).
    fn pick_directory(
        &self,
        typed: &str,
        institution: Option<&str>,
    ) -> Option<(Arc<dyn crate::directory::Directory>, String)> {
        match institution.filter(|i| !i.is_empty()) {
            Some(id) => {
                let directory = self.directories.get(id)?;
                if typed.contains('@') {
                    let (resolved, name) = self.directories.resolve(typed).ok()?;
                    (resolved.id() == directory.id()).then_some((directory, name))
                } else {
                    Some((directory, typed.to_owned()))
                }
            }
            None if typed.contains('@') => self.directories.resolve(typed).ok(),
            None => {
                let local = self
                    .directories
                    .iter()
                    .find(|d| d.info().kind == kopa_config::DirectoryKind::Local)?
                    .clone();
                Some((local, typed.to_owned()))
            }
        }
    }

    async fn record(&self, e: AuditEvent) -> Result<(), IdpError> {
        self.audit
            .append(e)
            .await
            .map(|_| ())
            .map_err(IdpError::Audit)
    }

    /// Checks a password and decides the next step.
    pub async fn password(&self, a: Attempt) -> Result<Result<Step, Refused>, IdpError> {
        let typed: String = a.username.trim().chars().take(MAX_USERNAME).collect();
        let mut ev = event(
            Category::Authentication,
            "login",
            EventOutcome::Failure,
            a.ip,
            &a.user_agent,
        );
        ev.user_typed = Some(typed.clone());
        ev.method = Some("password".into());

        let Some((directory, login)) = self.pick_directory(&typed, a.institution.as_deref()) else {
            ev.reason = Some(Refused::InvalidInput.reason().into());
            self.record(ev).await?;
            return Ok(Err(Refused::InvalidInput));
        };
        ev.tenant = Some(directory.tenant().clone());
        ev.details
            .insert("directory".into(), directory.id().to_owned());
        let account_key = format!("{}:{}", directory.id(), login.to_lowercase());

        let ticket = match self.throttle.admit(&account_key, a.ip) {
            Ok(t) => t,
            Err(refusal) => {
                let refused = match refusal {
                    Refusal::Locked { .. } => Refused::Locked,
                    Refusal::Throttled { .. } => Refused::Throttled,
                };
                ev.reason = Some(refused.reason().into());
                self.record(ev).await?;
                return Ok(Err(refused));
            }
        };
        let result = directory.authenticate(&login, &a.password).await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(AuthFailure::UnknownUser | AuthFailure::WrongPassword) => Outcome::Failure,
            Err(_) => Outcome::Neutral,
        };
        let change = self.throttle.finish(ticket, outcome).await?;
        self.record_lock_change(change, &ev).await?;

        let user = match result {
            Ok(user) => user,
            Err(failure) => {
                let (refused, reason) = match failure {
                    AuthFailure::UnknownUser => (Refused::BadCredentials, "unknown_user"),
                    AuthFailure::WrongPassword => (Refused::BadCredentials, "wrong_password"),
                    // The directory may report these before checking the password, so an
                    // anonymous caller must not learn them: the page says only "wrong".
                    AuthFailure::Disabled => (Refused::BadCredentials, "disabled"),
                    AuthFailure::Locked => (Refused::BadCredentials, "locked_in_directory"),
                    AuthFailure::Unavailable => (Refused::Unavailable, "directory_unavailable"),
                    AuthFailure::InvalidInput => (Refused::InvalidInput, "invalid_input"),
                };
                ev.reason = Some(reason.into());
                self.record(ev).await?;
                return Ok(Err(refused));
            }
        };

        let subject = user.qualified_subject();
        ev.user_resolved = Some(subject.clone());
        let enrolled = self.mfa.is_enrolled(&subject);
        if enrolled || self.mfa.required_for(&user.roles) {
            // The password step succeeded; the sign-in does not until the second factor.
            ev.outcome = EventOutcome::Success;
            ev.action = "login-password".into();
            self.record(ev).await?;
            let pending = new_token();
            let p = Pending {
                user,
                typed,
                created_ms: self.clock.now_millis(),
                attempts: 0,
                enrolled,
                enrolment: None,
            };
            self.pending_map().insert(pending.clone(), p);
            return Ok(Ok(if enrolled {
                Step::Mfa { pending }
            } else {
                Step::Enrol { pending }
            }));
        }
        let (token, session) = self.sign_in(user, vec!["pwd".into()], ev).await?;
        Ok(Ok(Step::SignedIn {
            token,
            session: Box::new(session),
        }))
    }

    async fn record_lock_change(
        &self,
        change: Option<LockChange>,
        base: &AuditEvent,
    ) -> Result<(), IdpError> {
        let Some(change) = change else { return Ok(()) };
        let mut e = base.clone();
        e.category = Category::Iam;
        e.outcome = EventOutcome::Success;
        e.reason = None;
        match change {
            LockChange::Locked { account, until_ms } => {
                e.action = "account-locked".into();
                e.details.insert("account".into(), account);
                e.details.insert("until_ms".into(), until_ms.to_string());
            }
            LockChange::Expired { account } => {
                e.action = "account-unlocked".into();
                e.details.insert("account".into(), account);
                e.details.insert("by".into(), "expiry".into());
            }
        }
        self.record(e).await
    }

    fn pending_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        let mut map = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.clock.now_millis();
        map.retain(|_, p| now.saturating_sub(p.created_ms) < PENDING_TTL_MS);
        map
    }

    /// Starts the session and records the successful sign-in `ev` at the same time (both
    /// durable before the caller answers). Should the session fail to store after the
    /// success was recorded, a failure record follows, so the trail never ends on a
    /// sign-in that did not happen.
    async fn sign_in(
        &self,
        user: DirectoryUser,
        amr: Vec<String>,
        mut ev: AuditEvent,
    ) -> Result<(String, Session), IdpError> {
        let data = SessionData {
            subject: user.qualified_subject(),
            login: user.login.clone(),
            display_name: user.display_name.clone(),
            tenant: Some(user.tenant.clone()),
            directory: user.directory_id.clone(),
            roles: user.roles.clone(),
            groups: user.groups.clone(),
            amr,
            email: user.mail.clone(),
            given_name: user.given_name.clone(),
            family_name: user.surname.clone(),
            ip: ev.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            user_agent: ev.user_agent.clone().unwrap_or_default(),
        };
        // The monitor counts privileged sign-ins, and which of them used a second factor.
        if !data.roles.is_empty() {
            let roles: Vec<&str> = data.roles.iter().map(|r| r.as_str()).collect();
            ev.details.insert("roles".into(), roles.join(" "));
        }
        ev.details.insert("amr".into(), data.amr.join(" "));
        let new = self.sessions.prepare(data);
        ev.outcome = EventOutcome::Success;
        ev.reason = None;
        ev.session_id = Some(new.session.id.clone());
        let failure = {
            let mut f = ev.clone();
            f.outcome = EventOutcome::Failure;
            f.reason = Some("session_store_failed".into());
            f
        };
        let (stored, recorded) = tokio::join!(self.sessions.persist(&new), self.record(ev));
        match (stored, recorded) {
            (Ok(()), Ok(())) => Ok((new.token, new.session)),
            (Err(e), Ok(())) => {
                self.record(failure).await?;
                Err(e.into())
            }
            (_, Err(e)) => Err(e),
        }
    }

    /// The live password step `pending`, if it is at the stage `enrolled` says (second
    /// factor to check, or to set up first).
    fn pending_at(&self, pending: &str, enrolled: bool) -> Option<Pending> {
        self.pending_map()
            .get(pending)
            .filter(|p| p.enrolled == enrolled)
            .cloned()
    }

    /// Whether `pending` is a live password step that still needs enrolment.
    pub fn pending_needs_enrolment(&self, pending: &str) -> Option<bool> {
        self.pending_map().get(pending).map(|p| !p.enrolled)
    }

    /// Checks the second factor of a pending sign-in.
    pub async fn second_factor(
        &self,
        pending: &str,
        code: &str,
        ip: IpAddr,
        user_agent: &str,
    ) -> Result<Result<Step, Refused>, IdpError> {
        let Some(p) = self.pending_at(pending, true) else {
            return Ok(Err(Refused::Expired));
        };
        let subject = p.user.qualified_subject();
        let mut ev = p.event(Category::Authentication, "login", ip, user_agent);
        ev.user_typed = Some(p.typed.clone());
        match self.mfa.verify(&subject, code).await {
            Ok(factor) => {
                self.pending_map().remove(pending);
                let factor = match factor {
                    crate::mfa::Factor::Totp => "totp".to_owned(),
                    crate::mfa::Factor::RecoveryCode { remaining } => {
                        ev.details
                            .insert("recovery_codes_left".into(), remaining.to_string());
                        "recovery_code".to_owned()
                    }
                };
                ev.details.insert("factor".into(), factor);
                let (token, session) = self
                    .sign_in(p.user, vec!["pwd".into(), "otp".into(), "mfa".into()], ev)
                    .await?;
                Ok(Ok(Step::SignedIn {
                    token,
                    session: Box::new(session),
                }))
            }
            Err(e) if !e.is_failed_attempt() => Err(e.into()),
            Err(e) => {
                let exhausted = {
                    let mut map = self.pending_map();
                    match map.get_mut(pending) {
                        Some(entry) => {
                            entry.attempts += 1;
                            let done = entry.attempts >= MFA_ATTEMPTS;
                            if done {
                                map.remove(pending);
                            }
                            done
                        }
                        None => true,
                    }
                };
                ev.reason = Some(match e {
                    MfaError::Replayed => "mfa_replayed".into(),
                    _ => "mfa_failed".into(),
                });
                self.record(ev).await?;
                Ok(Err(if exhausted {
                    Refused::Expired
                } else {
                    Refused::MfaFailed
                }))
            }
        }
    }

    /// Starts (or restarts) enrolment for a pending sign-in that needs it.
    pub async fn begin_enrolment(
        &self,
        pending: &str,
    ) -> Result<Option<crate::mfa::Enrolment>, IdpError> {
        let Some(p) = self.pending_at(pending, false) else {
            return Ok(None);
        };
        if let Some(e) = p.enrolment {
            return Ok(Some(e));
        }
        let label = p.user.mail.clone().unwrap_or_else(|| p.user.login.clone());
        let enrolment = self
            .mfa
            .begin_enrolment(&p.user.qualified_subject(), &label)
            .await?;
        if let Some(entry) = self.pending_map().get_mut(pending) {
            entry.enrolment = Some(enrolment.clone());
        }
        Ok(Some(enrolment))
    }

    /// Confirms enrolment with a first code; signs in and returns the recovery codes.
    pub async fn confirm_enrolment(
        &self,
        pending: &str,
        code: &str,
        ip: IpAddr,
        user_agent: &str,
    ) -> Result<Result<(Step, Vec<String>), Refused>, IdpError> {
        let Some(p) = self.pending_at(pending, false) else {
            return Ok(Err(Refused::Expired));
        };
        let subject = p.user.qualified_subject();
        let mut ev = p.event(Category::Iam, "mfa-enrolled", ip, user_agent);
        match self.mfa.confirm_enrolment(&subject, code).await {
            Ok(codes) => {
                self.pending_map().remove(pending);
                ev.outcome = EventOutcome::Success;
                self.record(ev.clone()).await?;
                let mut login = ev;
                login.category = Category::Authentication;
                login.action = "login".into();
                let (token, session) = self
                    .sign_in(
                        p.user,
                        vec!["pwd".into(), "otp".into(), "mfa".into()],
                        login,
                    )
                    .await?;
                let codes = codes.codes.iter().map(|c| c.expose().to_owned()).collect();
                Ok(Ok((
                    Step::SignedIn {
                        token,
                        session: Box::new(session),
                    },
                    codes,
                )))
            }
            Err(MfaError::NoPendingEnrolment) => Ok(Err(Refused::Expired)),
            Err(e) if !e.is_failed_attempt() => Err(e.into()),
            Err(_) => {
                ev.reason = Some("mfa_failed".into());
                self.record(ev).await?;
                Ok(Err(Refused::MfaFailed))
            }
        }
    }

    /// Ends the session of `token` (logout), audited.
    pub async fn logout(
        &self,
        token: &str,
        ip: IpAddr,
        user_agent: &str,
    ) -> Result<Option<LoggedOut>, IdpError> {
        let Some(session) = self.sessions.end(token).await? else {
            return Ok(None);
        };
        self.logged_out(session, ip, user_agent, None)
            .await
            .map(Some)
    }

    /// Ends session `id` of `subject` because the user logged out at a service provider
    /// (SAML Single Logout, where the cookie may not come along). Returns the ended session.
    pub async fn logout_by_id(
        &self,
        subject: &str,
        id: &str,
        ip: IpAddr,
        user_agent: &str,
        method: &str,
    ) -> Result<Option<LoggedOut>, IdpError> {
        let Some(session) = self.sessions.revoke(subject, id).await? else {
            return Ok(None);
        };
        self.logged_out(session, ip, user_agent, Some(method))
            .await
            .map(Some)
    }

    /// Records a user's logout and tells the listeners the session ended.
    async fn logged_out(
        &self,
        session: Session,
        ip: IpAddr,
        user_agent: &str,
        method: Option<&str>,
    ) -> Result<LoggedOut, IdpError> {
        let mut ev = event(
            Category::Session,
            "logout",
            EventOutcome::Success,
            ip,
            user_agent,
        );
        ev.user_resolved = Some(session.data.subject.clone());
        ev.tenant = session.data.tenant.clone();
        ev.session_id = Some(session.id.clone());
        ev.method = method.map(str::to_owned);
        self.record(ev).await?;
        let back_channel = self.tell_ended(&session.id, &session.data.subject);
        Ok(LoggedOut {
            session,
            back_channel,
        })
    }

    /// An administrator's revocation of one session (`id`) or all (`None`) of `subject`.
    pub async fn revoke(
        &self,
        actor: &str,
        subject: &str,
        id: Option<&str>,
        ip: IpAddr,
    ) -> Result<Vec<String>, IdpError> {
        let ended = match id {
            Some(id) => self
                .sessions
                .revoke(subject, id)
                .await?
                .map(|s| s.id)
                .into_iter()
                .collect(),
            None => self.sessions.revoke_all(subject).await?,
        };
        let count = ended.len();
        let mut ev = event(
            Category::Session,
            "session-revoked",
            EventOutcome::Success,
            ip,
            "",
        );
        ev.user_typed = Some(actor.to_owned());
        ev.user_resolved = Some(subject.to_owned());
        ev.details.insert("count".into(), count.to_string());
        if let Some(id) = id {
            ev.session_id = Some(id.to_owned());
        }
        self.record(ev).await?;
        for id in &ended {
            // An administrator's revocation waits for nobody.
            drop(self.tell_ended(id, subject));
        }
        Ok(ended)
    }

    /// An administrator's unlock of `account` (`<directory>:<login>`).
    pub async fn unlock(&self, actor: &str, account: &str, ip: IpAddr) -> Result<bool, IdpError> {
        let was_locked = self.throttle.unlock(account).await?;
        let mut ev = event(
            Category::Iam,
            "account-unlocked",
            EventOutcome::Success,
            ip,
            "",
        );
        ev.user_typed = Some(actor.to_owned());
        ev.details.insert("account".into(), account.to_owned());
        ev.details.insert("by".into(), "administrator".into());
        ev.details
            .insert("was_locked".into(), was_locked.to_string());
        self.record(ev).await?;
        Ok(was_locked)
    }
}
