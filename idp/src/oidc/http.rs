//! HTTP routes of the OpenID Connect provider. Thin: parse, call [`Provider`], map the
//! answer to a redirect, a page or JSON with the RFC 6749 error shape.

use super::{Authorize, ClientCredentials, OAuthError, Params, Provider};
use crate::http::{
    Ctx, SESSION_COOKIE, admin, csrf_ok, csrf_token, ctx, current_session, html, json, no_store,
    origin, redirect, urlencode,
};
use crate::login::Login;
use crate::ui::pages;
use base64::Engine;
use bytes::Bytes;
use kopa_config::{ClientAuthMethod, OidcClientConfig, SigningAlg};
use kopa_core::ErrorCode;
use kopa_web::{ApiError, cookie};
use serde::Deserialize;
use std::sync::Arc;
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::{Filter, Rejection};

const BODY_LIMIT: u64 = 64 * 1024;

fn json_status(status: u16, value: &serde_json::Value) -> warp::reply::Response {
    let mut resp = json(value);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    no_store(resp)
}

fn oauth_error(e: &OAuthError) -> warp::reply::Response {
    let mut resp = json_status(
        e.status,
        &serde_json::json!({"error": e.error, "error_description": e.description}),
    );
    if e.status == 401 {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"kopa\""),
        );
    }
    resp
}

fn bearer_error(description: &str) -> warp::reply::Response {
    let mut resp = json_status(
        401,
        &serde_json::json!({"error": "invalid_token", "error_description": description}),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "Bearer realm=\"kopa\", error=\"invalid_token\", error_description=\"{description}\""
    )) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// RFC 6749 §2.3.1: the Basic credentials are form-urlencoded before base64.
fn basic_credentials(authorization: Option<&str>) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = authorization else {
        return Ok(None);
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let bad = || OAuthError::new(401, "invalid_client", "Malformed Basic credentials");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

fn credentials(
    authorization: Option<&str>,
    form: &Params,
) -> Result<ClientCredentials, OAuthError> {
    Ok(ClientCredentials {
        basic: basic_credentials(authorization)?,
        form_id: form.get("client_id").map(str::to_owned),
        form_secret: form.get("client_secret").map(str::to_owned),
    })
}

fn answer_authorize(ctx: &Ctx, answer: Authorize) -> warp::reply::Response {
    match answer {
        Authorize::Redirect(to) => no_store(redirect(&to, vec![])),
        Authorize::ErrorPage { status, message } => {
            html(status, pages::request_error(ctx.lang, &message), vec![])
        }
        Authorize::Login {
            request,
            force,
            login_hint,
        } => {
            let back = format!("/oidc/authorize/resume?request={request}");
            let mut to = format!(
                "/login?lang={}&return_to={}",
                ctx.lang.tag(),
                urlencode(&back)
            );
            if force {
                to.push_str("&reauth=1");
            }
            if let Some(h) = login_hint {
                to.push_str("&login_hint=");
                to.push_str(&urlencode(&h));
            }
            no_store(redirect(&to, vec![]))
        }
        Authorize::Consent {
            request,
            client_name,
            scopes,
        } => {
            let (csrf, set) = csrf_token(ctx);
            no_store(html(
                200,
                pages::consent(ctx.lang, &csrf, &request, &client_name, &scopes),
                set.into_iter().collect(),
            ))
        }
    }
}

async fn authorize(
    oidc: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    raw: Bytes,
) -> warp::reply::Response {
    let params = Params::parse(&raw);
    let session = current_session(&login, &ctx).await;
    let answer = oidc.authorize(&params, session, &origin(&ctx)).await;
    answer_authorize(&ctx, answer)
}

#[derive(Debug, Deserialize)]
struct ResumeQuery {
    #[serde(default)]
    request: String,
}

async fn resume(
    oidc: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    q: ResumeQuery,
) -> warp::reply::Response {
    let session = current_session(&login, &ctx).await;
    let answer = oidc.resume(&q.request, session, &origin(&ctx)).await;
    answer_authorize(&ctx, answer)
}

#[derive(Debug, Deserialize)]
struct ConsentPost {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request: String,
    #[serde(default)]
    decision: String,
}

async fn consent(
    oidc: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    form: ConsentPost,
) -> warp::reply::Response {
    if !csrf_ok(&ctx, &form.csrf) {
        return html(
            403,
            pages::request_error(ctx.lang, "The form has expired; please try again."),
            vec![],
        );
    }
    let session = current_session(&login, &ctx).await;
    let answer = oidc
        .consent(
            &form.request,
            session,
            form.decision == "allow",
            &origin(&ctx),
        )
        .await;
    answer_authorize(&ctx, answer)
}

async fn token(
    oidc: Arc<Provider>,
    ctx: Ctx,
    authorization: Option<String>,
    body: Bytes,
) -> warp::reply::Response {
    let form = Params::parse(&body);
    let creds = match credentials(authorization.as_deref(), &form) {
        Ok(c) => c,
        Err(e) => return oauth_error(&e),
    };
    match oidc.token(&form, &creds, &origin(&ctx)).await {
        Ok(body) => json_status(200, &body),
        Err(e) => oauth_error(&e),
    }
}

async fn userinfo(
    oidc: Arc<Provider>,
    authorization: Option<String>,
    body: Bytes,
) -> warp::reply::Response {
    let from_header = authorization
        .as_deref()
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::to_owned);
    let form = Params::parse(&body);
    let token = match (from_header, form.get("access_token")) {
        (Some(_), Some(_)) => return bearer_error("Send the token one way only"),
        (Some(t), None) => t,
        (None, Some(t)) => t.to_owned(),
        (None, None) => return bearer_error("No access token"),
    };
    match oidc.userinfo(token.trim()).await {
        Some(claims) => json_status(200, &claims),
        None => bearer_error("The access token is invalid, expired or revoked"),
    }
}

async fn introspect(
    oidc: Arc<Provider>,
    authorization: Option<String>,
    body: Bytes,
) -> warp::reply::Response {
    let form = Params::parse(&body);
    let result = match credentials(authorization.as_deref(), &form) {
        Ok(creds) => oidc.introspect(&form, &creds).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => json_status(200, &v),
        Err(e) => oauth_error(&e),
    }
}

async fn revoke(
    oidc: Arc<Provider>,
    ctx: Ctx,
    authorization: Option<String>,
    body: Bytes,
) -> warp::reply::Response {
    let form = Params::parse(&body);
    let result = match credentials(authorization.as_deref(), &form) {
        Ok(creds) => oidc.revoke(&form, &creds, &origin(&ctx)).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => json_status(200, &serde_json::json!({})),
        Err(e) => oauth_error(&e),
    }
}

async fn end_session(
    oidc: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    raw: Bytes,
) -> warp::reply::Response {
    let params = Params::parse(&raw);
    let request = match oidc.end_session_request(&params) {
        Ok(r) => r,
        Err(message) => return html(400, pages::request_error(ctx.lang, &message), vec![]),
    };
    let session = current_session(&login, &ctx).await;
    let done = |cookies: Vec<HeaderValue>| match &request.redirect {
        Some(to) => no_store(redirect(to, cookies)),
        None => html(200, pages::signed_out(ctx.lang, false), cookies),
    };
    let Some(session) = session else {
        return done(vec![]);
    };
    let matches = request.sid.as_deref().is_none_or(|sid| sid == session.id);
    if !request.hinted || !matches {
        // Without proof the request comes from the user's own application, ask first
        // (a cross-site link must not sign anyone out).
        let (csrf, set) = csrf_token(&ctx);
        return html(
            200,
            pages::logout_confirm(ctx.lang, &csrf),
            set.into_iter().collect(),
        );
    }
    let ended = match ctx.cookie(SESSION_COOKIE) {
        Some(token) => match login.logout(token, ctx.ip, &ctx.user_agent).await {
            Ok(ended) => ended,
            Err(e) => return crate::http::internal(&e),
        },
        None => None,
    };
    let front_channel = ended.and_then(|e| login.front_channel_logout(e, request.redirect.clone()));
    oidc.mark_ended(&session.id).await;
    let mut e = kopa_store::audit::AuditEvent::new(
        kopa_store::audit::Category::Session,
        "oidc-logout",
        kopa_store::audit::Outcome::Success,
    );
    e.client = request.client.clone();
    e.user_resolved = Some(session.data.subject.clone());
    e.tenant = session.data.tenant.clone();
    e.session_id = Some(session.id.clone());
    e.source_ip = Some(ctx.ip);
    oidc.record(e).await;
    match front_channel {
        // The session's SAML service providers first, then where the RP asked.
        Some(to) => no_store(redirect(&to, vec![cookie::clear(SESSION_COOKIE)])),
        None => done(vec![cookie::clear(SESSION_COOKIE)]),
    }
}

// ---- admin API: clients ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    client_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    token_endpoint_auth_method: ClientAuthMethod,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    signing_alg: SigningAlg,
    #[serde(default)]
    tenant: Option<String>,
}

fn platform_admin(session: &crate::session::Session) -> Result<(), ApiError> {
    crate::http::platform_admin(session, "OIDC clients")
}

async fn list_clients(
    oidc: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
) -> Result<warp::reply::Response, Rejection> {
    let caller = admin(&login, &ctx, None, false).await?;
    platform_admin(&caller)?;
    let all: Vec<_> = oidc
        .clients()
        .list()
        .iter()
        .map(|c| c.public_view())
        .collect();
    Ok(json(&serde_json::json!({"clients": all})))
}

async fn create_client(
    oidc: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    csrf: Option<String>,
    body: NewClient,
) -> Result<warp::reply::Response, Rejection> {
    let caller = admin(&login, &ctx, csrf.as_deref(), true).await?;
    platform_admin(&caller)?;
    let config = OidcClientConfig {
        name: body.name,
        auth_method: body.token_endpoint_auth_method,
        // Validation wants a file for confidential clients; the secret is generated here.
        secret_file: (body.token_endpoint_auth_method != ClientAuthMethod::None)
            .then(|| "(generated)".into()),
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        backchannel_logout_uri: body.backchannel_logout_uri,
        signing_alg: body.signing_alg,
        tenant: body.tenant,
        // Clients made through the API are third-party (users consent), with the
        // default grants and scopes unless the request names them.
        ..OidcClientConfig::new(&body.client_id)
    };
    let config = OidcClientConfig {
        grant_types: body.grant_types.unwrap_or(config.grant_types),
        scopes: body.scopes.unwrap_or(config.scopes),
        ..config
    };
    let mut problems = Vec::new();
    config.validate(0, &mut problems);
    if let Some(p) = problems.first() {
        let field = p.key.trim_start_matches("oidc_client[0].");
        return Err(ApiError::new(ErrorCode::BadRequest, format!("{field}: {}", p.message)).into());
    }
    let secret = (config.auth_method != ClientAuthMethod::None).then(crate::session::new_token);
    let mut client = super::Client::from_config(&config, secret.as_deref(), &oidc.config)
        .map_err(|m| ApiError::new(ErrorCode::BadRequest, m))?;
    client.from_config = false;
    let view = client.public_view();
    let added = oidc.clients().add(client).await.map_err(|e| {
        tracing::error!(error = %e, "storing an OIDC client failed");
        ApiError::new(ErrorCode::Unavailable, "Clients are unavailable")
    })?;
    if !added {
        return Err(ApiError::new(ErrorCode::Conflict, "That client_id is taken").into());
    }
    let mut e = kopa_store::audit::AuditEvent::new(
        kopa_store::audit::Category::Configuration,
        "oidc-client-created",
        kopa_store::audit::Outcome::Success,
    );
    e.user_resolved = Some(caller.data.subject.clone());
    e.client = view["client_id"].as_str().map(str::to_owned);
    e.source_ip = Some(ctx.ip);
    oidc.record(e).await;
    let mut out = view;
    // Shown once: only its hash is kept.
    out["client_secret"] = serde_json::json!(secret);
    let mut resp = json(&out);
    *resp.status_mut() = StatusCode::CREATED;
    Ok(no_store(resp))
}

async fn delete_client(
    id: String,
    oidc: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    csrf: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let caller = admin(&login, &ctx, csrf.as_deref(), true).await?;
    platform_admin(&caller)?;
    let removed = oidc.clients().remove(&id).await.map_err(|e| {
        tracing::error!(error = %e, "removing an OIDC client failed");
        ApiError::new(ErrorCode::Unavailable, "Clients are unavailable")
    })?;
    if !removed {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "No such client (clients from the configuration file cannot be removed here)",
        )
        .into());
    }
    let mut e = kopa_store::audit::AuditEvent::new(
        kopa_store::audit::Category::Configuration,
        "oidc-client-deleted",
        kopa_store::audit::Outcome::Success,
    );
    e.user_resolved = Some(caller.data.subject.clone());
    e.client = Some(id);
    e.source_ip = Some(ctx.ip);
    oidc.record(e).await;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Vec::new().into())
        .unwrap_or_default())
}

/// Every OIDC route.
pub fn routes(
    oidc: Arc<Provider>,
    login: Arc<Login>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let with_oidc = {
        let oidc = oidc.clone();
        move || {
            let oidc = oidc.clone();
            warp::any().map(move || oidc.clone())
        }
    };
    let with_login = move || {
        let login = login.clone();
        warp::any().map(move || login.clone())
    };
    let raw_query = || {
        warp::query::raw()
            .map(Bytes::from)
            .or(warp::any().map(Bytes::new))
            .unify()
    };
    let body = || warp::body::content_length_limit(BODY_LIMIT).and(warp::body::bytes());
    let auth = || warp::header::optional::<String>("authorization");

    let discovery = warp::path!(".well-known" / "openid-configuration")
        .and(warp::get())
        .and(with_oidc())
        .map(|o: Arc<Provider>| json(&o.discovery()));
    let jwks = warp::path!("oidc" / "jwks")
        .and(warp::get())
        .and(with_oidc())
        .map(|o: Arc<Provider>| {
            let mut r = json(&o.jwks());
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            r
        });
    let authorize_get = warp::path!("oidc" / "authorize")
        .and(warp::get())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and(raw_query())
        .then(authorize);
    let authorize_post = warp::path!("oidc" / "authorize")
        .and(warp::post())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and(body())
        .then(authorize);
    let resume_get = warp::path!("oidc" / "authorize" / "resume")
        .and(warp::get())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and(warp::query::<ResumeQuery>())
        .then(resume);
    let consent_post = warp::path!("oidc" / "authorize" / "consent")
        .and(warp::post())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and(warp::body::content_length_limit(BODY_LIMIT).and(warp::body::form()))
        .then(consent);
    let token_post = warp::path!("oidc" / "token")
        .and(warp::post())
        .and(with_oidc())
        .and(ctx())
        .and(auth())
        .and(body())
        .then(token);
    let userinfo_get = warp::path!("oidc" / "userinfo")
        .and(warp::get())
        .and(with_oidc())
        .and(auth())
        .and(warp::any().map(Bytes::new))
        .then(userinfo);
    let userinfo_post = warp::path!("oidc" / "userinfo")
        .and(warp::post())
        .and(with_oidc())
        .and(auth())
        .and(body())
        .then(userinfo);
    let introspect_post = warp::path!("oidc" / "introspect")
        .and(warp::post())
        .and(with_oidc())
        .and(auth())
        .and(body())
        .then(introspect);
    let revoke_post = warp::path!("oidc" / "revoke")
        .and(warp::post())
        .and(with_oidc())
        .and(ctx())
        .and(auth())
        .and(body())
        .then(revoke);
    let logout_get = warp::path!("oidc" / "logout")
        .and(warp::get())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and(raw_query())
        .then(end_session);
    let logout_post = warp::path!("oidc" / "logout")
        .and(warp::post())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and(body())
        .then(end_session);
    let csrf_header = || warp::header::optional::<String>("x-csrf-token");
    let clients_get = warp::path!("api" / "admin" / "oidc" / "clients")
        .and(warp::get())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and_then(list_clients);
    let clients_post = warp::path!("api" / "admin" / "oidc" / "clients")
        .and(warp::post())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and(csrf_header())
        .and(warp::body::content_length_limit(BODY_LIMIT).and(warp::body::json()))
        .and_then(create_client);
    let clients_delete = warp::path!("api" / "admin" / "oidc" / "clients" / String)
        .and(warp::delete())
        .and(with_oidc())
        .and(with_login())
        .and(ctx())
        .and(csrf_header())
        .and_then(delete_client);

    discovery
        .or(jwks)
        .unify()
        .or(authorize_get)
        .unify()
        .or(authorize_post)
        .unify()
        .or(resume_get)
        .unify()
        .or(consent_post)
        .unify()
        .or(token_post)
        .unify()
        .or(userinfo_get)
        .unify()
        .or(userinfo_post)
        .unify()
        .or(introspect_post)
        .unify()
        .or(revoke_post)
        .unify()
        .or(logout_get)
        .unify()
        .or(logout_post)
        .unify()
        .or(clients_get)
        .unify()
        .or(clients_post)
        .unify()
        .or(clients_delete)
        .unify()
        .boxed()
}
