//! Kopa's own apps (portal, monitor, VM pages) as relying parties of the appliance's OpenID
//! Connect provider, through `kopa_web::sso`. Until each app's own issue lands, its page is
//! a shell that shows who is signed in and links to the others.

use kopa_idp::oidc::{ClientCredentials, Origin, Params, Provider};
use kopa_idp::ui::escape;
use kopa_web::sso::{App, AppUser, BoxFuture, Sso};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use warp::http::{HeaderValue, Response, header};
use warp::{Filter, Rejection};

/// The apps and their client ids.
pub const APPS: [App; 3] = [
    App {
        name: "portal",
        client_id: "kopa-portal",
    },
    App {
        name: "monitor",
        client_id: "kopa-monitor",
    },
    App {
        name: "vms",
        client_id: "kopa-vms",
    },
];

/// The in-process link from the SSO filter to the provider: the same calls a remote
/// relying party makes, without the network hop.
#[derive(Debug)]
pub struct InProcess(pub Arc<Provider>);

impl kopa_web::sso::Provider for InProcess {
    fn issuer(&self) -> String {
        self.0.issuer().to_owned()
    }

    fn exchange<'a>(
        &'a self,
        client_id: &'a str,
        code: &'a str,
        verifier: &'a str,
        redirect_uri: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, String>> {
        Box::pin(async move {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("code_verifier", verifier)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("client_id", client_id)
                .finish();
            let creds = ClientCredentials {
                form_id: Some(client_id.to_owned()),
                ..ClientCredentials::default()
            };
            let origin = Origin {
                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                user_agent: format!("kopa-{client_id}"),
            };
            self.0
                .token(&Params::parse(body.as_bytes()), &creds, &origin)
                .await
                .map_err(|e| format!("{}: {}", e.error, e.description))
        })
    }

    fn verify(&self, token: &str) -> Result<serde_json::Value, String> {
        self.0.verify_jws(token).map_err(|e| e.to_string())
    }

    fn session_alive<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(self.0.session_alive(sid))
    }
}

fn shell(app: &App, user: &AppUser) -> warp::reply::Response {
    let title = match app.name {
        "portal" => "Portāls",
        "monitor" => "Drošības uzraudzība",
        _ => "Virtuālie serveri",
    };
    let roles = user.roles.join(", ");
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"lv\">\n<head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Kopa</title><link rel=\"stylesheet\" href=\"/static/kopa.css\"></head>\n\
<body><header><a class=\"brand\" href=\"/\">Kopa</a></header>\n<nav aria-label=\"Lietotnes\">\
<a href=\"/\">Portāls</a> · <a href=\"/monitor/\">Uzraudzība</a> · <a href=\"/vms/\">Virtuālie serveri</a></nav>\n\
<main id=\"content\"><h1>{title}</h1>\n<p data-app=\"{app}\">Pieteicies: <strong id=\"user\">{name}</strong> \
(<span id=\"tenant\">{tenant}</span>; <span id=\"roles\">{roles}</span>)</p>\n\
<p><a href=\"/auth/{app}/logout\">Iziet</a></p></main>\n</body>\n</html>\n",
        app = app.name,
        name = escape(&user.name),
        tenant = escape(user.tenant.as_deref().unwrap_or("")),
        roles = escape(&roles),
    );
    let mut resp = Response::new(body.into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The portal's single-page app, read once at start.
#[derive(Debug, Clone)]
pub struct PortalUi {
    files: Arc<Vec<(&'static str, &'static str, bytes::Bytes)>>,
}

/// The files of the built app and their media types.
const UI_FILES: [(&str, &str); 4] = [
    ("kopa_portal_ui.js", "text/javascript; charset=utf-8"),
    ("kopa_portal_ui_bg.wasm", "application/wasm"),
    ("start.js", "text/javascript; charset=utf-8"),
    ("portal.css", "text/css; charset=utf-8"),
];

/// The portal page's policy: as strict as the rest, plus compiling WebAssembly.
const PORTAL_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'";

impl PortalUi {
    /// Reads the app from `dir` (`[portal] ui_dir`), or from `ui` beside the directory of
    /// the running executable. Missing files leave the portal with a notice instead.
    pub fn load(dir: Option<&std::path::Path>) -> Self {
        let dir = dir.map(std::path::Path::to_path_buf).or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent()?.parent().map(|p| p.join("ui")))
        });
        let mut files = Vec::new();
        if let Some(dir) = &dir {
            for (name, media) in UI_FILES {
                match std::fs::read(dir.join(name)) {
                    Ok(bytes) => files.push((name, media, bytes::Bytes::from(bytes))),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), file = name, error = %e,
                            "portal UI not found; run scripts/build-ui.sh (the API still works)");
                        files.clear();
                        break;
                    }
                }
            }
        }
        Self {
            files: Arc::new(files),
        }
    }

    fn built(&self) -> bool {
        !self.files.is_empty()
    }

    fn file(&self, name: &str) -> Option<warp::reply::Response> {
        let (_, media, bytes) = self.files.iter().find(|(n, _, _)| *n == name)?;
        let mut resp = Response::new(bytes.clone().into());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
        // Revalidated on every load, so a new build is picked up at once.
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Some(resp)
    }

    /// The page every portal address serves: the app mounts into `#app`.
    fn page(&self, app: &App, user: &AppUser) -> warp::reply::Response {
        if !self.built() {
            return shell(app, user);
        }
        let body = format!(
            "<!DOCTYPE html>\n<html lang=\"lv\">\n<head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Portāls · Kopa</title><link rel=\"stylesheet\" href=\"/ui/portal.css\">\
<script type=\"module\" src=\"/ui/start.js\"></script></head>\n\
<body data-app=\"{app}\"><div id=\"app\"></div>\n\
<noscript><main><h1>Portāls</h1><p>Portālam vajag JavaScript. / The portal needs JavaScript.</p>\
<p>{name}</p></main></noscript>\n</body>\n</html>\n",
            app = app.name,
            name = escape(&user.name),
        );
        let mut resp = Response::new(body.into());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PORTAL_CSP),
        );
        resp
    }
}

/// The paths of the portal's pages (the app routes among them itself).
fn portal_paths() -> warp::filters::BoxedFilter<()> {
    let end = warp::path::end().boxed();
    let one = |name: &'static str| warp::path(name).and(warp::path::end()).boxed();
    let case = warp::path("cases")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and_then(|p: String| async move {
            if p == "new" || p.parse::<u64>().is_ok() {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .boxed();
    end.or(one("cases"))
        .unify()
        .or(case)
        .unify()
        .or(one("clients"))
        .unify()
        .or(one("reports"))
        .unify()
        .or(one("admin"))
        .unify()
        .or(one("security"))
        .unify()
        .boxed()
}

/// The apps' pages and their sign-in callbacks.
pub fn routes(
    sso: &Arc<Sso>,
    ui: PortalUi,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone + use<> {
    let page = |app: App, path: warp::filters::BoxedFilter<()>| {
        let a = app.clone();
        path.and(warp::get()).and(sso.require(app)).map(
            move |user: Result<AppUser, warp::reply::Response>| match user {
                Ok(user) => shell(&a, &user),
                Err(challenge) => challenge,
            },
        )
    };
    let [portal, monitor, vms] = APPS;
    let (app, pages) = (portal.clone(), ui.clone());
    let portal_page = portal_paths()
        .and(warp::get())
        .and(sso.require(portal.clone()))
        .map(
            move |user: Result<AppUser, warp::reply::Response>| match user {
                Ok(user) => pages.page(&app, &user),
                Err(challenge) => challenge,
            },
        );
    let assets = warp::path("ui")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and_then(move |name: String| {
            let found = ui.file(&name);
            async move { found.ok_or_else(warp::reject::not_found) }
        });
    let monitor_page = page(
        monitor.clone(),
        warp::path("monitor").and(warp::path::end()).boxed(),
    );
    let vms_page = page(
        vms.clone(),
        warp::path("vms").and(warp::path::end()).boxed(),
    );
    portal_page
        .or(assets)
        .unify()
        .or(monitor_page)
        .unify()
        .or(vms_page)
        .unify()
        .or(sso.routes(portal))
        .unify()
        .or(sso.routes(monitor))
        .unify()
        .or(sso.routes(vms))
        .unify()
        .boxed()
}
