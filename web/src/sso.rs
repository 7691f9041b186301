//! Single sign-on for Kopa's own apps (portal, monitor, VM pages): each is an OpenID
//! Connect relying party of the appliance's provider, using the authorization code flow
//! with PKCE (S256), `state` and `nonce`.
//!
//! The filter keeps an app session per browser (a `__Host-` cookie naming an in-memory
//! record). A request without one is sent to `/oidc/authorize`; the callback checks the
//! `state` against the browser's own cookie, exchanges the code, verifies the ID token
//! (signature, issuer, audience, expiry, nonce) and starts the app session. The app
//! session lives only while the provider's session (`sid`) does, so signing out anywhere
//! ends every app. App sessions are memory only: after a restart the next request simply
//! passes through the provider again, silently while its session lasts.

use crate::cookie;
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::{Filter, Rejection};

/// A boxed future, for the provider port.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the filter reaches the provider. The appliance wires it in-process; the calls are
/// those a remote relying party would make (token endpoint, JWKS, session state).
pub trait Provider: Send + Sync {
    /// The issuer identifier (also the external base URL).
    fn issuer(&self) -> String;
    /// Exchanges a code at the token endpoint as a public client; returns the token
    /// response (with `id_token`) or the OAuth error code.
    fn exchange<'a>(
        &'a self,
        client_id: &'a str,
        code: &'a str,
        verifier: &'a str,
        redirect_uri: &'a str,
    ) -> BoxFuture<'a, Result<Value, String>>;
    /// Verifies a JWS against the provider's published keys and returns its claims.
    fn verify(&self, token: &str) -> Result<Value, String>;
    /// Whether the provider's session `sid` is still alive.
    fn session_alive<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, bool>;
}

/// One of Kopa's own apps.
#[derive(Debug, Clone)]
pub struct App {
    /// Short name, also in paths and cookie names (`portal`, `monitor`, `vms`).
    pub name: &'static str,
    /// Its OIDC client id.
    pub client_id: &'static str,
}

impl App {
    /// The redirect URI path.
    pub fn callback_path(&self) -> String {
        format!("/auth/{}/callback", self.name)
    }

    fn cookie_name(&self) -> String {
        format!("__Host-kopa-app-{}", self.name)
    }

    fn state_cookie(&self) -> String {
        format!("__Host-kopa-sso-{}", self.name)
    }
}

/// The signed-in user of an app, from the ID token.
#[derive(Debug, Clone)]
pub struct AppUser {
    /// `sub`.
    pub subject: String,
    /// `name`.
    pub name: String,
    /// `tenant`.
    pub tenant: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// The provider session (`sid`).
    pub sid: String,
    /// The raw ID token, for `id_token_hint` at logout.
    pub id_token: String,
}

struct Pending {
    nonce: String,
    verifier: String,
    return_to: String,
    created: Instant,
}

struct AppSession {
    user: AppUser,
    last_seen: Instant,
}

/// App sessions and pending sign-ins of every app.
pub struct Sso {
    provider: Arc<dyn Provider>,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, AppSession>>,
    idle: Duration,
}

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

const PENDING_TTL: Duration = Duration::from_secs(600);
const MAX_ENTRIES: usize = 100_000;

fn random() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap_or_default();
    hex::encode(bytes)
}

fn hash_key(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

fn redirect(to: &str, cookies: Vec<HeaderValue>) -> warp::reply::Response {
    let mut resp = Response::new(Vec::new().into());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

fn text(status: StatusCode, message: &str) -> warp::reply::Response {
    let mut resp = Response::new(message.to_owned().into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A local path only (never another origin), as the place to return to.
fn local_path(p: &str) -> String {
    if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && p.len() <= 2048 {
        p.to_owned()
    } else {
        "/".to_owned()
    }
}

impl Sso {
    /// App sessions end after `idle_secs` without a request (and with the provider's).
    pub fn new(provider: Arc<dyn Provider>, idle_secs: u64) -> Arc<Self> {
        Arc::new(Self {
            provider,
            pending: Mutex::default(),
            sessions: Mutex::default(),
            idle: Duration::from_secs(idle_secs.max(60)),
        })
    }

    /// The user of `app` in this request, if its app session is alive.
    pub async fn user(&self, app: &App, cookies: Option<&str>) -> Option<AppUser> {
        let token = cookie::get(cookies, &app.cookie_name())?;
        let key = hash_key(token);
        let user = {
            let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let s = map.get_mut(&key)?;
            if s.last_seen.elapsed() > self.idle {
                map.remove(&key);
                return None;
            }
            s.last_seen = Instant::now();
            s.user.clone()
        };
        if self.provider.session_alive(&user.sid).await {
            Some(user)
        } else {
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            None
        }
    }

    /// Starts a sign-in for `app`, coming back to `return_to` afterwards.
    pub fn challenge(&self, app: &App, return_to: &str) -> warp::reply::Response {
        let (state, nonce, verifier) = (random(), random(), random());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()),
        );
        {
            let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, p| p.created.elapsed() < PENDING_TTL);
            if map.len() < MAX_ENTRIES {
                map.insert(
                    state.clone(),
                    Pending {
                        nonce: nonce.clone(),
                        verifier,
                        return_to: local_path(return_to),
                        created: Instant::now(),
                    },
                );
            }
        }
        let redirect_uri = format!("{}{}", self.provider.issuer(), app.callback_path());
        let to = format!(
            "/oidc/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile%20email%20roles&state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
            enc(app.client_id),
            enc(&redirect_uri),
        );
        // The state is also bound to this browser, so a code cannot be planted in
        // someone else's browser (login CSRF).
        redirect(
            &to,
            cookie::set(&app.state_cookie(), &state, Some(600))
                .into_iter()
                .collect(),
        )
    }

    /// Handles the redirect back from the provider.
    pub async fn callback(
        &self,
        app: &App,
        cookies: Option<&str>,
        query: &HashMap<String, String>,
    ) -> warp::reply::Response {
        let state = query.get("state").map(String::as_str).unwrap_or("");
        let bound = cookie::get(cookies, &app.state_cookie());
        if state.is_empty() || !bound.is_some_and(|b| cookie::secrets_match(b, state)) {
            return text(
                StatusCode::BAD_REQUEST,
                "Sign-in state does not match; please start again.",
            );
        }
        let Some(pending) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(state)
        else {
            return text(
                StatusCode::BAD_REQUEST,
                "Sign-in has expired; please start again.",
            );
        };
        let clear_state = cookie::clear(&app.state_cookie());
        if let Some(error) = query.get("error") {
            tracing::info!(app = app.name, error, "sign-in refused by the provider");
            return text(StatusCode::FORBIDDEN, "Sign-in was refused.");
        }
        if query
            .get("iss")
            .is_some_and(|i| *i != self.provider.issuer())
        {
            return text(
                StatusCode::BAD_REQUEST,
                "Sign-in answer from the wrong issuer.",
            );
        }
        let Some(code) = query.get("code") else {
            return text(StatusCode::BAD_REQUEST, "Sign-in answer without a code.");
        };
        let redirect_uri = format!("{}{}", self.provider.issuer(), app.callback_path());
        let tokens = match self
            .provider
            .exchange(app.client_id, code, &pending.verifier, &redirect_uri)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(app = app.name, error = %e, "code exchange failed");
                return text(StatusCode::BAD_GATEWAY, "Sign-in could not be completed.");
            }
        };
        let id_token = tokens["id_token"].as_str().unwrap_or("").to_owned();
        let claims = match self.check_id_token(app, &id_token, &pending.nonce) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(app = app.name, error = %e, "ID token refused");
                return text(StatusCode::BAD_GATEWAY, "Sign-in could not be verified.");
            }
        };
        let user = AppUser {
            subject: claims["sub"].as_str().unwrap_or("").to_owned(),
            name: claims["name"].as_str().unwrap_or("").to_owned(),
            tenant: claims["tenant"].as_str().map(str::to_owned),
            roles: claims["roles"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            sid: claims["sid"].as_str().unwrap_or("").to_owned(),
            id_token,
        };
        let token = random();
        {
            let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= MAX_ENTRIES {
                let idle = self.idle;
                map.retain(|_, s| s.last_seen.elapsed() <= idle);
            }
            map.insert(
                hash_key(&token),
                AppSession {
                    user,
                    last_seen: Instant::now(),
                },
            );
        }
        let mut cookies: Vec<HeaderValue> = cookie::set(&app.cookie_name(), &token, None)
            .into_iter()
            .collect();
        cookies.push(clear_state);
        redirect(&pending.return_to, cookies)
    }

    fn check_id_token(&self, app: &App, token: &str, nonce: &str) -> Result<Value, String> {
        let claims = self.provider.verify(token)?;
        if claims["iss"] != Value::String(self.provider.issuer()) {
            return Err("issuer".into());
        }
        let aud_ok = match &claims["aud"] {
            Value::String(a) => a == app.client_id,
            Value::Array(list) => list.iter().any(|a| a == app.client_id),
            _ => false,
        };
        if !aud_ok {
            return Err("audience".into());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if claims["exp"].as_u64().is_none_or(|e| e + 30 < now) {
            return Err("expired".into());
        }
        if claims["nonce"].as_str() != Some(nonce) {
            return Err("nonce".into());
        }
        if claims["sid"].as_str().is_none_or(str::is_empty) {
            return Err("no sid".into());
        }
        Ok(claims)
    }

    /// Ends the app session and sends the browser to the provider's end-session endpoint,
    /// which ends the single sign-on session (and with it every app).
    pub fn logout(&self, app: &App, cookies: Option<&str>) -> warp::reply::Response {
        let mut to = "/logout".to_owned();
        if let Some(token) = cookie::get(cookies, &app.cookie_name()) {
            let removed = self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&hash_key(token));
            if let Some(s) = removed {
                to = format!(
                    "/oidc/logout?id_token_hint={}&post_logout_redirect_uri={}",
                    enc(&s.user.id_token),
                    enc(&format!("{}/", self.provider.issuer())),
                );
            }
        }
        redirect(&to, vec![cookie::clear(&app.cookie_name())])
    }

    /// The callback and logout routes of `app`.
    pub fn routes(
        self: &Arc<Self>,
        app: App,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone + use<> {
        let (me, app2) = (self.clone(), app.clone());
        let callback = warp::path("auth")
            .and(warp::path(app.name))
            .and(warp::path("callback"))
            .and(warp::path::end())
            .and(warp::get())
            .and(cookie::request_cookies())
            .and(warp::query::<HashMap<String, String>>())
            .then(move |cookies: Option<String>, q: HashMap<String, String>| {
                let (me, app) = (me.clone(), app.clone());
                async move { me.callback(&app, cookies.as_deref(), &q).await }
            });
        let me = self.clone();
        let logout = warp::path("auth")
            .and(warp::path(app2.name))
            .and(warp::path("logout"))
            .and(warp::path::end())
            .and(warp::get().or(warp::post()).unify())
            .and(cookie::request_cookies())
            .map(move |cookies: Option<String>| me.logout(&app2, cookies.as_deref()));
        callback.or(logout).unify()
    }

    /// Guards a page: the signed-in user, or a redirect into the sign-in.
    pub fn require(
        self: &Arc<Self>,
        app: App,
    ) -> impl Filter<Extract = (Result<AppUser, warp::reply::Response>,), Error = Rejection>
    + Clone
    + use<> {
        let me = self.clone();
        cookie::request_cookies()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .then(
                move |cookies: Option<String>, path: warp::path::FullPath, query: String| {
                    let (me, app) = (me.clone(), app.clone());
                    async move {
                        match me.user(&app, cookies.as_deref()).await {
                            Some(user) => Ok(user),
                            None => {
                                let mut back = path.as_str().to_owned();
                                if !query.is_empty() {
                                    back.push('?');
                                    back.push_str(&query);
                                }
                                Err(me.challenge(&app, &back))
                            }
                        }
                    }
                },
            )
    }
}

/// Who calls an app's JSON API: the signed-in user, where from and with what.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub user: AppUser,
    /// The peer address, when the listener recorded one.
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: String,
}

/// The caller of `app`'s API, or a 401 (never a redirect: an API client cannot follow the
/// sign-in) that says where to sign in.
pub fn api_caller(
    sso: Arc<Sso>,
    app: App,
) -> impl Filter<Extract = (ApiCaller,), Error = Rejection> + Clone {
    cookie::request_cookies()
        .and(warp::ext::optional::<crate::PeerAddr>())
        .and(warp::header::optional::<String>("user-agent"))
        .and_then(
            move |cookies: Option<String>, peer: Option<crate::PeerAddr>, ua: Option<String>| {
                let (sso, app) = (sso.clone(), app.clone());
                async move {
                    let Some(user) = sso.user(&app, cookies.as_deref()).await else {
                        return Err(crate::ApiError::new(
                            kopa_core::ErrorCode::Unauthenticated,
                            "Not signed in: open / to sign in.",
                        )
                        .into_rejection());
                    };
                    Ok(ApiCaller {
                        user,
                        ip: peer.map(|p| p.0.ip()),
                        user_agent: ua.unwrap_or_default(),
                    })
                }
            },
        )
}
