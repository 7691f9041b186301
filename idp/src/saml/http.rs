//! HTTP routes of the SAML identity provider. Thin: decode the binding, call
//! [`Provider`], map the answer to a page, a redirect to sign-in, or the auto-posting form.

use super::admin;
use super::request::{self, Incoming};
use super::{Answer, Provider};
use crate::http::{
    Ctx, cacheable, ctx, current_session, html, no_store, origin, redirect, urlencode,
};
use crate::login::Login;
use crate::ui::pages;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use warp::http::{HeaderValue, header};
use warp::{Filter, Rejection};

const BODY_LIMIT: u64 = 256 * 1024;
/// A registration carries a whole metadata document.
const ADMIN_BODY_LIMIT: u64 = 1024 * 1024;
const AUTOPOST_JS: &str = "document.getElementById('saml-post').submit();\n";
/// The cookie that ties a Single Logout run to the browser showing its page.
const SLO_COOKIE: &str = "__Host-kopa-slo";
/// Single Logout, on the logout page: go on once every frame reported its provider's
/// answer, or when the wait runs out. In a frame's step page: report to the logout page,
/// or go on when shown on its own.
const LOGOUT_JS: &str = r#"(function () {
  var page = document.getElementById('slo-page');
  if (page) {
    // This script runs before the frames below exist: they are looked up when needed.
    var next = page.dataset.next, run = page.dataset.run, seen = {}, done = 0;
    var frames = function () { return document.querySelectorAll('iframe[data-n]'); };
    var go = function () { window.location.replace(next); };
    var timer = window.setTimeout(go, Number(page.dataset.wait) * 1000);
    document.addEventListener('DOMContentLoaded', function () {
      if (frames().length === 0) { window.clearTimeout(timer); go(); }
    });
    window.addEventListener('message', function (e) {
      // Only our own step pages, in this page's own frames, for this run.
      if (e.origin !== window.location.origin || typeof e.data !== 'string') return;
      var all = frames(), n = null;
      for (var i = 0; i < all.length; i++) {
        if (all[i].contentWindow === e.source) n = all[i].dataset.n;
      }
      if (n === null || e.data !== 'kopa-slo:' + run + ':' + n || seen[n]) return;
      seen[n] = true;
      done += 1;
      if (done >= all.length) { window.clearTimeout(timer); go(); }
    });
    return;
  }
  var step = document.getElementById('slo-step');
  if (!step) return;
  if (window.parent !== window) {
    var link = document.querySelector('a[target=_top]');
    if (link) link.hidden = true;
    window.parent.postMessage(
      'kopa-slo:' + step.dataset.run + ':' + step.dataset.n, window.location.origin);
  } else {
    window.location.replace(step.dataset.next);
  }
})();
"#;

/// The scheme, host and port of `url`, for the page's `form-action`.
fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let origin = u.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Sets the page's Content-Security-Policy.
fn with_csp(mut resp: warp::reply::Response, csp: &str) -> warp::reply::Response {
    if let Ok(v) = HeaderValue::from_str(csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// The CSP of a page that posts a form to `action`; `framed` when it is shown in a frame
/// of the IdP's own logout page.
fn post_csp(action: &str, framed: bool) -> String {
    let form_action = origin_of(action).unwrap_or_else(|| "'none'".into());
    let ancestors = if framed { "'self'" } else { "'none'" };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action {form_action}; base-uri 'none'; object-src 'none'; frame-ancestors {ancestors}"
    )
}

/// The CSP of what a logout page's frame shows: only the IdP's logout page may frame it.
const FRAMED_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; form-action 'none'; base-uri 'none'; object-src 'none'; frame-ancestors 'self'";

fn answer(ctx: &Ctx, answer: Answer) -> warp::reply::Response {
    answer_in(ctx, answer, false)
}

/// Maps an answer to a response; `framed` when it is shown in a frame of the logout page.
fn answer_in(ctx: &Ctx, answer: Answer, framed: bool) -> warp::reply::Response {
    match answer {
        Answer::Redirect(to) => no_store(redirect(&to, vec![])),
        Answer::ErrorPage { status, message } => no_store(html(
            status,
            pages::request_error(ctx.lang, &message),
            vec![],
        )),
        Answer::Login { request, force } => {
            let back = format!("/saml/sso/resume?request={request}");
            let mut to = format!(
                "/login?lang={}&return_to={}",
                ctx.lang.tag(),
                urlencode(&back)
            );
            if force {
                to.push_str("&reauth=1");
            }
            no_store(redirect(&to, vec![]))
        }
        Answer::SignedOut { partial } => {
            no_store(html(200, pages::signed_out(ctx.lang, partial), vec![]))
        }
        Answer::LogoutPage(page) => {
            // The browser's claim on this logout (frames and finish answer only it).
            let cookies = page
                .browser
                .as_deref()
                .and_then(|b| kopa_web::cookie::set(SLO_COOKIE, b, Some(600)))
                .into_iter()
                .collect();
            let resp = no_store(html(
                200,
                pages::saml_logout(ctx.lang, &page.run, &page.providers, page.wait_secs),
                cookies,
            ));
            // The frames start at the IdP and are sent on to the providers' endpoints,
            // whose logout may pass through other pages of theirs: any https origin, and
            // the providers' own plain-http (loopback) ones. The frames are sandboxed.
            let csp = format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 frame-src 'self' https: {}; form-action 'self'; base-uri 'none'; \
                 object-src 'none'; frame-ancestors 'none'",
                page.origins.join(" ")
            );
            with_csp(resp, &csp)
        }
        Answer::LogoutStep { run, n, sp, ok } => {
            let resp = no_store(html(
                200,
                pages::saml_logout_step(ctx.lang, &run, n, &sp, ok),
                vec![],
            ));
            with_csp(resp, FRAMED_CSP)
        }
        Answer::Post {
            action,
            field,
            message_b64,
            relay_state,
        } => {
            let mut fields = vec![(field, message_b64.as_str())];
            if let Some(r) = &relay_state {
                fields.push(("RelayState", r.as_str()));
            }
            let resp = no_store(html(
                200,
                pages::saml_post(ctx.lang, &action, &fields),
                vec![],
            ));
            with_csp(resp, &post_csp(&action, framed))
        }
    }
}

async fn sso_redirect(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    raw: String,
) -> warp::reply::Response {
    let incoming = request::from_redirect(&raw, "SAMLRequest");
    handle(saml, login, ctx, Endpoint::Sso, incoming).await
}

async fn sso_post(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    body: Bytes,
) -> warp::reply::Response {
    handle(
        saml,
        login,
        ctx,
        Endpoint::Sso,
        posted(&body, "SAMLRequest"),
    )
    .await
}

/// `field` (`SAMLRequest` or `SAMLResponse`) and `RelayState` of a POST-binding form.
fn posted(body: &[u8], field: &str) -> Result<Incoming, super::SigError> {
    let mut message = None;
    let mut relay = None;
    let mut repeated = false;
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            k if k == field => &mut message,
            "RelayState" => &mut relay,
            _ => continue,
        };
        repeated |= slot.replace(v.into_owned()).is_some();
    }
    if repeated {
        return Err(super::SigError("A form field is repeated".into()));
    }
    request::from_post(message.as_deref(), relay.as_deref())
}

/// Which message a logout-endpoint request carries: a service provider's `SAMLRequest`,
/// or the `SAMLResponse` of one the IdP told to log out.
fn logout_field(pairs: &[u8]) -> &'static str {
    let answer = url::form_urlencoded::parse(pairs).any(|(k, _)| k == "SAMLResponse");
    if answer {
        "SAMLResponse"
    } else {
        "SAMLRequest"
    }
}

/// What arrived at `/saml/sso` (`Sso`) or `/saml/slo` (`Slo`, with whether it is a
/// `SAMLResponse`), decoded from its binding.
enum Endpoint {
    Sso,
    Slo { is_response: bool },
}

async fn handle(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    endpoint: Endpoint,
    incoming: Result<Incoming, super::SigError>,
) -> warp::reply::Response {
    let origin = origin(&ctx);
    let result = match incoming {
        Ok(incoming) => {
            let session = current_session(&login, &ctx).await;
            match endpoint {
                Endpoint::Sso => saml.sso(incoming, session, &origin).await,
                Endpoint::Slo { is_response } => {
                    saml.slo(incoming, is_response, session, &origin, &login)
                        .await
                }
            }
        }
        Err(e) => saml.refuse("", &origin, "malformed", 400, e.0).await,
    };
    answer(&ctx, result)
}

#[derive(Debug, Deserialize)]
struct ResumeQuery {
    #[serde(default)]
    request: String,
}

async fn resume(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    q: ResumeQuery,
) -> warp::reply::Response {
    let session = current_session(&login, &ctx).await;
    let result = saml.resume(&q.request, session, &origin(&ctx)).await;
    answer(&ctx, result)
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    #[serde(default)]
    run: String,
    #[serde(default)]
    n: usize,
}

#[derive(Debug, Deserialize)]
struct InitQuery {
    #[serde(default)]
    sp: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn initiate(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    q: InitQuery,
) -> warp::reply::Response {
    let session = current_session(&login, &ctx).await;
    let result = saml
        .initiate(&q.sp, q.relay_state, session, &origin(&ctx))
        .await;
    answer(&ctx, result)
}

/// A script of the IdP's own pages.
fn script(body: &'static str) -> warp::reply::Response {
    cacheable(body.into(), "text/javascript; charset=utf-8")
}

/// Every SAML route.
pub fn routes(
    saml: Arc<Provider>,
    login: Arc<Login>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let admin = admin_routes(saml.clone(), login.clone());
    let with_saml = move || {
        let saml = saml.clone();
        warp::any().map(move || saml.clone())
    };
    let with_login = move || {
        let login = login.clone();
        warp::any().map(move || login.clone())
    };
    let metadata = warp::path!("saml" / "metadata")
        .and(warp::get())
        .and(with_saml())
        .map(|s: Arc<Provider>| cacheable(s.metadata(), "application/samlmetadata+xml"));
    let autopost = warp::path!("saml" / "autopost.js")
        .and(warp::get())
        .map(|| script(AUTOPOST_JS));
    let sso_get = warp::path!("saml" / "sso")
        .and(warp::get())
        .and(with_saml())
        .and(with_login())
        .and(ctx())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(sso_redirect);
    let sso_post = warp::path!("saml" / "sso")
        .and(warp::post())
        .and(with_saml())
        .and(with_login())
        .and(ctx())
        .and(warp::body::content_length_limit(BODY_LIMIT).and(warp::body::bytes()))
        .then(sso_post);
    let resume_get = warp::path!("saml" / "sso" / "resume")
        .and(warp::get())
        .and(with_saml())
        .and(with_login())
        .and(ctx())
        .and(warp::query::<ResumeQuery>())
        .then(resume);
    let init_get = warp::path!("saml" / "init")
        .and(warp::get())
        .and(with_saml())
        .and(with_login())
        .and(ctx())
        .and(warp::query::<InitQuery>())
        .then(initiate);
    let slo_get = warp::path!("saml" / "slo")
        .and(warp::get())
        .and(with_saml())
        .and(with_login())
        .and(ctx())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(|saml, login, ctx, raw: String| {
            let field = logout_field(raw.as_bytes());
            let incoming = request::from_redirect(&raw, field);
            let endpoint = Endpoint::Slo {
                is_response: field == "SAMLResponse",
            };
            handle(saml, login, ctx, endpoint, incoming)
        });
    let slo_post = warp::path!("saml" / "slo")
        .and(warp::post())
        .and(with_saml())
        .and(with_login())
        .and(ctx())
        .and(warp::body::content_length_limit(BODY_LIMIT).and(warp::body::bytes()))
        .then(|saml, login, ctx, body: Bytes| {
            let field = logout_field(&body);
            let endpoint = Endpoint::Slo {
                is_response: field == "SAMLResponse",
            };
            handle(saml, login, ctx, endpoint, posted(&body, field))
        });
    let slo_next = warp::path!("saml" / "slo" / "next")
        .and(warp::get())
        .and(with_saml())
        .and(ctx())
        .and(warp::query::<RunQuery>())
        .then(|saml: Arc<Provider>, ctx: Ctx, q: RunQuery| async move {
            let result = saml
                .continue_logout(&q.run, ctx.cookie(SLO_COOKIE), &origin(&ctx))
                .await;
            answer(&ctx, result)
        });
    let slo_page = warp::path!("saml" / "slo" / "page")
        .and(warp::get())
        .and(with_saml())
        .and(ctx())
        .and(warp::query::<RunQuery>())
        .map(|saml: Arc<Provider>, ctx: Ctx, q: RunQuery| {
            answer(&ctx, saml.logout_page(&q.run, ctx.cookie(SLO_COOKIE)))
        });
    let slo_frame = warp::path!("saml" / "slo" / "frame")
        .and(warp::get())
        .and(with_saml())
        .and(ctx())
        .and(warp::query::<RunQuery>())
        .map(|saml: Arc<Provider>, ctx: Ctx, q: RunQuery| {
            answer_in(
                &ctx,
                saml.logout_frame(&q.run, q.n, ctx.cookie(SLO_COOKIE)),
                true,
            )
        });
    let logout_js = warp::path!("saml" / "logout.js")
        .and(warp::get())
        .map(|| script(LOGOUT_JS));
    metadata
        .or(autopost)
        .unify()
        .or(sso_get)
        .unify()
        .or(sso_post)
        .unify()
        .or(resume_get)
        .unify()
        .or(init_get)
        .unify()
        .or(slo_get)
        .unify()
        .or(slo_post)
        .unify()
        .or(slo_next)
        .unify()
        .or(slo_page)
        .unify()
        .or(slo_frame)
        .unify()
        .or(logout_js)
        .unify()
        .or(admin)
        .unify()
}

/// `/api/admin/saml/sps` (see [`super::admin`]).
fn admin_routes(
    saml: Arc<Provider>,
    login: Arc<Login>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let with_saml = warp::any().map(move || saml.clone());
    let with_login = warp::any().map(move || login.clone());
    let csrf = || warp::header::optional::<String>("x-csrf-token");
    let list = warp::path!("api" / "admin" / "saml" / "sps")
        .and(warp::get())
        .and(with_saml.clone())
        .and(with_login.clone())
        .and(ctx())
        .and_then(admin::list);
    let create = warp::path!("api" / "admin" / "saml" / "sps")
        .and(warp::post())
        .and(with_saml.clone())
        .and(with_login.clone())
        .and(ctx())
        .and(csrf())
        .and(warp::body::content_length_limit(ADMIN_BODY_LIMIT).and(warp::body::json()))
        .and_then(admin::create);
    let delete = warp::path!("api" / "admin" / "saml" / "sps")
        .and(warp::delete())
        .and(with_saml.clone())
        .and(with_login.clone())
        .and(ctx())
        .and(csrf())
        .and(warp::query::<admin::EntityQuery>())
        .and_then(admin::delete);
    let refresh = warp::path!("api" / "admin" / "saml" / "sps" / "refresh")
        .and(warp::post())
        .and(with_saml)
        .and(with_login)
        .and(ctx())
        .and(csrf())
        .and(warp::query::<admin::EntityQuery>())
        .and_then(admin::refresh);
    list.or(create)
        .unify()
        .or(delete)
        .unify()
        .or(refresh)
        .unify()
}
