//! The security officers' API under `/api/monitor`, behind the portal's SSO session, and
//! `/metrics`.
//!
//! Platform administrators, and security officers or auditors of the platform tenant, see
//! everything; a municipality's security officer or auditor sees only what carries its
//! tenant label. A refusal never says whether the thing exists.

use crate::Monitor;
use crate::alerts::{Alert, Note};
use crate::controls::{PLATFORM, Status};
use crate::series::{Labels, Resolution, Selector};
use kopa_core::{ErrorCode, Role};
use kopa_store::audit::{AuditEvent, Category, Outcome};
use kopa_web::sso::{App, Sso};
use kopa_web::{ApiError, PeerAddr};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use warp::http::{HeaderValue, StatusCode, header};
use warp::{Filter, Rejection, Reply};

/// What the API needs.
#[derive(Debug)]
pub struct Api {
    pub monitor: Monitor,
    pub sso: Arc<Sso>,
    /// The app whose session the dashboards use (the portal).
    pub app: App,
    /// Bearer token for `/metrics`; `None`: loopback only.
    pub metrics_token: Option<kopa_config::Secret>,
}

/// Whose data a caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sees {
    All,
    Tenant(String),
}

impl Sees {
    pub fn tenant(&self, t: Option<&str>) -> bool {
        match self {
            Self::All => true,
            Self::Tenant(mine) => t == Some(mine.as_str()),
        }
    }

    fn labels(&self, l: &Labels) -> bool {
        self.tenant(l.get("tenant").map(String::as_str))
    }

    /// A platform result as this caller may see it: evidence labelled with another
    /// tenant is removed, and so is the reduced value it may have come from.
    fn redact(&self, mut r: crate::controls::ControlResult) -> crate::controls::ControlResult {
        if let Self::Tenant(mine) = self {
            let before = r.evidence.len();
            r.evidence
                .retain(|e| e.labels.get("tenant").is_none_or(|t| t == mine));
            if r.evidence.len() != before {
                r.observed = None;
            }
        }
        r
    }
}

/// The signed-in officer.
#[derive(Debug, Clone)]
pub struct Officer {
    pub subject: String,
    pub tenant: Option<String>,
    pub sees: Sees,
    ip: Option<IpAddr>,
    user_agent: String,
}

type Answer = Result<warp::reply::Response, ApiError>;

fn json<T: Serialize>(value: &T) -> Answer {
    let mut r = warp::reply::json(value).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, m)
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "monitor database");
    ApiError::new(
        ErrorCode::Unavailable,
        "The monitor is unavailable; try again.",
    )
}

fn officer(api: Arc<Api>) -> impl Filter<Extract = (Officer,), Error = Rejection> + Clone {
    kopa_web::sso::api_caller(api.sso.clone(), api.app.clone()).and_then(
        move |caller: kopa_web::sso::ApiCaller| async move {
            let user = caller.user;
            let roles: Vec<Role> = user.roles.iter().filter_map(|r| Role::parse(r)).collect();
            let officer_role =
                roles.contains(&Role::SecurityOfficer) || roles.contains(&Role::Auditor);
            let sees = if roles.contains(&Role::PlatformAdmin)
                || (officer_role && user.tenant.as_deref() == Some(PLATFORM))
            {
                Sees::All
            } else if officer_role && let Some(t) = &user.tenant {
                Sees::Tenant(t.clone())
            } else {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "Requires security_officer, auditor or platform_admin.",
                )
                .into_rejection());
            };
            Ok::<_, Rejection>(Officer {
                subject: user.subject,
                tenant: user.tenant,
                sees,
                ip: caller.ip,
                user_agent: caller.user_agent,
            })
        },
    )
}

#[derive(Debug, Deserialize)]
struct SeriesQuery {
    name: String,
    tenant: Option<String>,
    /// Milliseconds since the epoch; default: 24 hours ago.
    from: Option<u64>,
    to: Option<u64>,
    resolution: Option<String>,
}

async fn series(api: Arc<Api>, o: Officer, q: SeriesQuery) -> Answer {
    let m = &api.monitor;
    let now = m.clock().now_millis();
    let to = q.to.unwrap_or(now + 1);
    let from = q.from.unwrap_or(to.saturating_sub(86_400_000));
    if from >= to {
        return Err(bad("from must be before to"));
    }
    let resolution = match q.resolution.as_deref() {
        None | Some("") => None,
        Some(r) => {
            Some(Resolution::parse(r).ok_or_else(|| bad("resolution must be raw, 5m or 1h"))?)
        }
    };
    let mut sel = Selector {
        name: q.name,
        labels: Vec::new(),
    };
    if let Some(t) = q.tenant.filter(|t| !t.is_empty()) {
        sel.labels.push(("tenant".into(), t));
    }
    let sees = o.sees.clone();
    let s = m.series().clone();
    let got = tokio::task::spawn_blocking(move || {
        s.query_blocking(&sel, from, to, now, resolution, &|l| sees.labels(l))
    })
    .await
    .map_err(unavailable)?
    .map_err(unavailable)?;
    json(&serde_json::json!({"series": got}))
}

#[derive(Debug, Serialize)]
struct ScoredControl<'a> {
    #[serde(flatten)]
    control: &'a crate::controls::Control,
    results: Vec<&'a crate::controls::ControlResult>,
}

async fn compliance(api: Arc<Api>, o: Officer) -> Answer {
    let m = &api.monitor;
    let results: Vec<_> = m.results().into_iter().map(|r| o.sees.redact(r)).collect();
    let visible: Vec<_> = results
        .iter()
        .filter(|r| r.scope == PLATFORM || o.sees.tenant(Some(&r.scope)))
        .collect();
    let scope = match &o.sees {
        crate::http::Sees::All => None,
        crate::http::Sees::Tenant(t) => Some(t.as_str()),
    };
    let owned: Vec<_> = visible.iter().map(|r| (*r).clone()).collect();
    let scores = crate::controls::scores(m.catalogue(), m.profiles(), &owned, scope);
    let controls: Vec<ScoredControl> = m
        .catalogue()
        .controls
        .iter()
        .filter(|c| c.profiles.iter().any(|p| m.profiles().contains(p)))
        .map(|c| ScoredControl {
            control: c,
            results: visible
                .iter()
                .copied()
                .filter(|r| r.control == c.id)
                .collect(),
        })
        .collect();
    let counts = |s: Status| visible.iter().filter(|r| r.status == s).count();
    let changes: Vec<_> = m
        .control_changes(500)
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|c| c.scope == PLATFORM || o.sees.tenant(Some(&c.scope)))
        .take(100)
        .map(|mut c| {
            // A platform result's value may come from another tenant's figures.
            if c.scope == PLATFORM && o.sees != Sees::All {
                c.observed = None;
            }
            c
        })
        .collect();
    let profiles: Vec<_> = m
        .catalogue()
        .profiles
        .iter()
        .filter(|p| m.profiles().contains(&p.id))
        .collect();
    json(&serde_json::json!({
        "scope": scope.unwrap_or("all"),
        "scores": scores,
        "passed": counts(Status::Pass),
        "failed": counts(Status::Fail),
        "not_applicable": counts(Status::NotApplicable),
        "profiles": profiles,
        "controls": controls,
        "changes": changes,
    }))
}

async fn certificates(api: Arc<Api>, o: Officer) -> Answer {
    let (certs, problems) = api.monitor.certificates();
    let mut certs: Vec<_> = certs
        .into_iter()
        .filter(|c| {
            o.sees == Sees::All || (c.tenant.is_some() && o.sees.tenant(c.tenant.as_deref()))
        })
        .collect();
    certs.sort_by(|a, b| a.days_left.total_cmp(&b.days_left));
    let problems = if o.sees == Sees::All {
        problems
    } else {
        Vec::new()
    };
    json(&serde_json::json!({"certificates": certs, "problems": problems}))
}

async fn alerts(api: Arc<Api>, o: Officer) -> Answer {
    let m = &api.monitor;
    let all = m.alerts().list().await.map_err(unavailable)?;
    let ids: std::collections::BTreeSet<String> = all
        .iter()
        .filter(|a| o.sees.tenant(a.tenant()))
        .map(|a| a.id.clone())
        .collect();
    let visible: Vec<&Alert> = all.iter().filter(|a| ids.contains(&a.id)).collect();
    let history: Vec<_> = m
        .alerts()
        .history(1000)
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|e| ids.contains(&e.alert))
        .take(200)
        .collect();
    json(&serde_json::json!({"alerts": visible, "history": history}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Annotation {
    reason: String,
    /// Only for a silence: how long, 1 minute to 30 days.
    minutes: Option<u64>,
}

async fn annotate(
    api: Arc<Api>,
    o: Officer,
    id: String,
    silence: bool,
    body: Annotation,
) -> Answer {
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(bad("Give a reason of 1 to 500 characters."));
    }
    let now = api.monitor.clock().now_millis();
    let until = if silence {
        let minutes = body
            .minutes
            .filter(|m| (1..=43_200).contains(m))
            .ok_or_else(|| bad("minutes must be 1 to 43200"))?;
        Some(now + minutes * 60_000)
    } else {
        None
    };
    let note = Note {
        by: o.subject.clone(),
        at_ms: now,
        reason: reason.clone(),
    };
    // The change and its audit record run to the end even if the client goes away.
    let task = tokio::spawn(async move {
        let sees = o.sees.clone();
        let changed = api
            .monitor
            .alerts()
            .annotate(id.clone(), note, until, move |a| sees.tenant(a.tenant()))
            .await
            .map_err(unavailable)?;
        let action = if silence {
            "alert-silenced"
        } else {
            "alert-acknowledged"
        };
        let mut e = AuditEvent::new(
            Category::Configuration,
            action,
            if changed.is_some() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .user_resolved(o.subject.as_str())
        .user_agent(o.user_agent.chars().take(512).collect::<String>())
        .detail("alert", id.as_str())
        .detail("reason", reason.as_str());
        // Recorded under the alert's tenant, so that tenant's auditors see it; a
        // platform alert (or a refusal) under the officer's.
        let tenant = changed
            .as_ref()
            .and_then(|a| a.tenant().map(str::to_owned))
            .or_else(|| o.tenant.clone());
        e.tenant = tenant.and_then(|t| kopa_core::TenantId::new(t).ok());
        if let Some(ip) = o.ip {
            e = e.source_ip(ip);
        }
        if let Some(until) = until {
            e = e.detail("until", kopa_store::audit::format_rfc3339_ms(until));
        }
        if changed.is_none() {
            e = e.reason("not_found");
        }
        api.monitor.audit().append(e).await.map_err(unavailable)?;
        changed.ok_or_else(|| ApiError::new(ErrorCode::Forbidden, "No such alert, or not yours."))
    });
    let alert = task.await.map_err(unavailable)??;
    json(&alert)
}

#[derive(Debug, Deserialize)]
struct AuthQuery {
    hours: Option<u64>,
}

async fn auth(api: Arc<Api>, o: Officer, q: AuthQuery) -> Answer {
    let hours = q.hours.unwrap_or(24);
    if !(1..=24).contains(&hours) {
        return Err(bad("hours must be 1 to 24"));
    }
    let m = &api.monitor;
    let now = m.clock().now_millis();
    let sees = o.sees.clone();
    let keep = move |t: &str| sees.tenant(Some(t));
    let f = m.follower().await;
    let (accounts, ips) = f.offenders(now, hours * 3_600_000, 10, &keep);
    let hourly = f.hourly(now, &keep);
    drop(f);
    let mut per_tenant: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for name in [
        "auth.failed_logins_1h",
        "auth.lockouts_24h",
        "auth.success_after_failures_24h",
        "auth.privileged_logins_24h",
        "auth.privileged_mfa_ratio_24h",
        "auth.accounts_inactive",
        "auth.failed_logins_total",
    ] {
        for (labels, _, v) in m.latest().values_of(name) {
            if let Some(t) = labels.get("tenant").filter(|t| o.sees.tenant(Some(t))) {
                per_tenant
                    .entry(t.clone())
                    .or_default()
                    .insert(name.trim_start_matches("auth.").to_owned(), v);
            }
        }
    }
    json(&serde_json::json!({
        "hourly": hourly,
        "top_accounts": accounts,
        "top_ips": ips,
        "tenants": per_tenant,
    }))
}

async fn overview(api: Arc<Api>, o: Officer) -> Answer {
    let m = &api.monitor;
    let results: Vec<_> = m
        .results()
        .into_iter()
        .filter(|r| r.scope == PLATFORM || o.sees.tenant(Some(&r.scope)))
        .collect();
    let scope = match &o.sees {
        Sees::All => None,
        Sees::Tenant(t) => Some(t.as_str()),
    };
    let scores = crate::controls::scores(m.catalogue(), m.profiles(), &results, scope);
    let firing = m
        .alerts()
        .list()
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|a| a.state == crate::alerts::AlertState::Firing && o.sees.tenant(a.tenant()))
        .count();
    let (certs, _) = m.certificates();
    let expiring = certs
        .iter()
        .filter(|c| c.days_left < 30.0)
        .filter(|c| o.sees == Sees::All || o.sees.tenant(c.tenant.as_deref()))
        .count();
    json(&serde_json::json!({
        "sees": match &o.sees { Sees::All => "all".to_owned(), Sees::Tenant(t) => t.clone() },
        "scores": scores,
        "alerts_firing": firing,
        "certificates_expiring_30d": expiring,
        "failed_controls": results.iter().filter(|r| r.status == Status::Fail).count(),
    }))
}

fn reply(a: Answer) -> warp::reply::Response {
    a.unwrap_or_else(ApiError::into_response)
}

use kopa_web::json_api::same_origin;

fn json_body() -> impl Filter<Extract = (Annotation,), Error = Rejection> + Clone {
    kopa_web::json_api::json_body(16 * 1024)
}

/// `/metrics`: loopback clients, or the bearer token when one is configured.
async fn metrics(api: Arc<Api>, peer: Option<PeerAddr>, auth: Option<String>) -> Answer {
    // An IPv4 client of a dual-stack listener arrives as ::ffff:127.0.0.1.
    let loopback = peer.is_some_and(|p| p.0.ip().to_canonical().is_loopback());
    let token_ok = match (
        &api.metrics_token,
        auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")),
    ) {
        (Some(want), Some(got)) => aws_lc_rs::constant_time::verify_slices_are_equal(
            want.expose().trim().as_bytes(),
            got.trim().as_bytes(),
        )
        .is_ok(),
        _ => false,
    };
    if !(loopback || token_ok) {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "Send the metrics bearer token, or scrape from the appliance itself.",
        ));
    }
    let mut r = warp::reply::Response::new(api.monitor.exposition().into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    *r.status_mut() = StatusCode::OK;
    Ok(r)
}

/// Every route of the monitor.
pub fn routes(
    api: Arc<Api>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let with = {
        let api = api.clone();
        move || {
            let api = api.clone();
            warp::any().map(move || api.clone())
        }
    };
    let base = warp::path!("api" / "monitor" / ..);
    let who = officer(api.clone());
    let overview_r = base
        .and(warp::path!("overview"))
        .and(warp::get())
        .and(with())
        .and(who.clone())
        .then(|a, o| async move { reply(overview(a, o).await) });
    let series_r = base
        .and(warp::path!("series"))
        .and(warp::get())
        .and(with())
        .and(who.clone())
        .and(warp::query::<SeriesQuery>())
        .then(|a, o, q| async move { reply(series(a, o, q).await) });
    let compliance_r = base
        .and(warp::path!("compliance"))
        .and(warp::get())
        .and(with())
        .and(who.clone())
        .then(|a, o| async move { reply(compliance(a, o).await) });
    let certs_r = base
        .and(warp::path!("certificates"))
        .and(warp::get())
        .and(with())
        .and(who.clone())
        .then(|a, o| async move { reply(certificates(a, o).await) });
    let auth_r = base
        .and(warp::path!("auth"))
        .and(warp::get())
        .and(with())
        .and(who.clone())
        .and(warp::query::<AuthQuery>())
        .then(|a, o, q| async move { reply(auth(a, o, q).await) });
    let alerts_r = base
        .and(warp::path!("alerts"))
        .and(warp::get())
        .and(with())
        .and(who.clone())
        .then(|a, o| async move { reply(alerts(a, o).await) });
    let annotate_r = base
        .and(warp::path!("alerts" / String / String))
        .and(warp::post())
        .and(same_origin())
        .and(with())
        .and(who)
        .and(json_body())
        .then(|id: String, verb: String, a, o, body| async move {
            let silence = match verb.as_str() {
                "ack" => false,
                "silence" => true,
                _ => {
                    return ApiError::new(ErrorCode::NotFound, "Use ack or silence.")
                        .into_response();
                }
            };
            reply(annotate(a, o, id, silence, body).await)
        });
    let metrics_r = warp::path!("metrics")
        .and(warp::get())
        .and(with())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::header::optional::<String>("authorization"))
        .then(|a, p, t| async move { reply(metrics(a, p, t).await) });
    overview_r
        .or(series_r)
        .unify()
        .or(compliance_r)
        .unify()
        .or(certs_r)
        .unify()
        .or(auth_r)
        .unify()
        .or(alerts_r)
        .unify()
        .or(annotate_r)
        .unify()
        .or(metrics_r)
        .unify()
}
