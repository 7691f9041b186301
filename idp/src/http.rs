//! HTTP routes of the IdP: the login pages, `/account`, `/logout`, and the admin API for
//! sessions and lockouts. Thin: parse, check the anti-forgery token, call [`Login`], map
//! the result to a page or JSON.

use crate::IdpError;
use crate::login::{Attempt, Login, Refused, Step};
use crate::session::{Session, new_token};
use crate::ui::pages::{self, Institution, LoginForm};
use crate::ui::{Lang, STYLESHEET, Text};
use kopa_config::Secret;
use kopa_core::{ErrorCode, Role};
use kopa_web::cookie;
use kopa_web::{ApiError, PeerAddr};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::reply::Reply;
use warp::{Filter, Rejection};

/// Session cookie.
pub const SESSION_COOKIE: &str = "__Host-kopa-sid";
/// Anti-forgery double-submit cookie.
pub const CSRF_COOKIE: &str = "__Host-kopa-csrf";
/// The pending second-factor step.
pub const PENDING_COOKIE: &str = "__Host-kopa-mfa";
const FORM_LIMIT: u64 = 16 * 1024;

/// What every page handler needs from the request.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) ip: IpAddr,
    pub(crate) user_agent: String,
    cookies: Option<String>,
    pub(crate) lang: Lang,
    /// `Origin` matched the request's own authority (or was absent).
    same_origin: bool,
}

impl Ctx {
    pub(crate) fn cookie(&self, name: &str) -> Option<&str> {
        cookie::get(self.cookies.as_deref(), name)
    }
}

#[derive(Debug, Deserialize)]
struct LangQuery {
    // `lang` is read by `ctx()` for every page; only the return path is needed here.
    return_to: Option<String>,
    /// `1`: show the form even to a signed-in user (OIDC `prompt=login`, `max_age`).
    reauth: Option<String>,
    /// Pre-fills the username (OIDC `login_hint`).
    login_hint: Option<String>,
}

pub(crate) fn ctx() -> impl Filter<Extract = (Ctx,), Error = Rejection> + Clone {
    warp::ext::optional::<PeerAddr>()
        .and(warp::header::optional::<String>("user-agent"))
        .and(kopa_web::cookie::request_cookies())
        .and(warp::header::optional::<String>("accept-language"))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::host::optional())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(
            |peer: Option<PeerAddr>,
             ua: Option<String>,
             cookies: Option<String>,
             accept: Option<String>,
             origin: Option<String>,
             authority: Option<warp::host::Authority>,
             query: String| {
                let from_query = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("lang="))
                    .and_then(Lang::parse);
                let from_cookie =
                    cookie::get(cookies.as_deref(), "__Host-kopa-lang").and_then(Lang::parse);
                let lang = from_query
                    .or(from_cookie)
                    .unwrap_or_else(|| Lang::from_accept_language(accept.as_deref().unwrap_or("")));
                // Browsers send Origin on cross-site form posts; it must name us.
                let same_origin = match (origin.as_deref(), authority) {
                    (None, _) => true,
                    (Some(o), Some(a)) => o == format!("https://{a}"),
                    (Some(_), None) => false,
                };
                Ctx {
                    ip: peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip()),
                    user_agent: ua.unwrap_or_default(),
                    cookies,
                    lang,
                    same_origin,
                }
            },
        )
}

/// A public document browsers may keep for an hour (stylesheet, scripts, metadata).
pub(crate) fn cacheable(body: String, content_type: &'static str) -> warp::reply::Response {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

pub(crate) fn html(status: u16, body: String, cookies: Vec<HeaderValue>) -> warp::reply::Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// Where a request came from, for the protocol providers' audit records.
pub(crate) fn origin(ctx: &Ctx) -> crate::oidc::Origin {
    crate::oidc::Origin {
        ip: ctx.ip,
        user_agent: ctx.user_agent.clone(),
    }
}

/// Marks an identity answer as not to be cached anywhere.
pub(crate) fn no_store(mut resp: warp::reply::Response) -> warp::reply::Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

pub(crate) fn redirect(to: &str, cookies: Vec<HeaderValue>) -> warp::reply::Response {
    let mut resp = html(303, String::new(), cookies);
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A local path to return to after sign-in; anything else (other hosts, `//x`, `\x`)
/// becomes `/account`, so the form can never be used as an open redirect.
pub fn safe_return_to(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= 2048
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/account".to_owned(),
    }
}

/// The anti-forgery token of this browser, and the cookie to set when it is new.
pub(crate) fn csrf_token(ctx: &Ctx) -> (String, Option<HeaderValue>) {
    match ctx.cookie(CSRF_COOKIE) {
        Some(t) => (t.to_owned(), None),
        None => {
            let t = new_token();
            let c = cookie::set(CSRF_COOKIE, &t, None);
            (t, c)
        }
    }
}

pub(crate) fn csrf_ok(ctx: &Ctx, form_token: &str) -> bool {
    ctx.same_origin
        && ctx
            .cookie(CSRF_COOKIE)
            .is_some_and(|c| cookie::secrets_match(c, form_token))
}

pub(crate) fn internal(e: &IdpError) -> warp::reply::Response {
    tracing::error!(error = %e, "sign-in failed internally");
    kopa_web::error_response(
        ErrorCode::Unavailable,
        "Sign-in is unavailable; please try again",
    )
}

#[derive(Debug, Deserialize)]
struct LoginPost {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    institution: String,
    #[serde(default)]
    return_to: String,
}

#[derive(Debug, Deserialize)]
struct CodePost {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

#[derive(Debug, Deserialize)]
struct CsrfPost {
    #[serde(default)]
    csrf: String,
}

fn institutions(login: &Login, lang: Lang) -> Vec<Institution> {
    login
        .directories()
        .list()
        .into_iter()
        .map(|d| Institution {
            name: if lang == Lang::En {
                d.display_name_en
            } else {
                d.display_name_lv
            },
            id: d.id,
        })
        .collect()
}

struct FormState<'a> {
    username: &'a str,
    institution: Option<&'a str>,
    error: Option<Text>,
    return_to: &'a str,
}

fn login_page(
    login: &Login,
    ctx: &Ctx,
    status: u16,
    state: &FormState<'_>,
) -> warp::reply::Response {
    let (csrf, set) = csrf_token(ctx);
    let list = institutions(login, ctx.lang);
    let page = pages::login(&LoginForm {
        lang: ctx.lang,
        csrf: &csrf,
        institutions: &list,
        selected: state.institution,
        username: state.username,
        error: state.error,
        return_to: state.return_to,
    });
    html(status, page, set.into_iter().collect())
}

pub(crate) async fn current_session(login: &Login, ctx: &Ctx) -> Option<Session> {
    let token = ctx.cookie(SESSION_COOKIE)?;
    login.sessions().get(token).await.ok().flatten()
}

async fn get_login(login: Arc<Login>, ctx: Ctx, q: LangQuery) -> warp::reply::Response {
    let return_to = safe_return_to(q.return_to.as_deref());
    if q.reauth.as_deref() != Some("1") && current_session(&login, &ctx).await.is_some() {
        return redirect(&return_to, vec![]);
    }
    let hint: String = q.login_hint.unwrap_or_default().chars().take(256).collect();
    login_page(
        &login,
        &ctx,
        200,
        &FormState {
            username: &hint,
            institution: None,
            error: None,
            return_to: &return_to,
        },
    )
}

pub(crate) fn signed_in(token: &str, return_to: &str) -> warp::reply::Response {
    let cookies = [
        cookie::set(SESSION_COOKIE, token, None),
        Some(cookie::clear(PENDING_COOKIE)),
    ];
    redirect(return_to, cookies.into_iter().flatten().collect())
}

async fn post_login(login: Arc<Login>, ctx: Ctx, form: LoginPost) -> warp::reply::Response {
    let return_to = safe_return_to(Some(&form.return_to));
    let institution = Some(form.institution.as_str()).filter(|i| !i.is_empty());
    let state = |error| FormState {
        username: &form.username,
        institution,
        error: Some(error),
        return_to: &return_to,
    };
    if !csrf_ok(&ctx, &form.csrf) {
        return login_page(&login, &ctx, 403, &state(Text::FormExpired));
    }
    if form.password.is_empty() || form.username.trim().is_empty() {
        return login_page(&login, &ctx, 400, &state(Text::BadCredentials));
    }
    let attempt = Attempt {
        username: form.username.clone(),
        password: Secret::new(form.password.clone()),
        institution: institution.map(str::to_owned),
        ip: ctx.ip,
        user_agent: ctx.user_agent.clone(),
    };
    match login.password(attempt).await {
        Ok(Ok(Step::SignedIn { token, .. })) => signed_in(&token, &return_to),
        Ok(Ok(Step::Mfa { pending })) => redirect(
            &format!("/login/mfa?return_to={}", urlencode(&return_to)),
            cookie::set(PENDING_COOKIE, &pending, Some(300))
                .into_iter()
                .collect(),
        ),
        Ok(Ok(Step::Enrol { pending })) => redirect(
            &format!("/login/mfa/enrol?return_to={}", urlencode(&return_to)),
            cookie::set(PENDING_COOKIE, &pending, Some(300))
                .into_iter()
                .collect(),
        ),
        Ok(Err(refused)) => login_page(&login, &ctx, refused.status(), &state(refused.text())),
        Err(e) => internal(&e),
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn restart(ctx: &Ctx) -> warp::reply::Response {
    redirect(
        &format!("/login?lang={}", ctx.lang.tag()),
        vec![cookie::clear(PENDING_COOKIE)],
    )
}

async fn get_mfa(login: Arc<Login>, ctx: Ctx) -> warp::reply::Response {
    match ctx
        .cookie(PENDING_COOKIE)
        .and_then(|p| login.pending_needs_enrolment(p))
    {
        Some(false) => {
            let (csrf, set) = csrf_token(&ctx);
            html(
                200,
                pages::mfa(ctx.lang, &csrf, None),
                set.into_iter().collect(),
            )
        }
        _ => restart(&ctx),
    }
}

async fn post_mfa(
    login: Arc<Login>,
    ctx: Ctx,
    q: LangQuery,
    form: CodePost,
) -> warp::reply::Response {
    let Some(pending) = ctx.cookie(PENDING_COOKIE) else {
        return restart(&ctx);
    };
    let (csrf, _) = csrf_token(&ctx);
    if !csrf_ok(&ctx, &form.csrf) {
        return html(
            403,
            pages::mfa(ctx.lang, &csrf, Some(Text::FormExpired)),
            vec![],
        );
    }
    match login
        .second_factor(pending, form.code.trim(), ctx.ip, &ctx.user_agent)
        .await
    {
        Ok(Ok(Step::SignedIn { token, .. })) => {
            signed_in(&token, &safe_return_to(q.return_to.as_deref()))
        }
        Ok(Ok(_)) | Ok(Err(Refused::Expired)) => restart(&ctx),
        Ok(Err(r)) => html(
            r.status(),
            pages::mfa(ctx.lang, &csrf, Some(r.text())),
            vec![],
        ),
        Err(e) => internal(&e),
    }
}

async fn get_enrol(login: Arc<Login>, ctx: Ctx) -> warp::reply::Response {
    let Some(pending) = ctx.cookie(PENDING_COOKIE) else {
        return restart(&ctx);
    };
    match login.begin_enrolment(pending).await {
        Ok(Some(e)) => {
            let (csrf, set) = csrf_token(&ctx);
            let page = pages::enrol(ctx.lang, &csrf, e.secret_base32.expose(), &e.qr_svg, None);
            html(200, page, set.into_iter().collect())
        }
        Ok(None) => restart(&ctx),
        Err(e) => internal(&e),
    }
}

async fn post_enrol(
    login: Arc<Login>,
    ctx: Ctx,
    q: LangQuery,
    form: CodePost,
) -> warp::reply::Response {
    let Some(pending) = ctx.cookie(PENDING_COOKIE) else {
        return restart(&ctx);
    };
    if !csrf_ok(&ctx, &form.csrf) {
        return restart(&ctx);
    }
    match login
        .confirm_enrolment(pending, form.code.trim(), ctx.ip, &ctx.user_agent)
        .await
    {
        Ok(Ok((Step::SignedIn { token, .. }, codes))) => {
            let to = safe_return_to(q.return_to.as_deref());
            let cookies = [
                cookie::set(SESSION_COOKIE, &token, None),
                Some(cookie::clear(PENDING_COOKIE)),
            ];
            html(
                200,
                pages::recovery_codes(ctx.lang, &codes, &to),
                cookies.into_iter().flatten().collect(),
            )
        }
        Ok(Ok(_)) | Ok(Err(Refused::Expired)) => restart(&ctx),
        // A wrong first code: show the same secret again (enrolment stays pending).
        Ok(Err(_)) => match login.begin_enrolment(pending).await {
            Ok(Some(e)) => {
                let (csrf, _) = csrf_token(&ctx);
                let page = pages::enrol(
                    ctx.lang,
                    &csrf,
                    e.secret_base32.expose(),
                    &e.qr_svg,
                    Some(Text::MfaFailed),
                );
                html(401, page, vec![])
            }
            Ok(None) => restart(&ctx),
            Err(e) => internal(&e),
        },
        Err(e) => internal(&e),
    }
}

async fn get_account(login: Arc<Login>, ctx: Ctx) -> warp::reply::Response {
    let Some(s) = current_session(&login, &ctx).await else {
        return redirect(
            &format!("/login?lang={}&return_to=/account", ctx.lang.tag()),
            vec![],
        );
    };
    let (csrf, set) = csrf_token(&ctx);
    let roles: Vec<String> = s.data.roles.iter().map(|r| r.as_str().to_owned()).collect();
    let page = pages::account(&pages::Account {
        lang: ctx.lang,
        csrf: &csrf,
        name: &s.data.display_name,
        login: &s.data.login,
        roles: &roles,
        tenant: s.data.tenant.as_ref().map(|t| t.as_str()),
    });
    html(200, page, set.into_iter().collect())
}

async fn get_logout(ctx: Ctx) -> warp::reply::Response {
    let (csrf, set) = csrf_token(&ctx);
    html(
        200,
        pages::logout_confirm(ctx.lang, &csrf),
        set.into_iter().collect(),
    )
}

async fn post_logout(login: Arc<Login>, ctx: Ctx, form: CsrfPost) -> warp::reply::Response {
    if !csrf_ok(&ctx, &form.csrf) {
        let (csrf, _) = csrf_token(&ctx);
        return html(403, pages::logout_confirm(ctx.lang, &csrf), vec![]);
    }
    let ended = match ctx.cookie(SESSION_COOKIE) {
        Some(token) => match login.logout(token, ctx.ip, &ctx.user_agent).await {
            Ok(ended) => ended,
            Err(e) => return internal(&e),
        },
        None => None,
    };
    let clear = vec![cookie::clear(SESSION_COOKIE)];
    // The session's SAML service providers learn of it through the browser first.
    if let Some(to) = ended.and_then(|e| login.front_channel_logout(e, None)) {
        return no_store(redirect(&to, clear));
    }
    html(200, pages::signed_out(ctx.lang, false), clear)
}

// ---- admin API ----

/// The signed-in caller of an admin API call, with a role check.
pub(crate) async fn admin(
    login: &Login,
    ctx: &Ctx,
    csrf_header: Option<&str>,
    mutating: bool,
) -> Result<Session, ApiError> {
    let session = current_session(login, ctx)
        .await
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "Sign in first"))?;
    // State-changing calls must prove they come from our own pages (double submit).
    if mutating
        && !(ctx.same_origin
            && csrf_header.is_some_and(|h| {
                ctx.cookie(CSRF_COOKIE)
                    .is_some_and(|c| cookie::secrets_match(c, h))
            }))
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "Missing or wrong X-CSRF-Token",
        ));
    }
    let roles = &session.data.roles;
    if roles.contains(&Role::PlatformAdmin) || roles.contains(&Role::TenantAdmin) {
        Ok(session)
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "Requires platform_admin or tenant_admin",
        ))
    }
}

/// Whether `caller` may act on `subject`: platform admins on anyone, tenant admins only on
/// users of directories of their own tenant. Decided on the server from the subject's
/// directory, never from anything the request claims.
fn may_manage(login: &Login, caller: &Session, subject: &str) -> bool {
    if caller.data.roles.contains(&Role::PlatformAdmin) {
        return true;
    }
    let Some((directory, _)) = subject.split_once(':') else {
        return false;
    };
    let tenant = login
        .directories()
        .get(directory)
        .map(|d| d.tenant().clone());
    tenant.is_some() && tenant.as_ref() == caller.data.tenant.as_ref()
}

#[derive(Debug, Deserialize)]
struct SubjectQuery {
    subject: String,
}

#[derive(Debug, Deserialize)]
struct RevokeBody {
    subject: String,
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UnlockBody {
    account: String,
}

/// Only platform administrators manage `what` (OIDC clients, SAML service providers).
pub(crate) fn platform_admin(session: &Session, what: &str) -> Result<(), ApiError> {
    if session.data.roles.contains(&Role::PlatformAdmin) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("Only platform administrators manage {what}"),
        ))
    }
}

pub(crate) fn json(value: &serde_json::Value) -> warp::reply::Response {
    warp::reply::json(value).into_response()
}

async fn list_sessions(
    login: Arc<Login>,
    ctx: Ctx,
    q: SubjectQuery,
) -> Result<warp::reply::Response, Rejection> {
    let caller = admin(&login, &ctx, None, false).await?;
    if !may_manage(&login, &caller, &q.subject) {
        // Same answer as "no sessions": a tenant admin learns nothing about other tenants.
        return Ok(json(&serde_json::json!({"sessions": []})));
    }
    let list = login.sessions().list_for(&q.subject).await.map_err(|e| {
        tracing::error!(error = %e, "listing sessions failed");
        ApiError::new(ErrorCode::Unavailable, "Sessions are unavailable")
    })?;
    let out: Vec<_> = list
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id, "subject": s.data.subject, "login": s.data.login,
                "tenant": s.data.tenant, "roles": s.data.roles, "amr": s.data.amr,
                "created_ms": s.created_ms, "last_seen_ms": s.last_seen_ms,
                "ip": s.data.ip, "user_agent": s.data.user_agent,
            })
        })
        .collect();
    Ok(json(&serde_json::json!({"sessions": out})))
}

async fn revoke_sessions(
    login: Arc<Login>,
    ctx: Ctx,
    csrf: Option<String>,
    body: RevokeBody,
) -> Result<warp::reply::Response, Rejection> {
    let caller = admin(&login, &ctx, csrf.as_deref(), true).await?;
    if !may_manage(&login, &caller, &body.subject) {
        return Ok(json(&serde_json::json!({"revoked": 0})));
    }
    let n = login
        .revoke(
            &caller.data.subject,
            &body.subject,
            body.id.as_deref(),
            ctx.ip,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "revoking sessions failed");
            ApiError::new(ErrorCode::Unavailable, "Sessions are unavailable")
        })?;
    Ok(json(&serde_json::json!({"revoked": n.len()})))
}

async fn list_lockouts(login: Arc<Login>, ctx: Ctx) -> Result<warp::reply::Response, Rejection> {
    let caller = admin(&login, &ctx, None, false).await?;
    let locked: Vec<_> = login
        .throttle()
        .locked()
        .into_iter()
        .filter(|(account, _)| may_manage(&login, &caller, account))
        .map(|(account, until)| serde_json::json!({"account": account, "until_ms": until}))
        .collect();
    Ok(json(&serde_json::json!({"locked": locked})))
}

async fn unlock(
    login: Arc<Login>,
    ctx: Ctx,
    csrf: Option<String>,
    body: UnlockBody,
) -> Result<warp::reply::Response, Rejection> {
    let caller = admin(&login, &ctx, csrf.as_deref(), true).await?;
    if !may_manage(&login, &caller, &body.account) {
        return Err(
            ApiError::new(ErrorCode::Forbidden, "Not an account of your institution").into(),
        );
    }
    let was = login
        .unlock(&caller.data.subject, &body.account, ctx.ip)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "unlock failed");
            ApiError::new(ErrorCode::Unavailable, "Unlock is unavailable")
        })?;
    Ok(json(&serde_json::json!({"was_locked": was})))
}

fn form<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(FORM_LIMIT).and(warp::body::form())
}

fn api_json<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(FORM_LIMIT).and(warp::body::json())
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    user: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    ip: Option<IpAddr>,
    after: Option<u64>,
    limit: Option<usize>,
    order: Option<String>,
    /// `json` (default) or `csv` (a download, same columns as `kopa audit export`).
    format: Option<String>,
}

fn bad(message: impl Into<String>) -> Rejection {
    ApiError::new(ErrorCode::BadRequest, message).into_rejection()
}

/// GET `/api/audit/events`: the audit log, filtered and paginated, for security officers,
/// auditors and platform administrators. The tenant scope comes from the caller's
/// session; only platform administrators see every tenant.
async fn audit_events(
    login: Arc<Login>,
    ctx: Ctx,
    p: AuditParams,
) -> Result<warp::reply::Response, Rejection> {
    use kopa_store::audit::{AuditQuery, Order, Outcome, TenantScope};
    let session = current_session(&login, &ctx).await.ok_or_else(|| {
        ApiError::new(ErrorCode::Unauthenticated, "Sign in first").into_rejection()
    })?;
    let roles = &session.data.roles;
    let scope = if roles.contains(&Role::PlatformAdmin) {
        TenantScope::All
    } else if roles.contains(&Role::SecurityOfficer) || roles.contains(&Role::Auditor) {
        match &session.data.tenant {
            Some(t) => TenantScope::One(t.clone()),
            None => {
                return Err(ApiError::new(ErrorCode::Forbidden, "No institution").into_rejection());
            }
        }
    } else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "Requires security_officer, auditor or platform_admin",
        )
        .into_rejection());
    };
    let mut q = AuditQuery::new(scope);
    q.user = p.user.filter(|u| !u.is_empty());
    q.outcome = match p.outcome.as_deref() {
        None | Some("") => None,
        Some("success") => Some(Outcome::Success),
        Some("failure") => Some(Outcome::Failure),
        Some("unknown") => Some(Outcome::Unknown),
        Some(_) => return Err(bad("outcome must be success, failure or unknown")),
    };
    let time = |v: Option<String>, name: &str| -> Result<Option<u64>, Rejection> {
        match v.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => kopa_store::audit::parse_rfc3339_ms(&s)
                .map(Some)
                .map_err(|_| bad(format!("{name} must be an RFC 3339 time or a date"))),
        }
    };
    q.from_ms = time(p.from, "from")?;
    q.to_ms = time(p.to, "to")?;
    q.source_ip = p.ip;
    q.after_seq = p.after;
    q.limit = p.limit.unwrap_or(100);
    q.order = match p.order.as_deref() {
        None | Some("") | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(_) => return Err(bad("order must be newest or oldest")),
    };
    let page = login.audit().query(q).await.map_err(|e| match e {
        kopa_store::audit::AuditError::InvalidQuery { what } => bad(what),
        other => {
            tracing::error!(error = %other, "audit query failed");
            ApiError::new(ErrorCode::Unavailable, "The audit log is unavailable").into_rejection()
        }
    })?;
    if p.format.as_deref() == Some("csv") {
        // A download leaves the appliance: recorded like `kopa audit export`.
        let mut e = kopa_store::audit::AuditEvent::new(
            kopa_store::audit::Category::Process,
            "audit-exported",
            Outcome::Success,
        )
        .user_resolved(session.data.subject.as_str())
        .method("api")
        .detail("format", "csv")
        .detail("records", page.records.len().to_string());
        e.tenant = session.data.tenant.clone();
        login.audit().append(e).await.map_err(|e| {
            tracing::error!(error = %e, "audit export not recorded");
            ApiError::new(ErrorCode::Unavailable, "The audit log is unavailable").into_rejection()
        })?;
        let mut r = warp::reply::Response::new(kopa_store::audit::csv(&page.records).into());
        let h = r.headers_mut();
        h.insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        h.insert(
            warp::http::header::CONTENT_DISPOSITION,
            warp::http::HeaderValue::from_static("attachment; filename=\"kopa-audit.csv\""),
        );
        h.insert(
            warp::http::header::CACHE_CONTROL,
            warp::http::HeaderValue::from_static("no-store"),
        );
        return Ok(r);
    }
    if !matches!(p.format.as_deref(), None | Some("" | "json")) {
        return Err(bad("format must be json or csv"));
    }
    let records: Vec<_> = page
        .records
        .iter()
        .map(kopa_store::audit::ecs_json)
        .collect();
    Ok(json(
        &serde_json::json!({"records": records, "next_after": page.next_after_seq}),
    ))
}

/// Every IdP route.
pub fn routes(
    login: Arc<Login>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    // One shared Login: every route attempt clones only an Arc.
    let with = move || {
        let login = login.clone();
        warp::any().map(move || login.clone())
    };
    let csrf_header = || warp::header::optional::<String>("x-csrf-token");

    let css = warp::path!("static" / "kopa.css")
        .and(warp::get())
        .map(|| cacheable(STYLESHEET.into(), "text/css; charset=utf-8"));
    let login_get = warp::path!("login")
        .and(warp::get())
        .and(with())
        .and(ctx())
        .and(warp::query::<LangQuery>())
        .then(get_login);
    let login_post = warp::path!("login")
        .and(warp::post())
        .and(with())
        .and(ctx())
        .and(form())
        .then(post_login);
    let mfa_get = warp::path!("login" / "mfa")
        .and(warp::get())
        .and(with())
        .and(ctx())
        .then(get_mfa);
    let mfa_post = warp::path!("login" / "mfa")
        .and(warp::post())
        .and(with())
        .and(ctx())
        .and(warp::query::<LangQuery>())
        .and(form())
        .then(post_mfa);
    let enrol_get = warp::path!("login" / "mfa" / "enrol")
        .and(warp::get())
        .and(with())
        .and(ctx())
        .then(get_enrol);
    let enrol_post = warp::path!("login" / "mfa" / "enrol")
        .and(warp::post())
        .and(with())
        .and(ctx())
        .and(warp::query::<LangQuery>())
        .and(form())
        .then(post_enrol);
    let account = warp::path!("account")
        .and(warp::get())
        .and(with())
        .and(ctx())
        .then(get_account);
    let logout_get = warp::path!("logout")
        .and(warp::get())
        .and(ctx())
        .then(get_logout);
    let logout_post = warp::path!("logout")
        .and(warp::post())
        .and(with())
        .and(ctx())
        .and(form())
        .then(post_logout);

    let sessions_get = warp::path!("api" / "admin" / "sessions")
        .and(warp::get())
        .and(with())
        .and(ctx())
        .and(warp::query::<SubjectQuery>())
        .and_then(list_sessions);
    let sessions_revoke = warp::path!("api" / "admin" / "sessions" / "revoke")
        .and(warp::post())
        .and(with())
        .and(ctx())
        .and(csrf_header())
        .and(api_json())
        .and_then(revoke_sessions);
    let lockouts_get = warp::path!("api" / "admin" / "lockouts")
        .and(warp::get())
        .and(with())
        .and(ctx())
        .and_then(list_lockouts);
    let lockouts_unlock = warp::path!("api" / "admin" / "lockouts" / "unlock")
        .and(warp::post())
        .and(with())
        .and(ctx())
        .and(csrf_header())
        .and(api_json())
        .and_then(unlock);

    let audit_get = warp::path!("api" / "audit" / "events")
        .and(warp::get())
        .and(with())
        .and(ctx())
        .and(warp::query::<AuditParams>())
        .and_then(audit_events);

    css.or(login_get)
        .unify()
        .or(login_post)
        .unify()
        .or(mfa_get)
        .unify()
        .or(mfa_post)
        .unify()
        .or(enrol_get)
        .unify()
        .or(enrol_post)
        .unify()
        .or(account)
        .unify()
        .or(logout_get)
        .unify()
        .or(logout_post)
        .unify()
        .or(sessions_get)
        .unify()
        .or(sessions_revoke)
        .unify()
        .or(lockouts_get)
        .unify()
        .or(lockouts_unlock)
        .unify()
        .or(audit_get)
        .unify()
        // Boxed: the combined filter type is deep enough to exhaust the compiler's
        // recursion limit in optimised builds.
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_is_always_local() {
        assert_eq!(
            safe_return_to(Some("/portal/cases?id=1")),
            "/portal/cases?id=1"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "javascript:alert(1)",
            "",
            "/a\nb",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/account", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/account");
    }
}
