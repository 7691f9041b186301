//! The portal's HTTP API under `/api/portal`, for the portal UI and for other systems, and
//! its OpenAPI 3 document (`/api/openapi.json`, generated from these handlers and types).
//!
//! Every call needs the portal's SSO session (`kopa_web::sso`); without one the answer is
//! 401, never a redirect. Writes must come from the portal's own origin (an `Origin`
//! naming another site is refused) with a JSON body, which a cross-site form cannot send.
//! A refusal is a 403 that does not say whether the record exists. Whole personal codes
//! are disclosed only by `POST /clients/{id}/unmask`, and only after the audit log holds
//! the disclosure.

use crate::attachment::Attachment;
use crate::case::{Channel, State};
use crate::catalogue::Service;
use crate::client::{ClientView, NewClient};
use crate::index::{self, Dimension, View};
use crate::org::{Assignment, Centre, Institution};
use crate::report;
use crate::work::{
    CaseDetail, CaseView, CaseWork, Me, NewCase, ReportRow, SavedFilter, Viewer, WorkError,
};
use kopa_core::{ErrorCode, Role, TenantId};
use kopa_store::audit::{AuditEvent, AuditLog, Category, Outcome};
use kopa_web::ApiError;
use kopa_web::sso::{App, Sso};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use warp::http::{HeaderValue, Response, StatusCode, header};
use warp::{Filter, Rejection};

/// What the API needs: case work, the audit log and the portal's SSO.
#[derive(Debug)]
pub struct Api {
    pub work: CaseWork,
    /// Largest attachment, in bytes (`[portal] attachment_max_bytes`).
    pub attachment_max_bytes: u64,
    pub audit: AuditLog,
    pub sso: Arc<Sso>,
    pub app: App,
}

/// The signed-in caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub viewer: Viewer,
    name: String,
    tenant: Option<String>,
    ip: IpAddr,
    user_agent: String,
}

type Reply = warp::reply::Response;
type Answer = Result<Reply, ApiError>;

fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    let mut r = warp::reply::with_status(warp::reply::json(value), status).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn ok<T: Serialize>(value: &T) -> Answer {
    Ok(json(StatusCode::OK, value))
}

fn no_content() -> Answer {
    let mut r = Response::new(Vec::new().into());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

use warp::Reply as _;

impl From<WorkError> for ApiError {
    fn from(e: WorkError) -> Self {
        match e {
            WorkError::Refused => ApiError::new(ErrorCode::Forbidden, e.to_string()),
            WorkError::Invalid(m) => ApiError::new(ErrorCode::BadRequest, m),
            WorkError::ClientExists(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            WorkError::TooLarge(_) => ApiError::new(ErrorCode::PayloadTooLarge, e.to_string()),
            WorkError::Unaccepted(crate::attachment::Refused::Type(_)) => {
                ApiError::new(ErrorCode::UnsupportedMediaType, e.to_string())
            }
            WorkError::Unaccepted(_) => ApiError::new(ErrorCode::BadRequest, e.to_string()),
            WorkError::Store(inner) => {
                tracing::error!(error = %inner, "portal database");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "The portal database is unavailable; try again.",
                )
            }
        }
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

// ---- request plumbing ---------------------------------------------------------------

/// The caller, or a 401.
fn caller(api: Arc<Api>) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    kopa_web::sso::api_caller(api.sso.clone(), api.app.clone()).and_then(
        move |caller: kopa_web::sso::ApiCaller| {
            let api = api.clone();
            async move {
                let user = caller.user;
                let roles = user.roles.iter().filter_map(|r| Role::parse(r)).collect();
                let viewer = api
                    .work
                    .viewer(&user.subject, roles, user.tenant.clone())
                    .await
                    .map_err(|e| ApiError::from(e).into_rejection())?;
                Ok::<_, Rejection>(Caller {
                    viewer,
                    name: user.name,
                    tenant: user.tenant,
                    ip: caller.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    user_agent: caller.user_agent,
                })
            }
        },
    )
}

use kopa_web::json_api::same_origin;

/// A JSON body of at most 64 KiB, with serde's own message when it does not fit `T`.
fn body<T: DeserializeOwned + Send + 'static>() -> Part<T> {
    kopa_web::json_api::json_body(64 * 1024).boxed()
}

fn reply(answer: Answer) -> Reply {
    answer.unwrap_or_else(ApiError::into_response)
}

/// Appends one record of what the caller did; the answer waits until it is durable.
async fn audit(
    api: &Api,
    c: &Caller,
    event: AuditEvent,
    details: &[(&str, String)],
) -> Result<(), ApiError> {
    let mut event = event
        .user_resolved(c.viewer.subject.clone())
        .tenant(c.tenant.as_deref().and_then(|t| TenantId::new(t).ok()))
        .source_ip(c.ip)
        .user_agent(c.user_agent.clone())
        .client("kopa-portal");
    for (k, v) in details {
        event = event.detail(*k, v.clone());
    }
    api.audit.append(event).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, "audit append");
        ApiError::new(
            ErrorCode::Unavailable,
            "The audit log is unavailable; try again.",
        )
    })
}

/// The audit reason of a refused request.
fn reason(e: &WorkError) -> &'static str {
    match e {
        WorkError::Refused => "refused",
        WorkError::Store(_) => "unavailable",
        WorkError::Invalid(_)
        | WorkError::ClientExists(_)
        | WorkError::TooLarge(_)
        | WorkError::Unaccepted(_) => "invalid",
    }
}

/// The record of `action` with the outcome of `result`.
fn outcome_event<T>(category: Category, action: &str, result: &Result<T, WorkError>) -> AuditEvent {
    match result {
        Ok(_) => AuditEvent::new(category, action, Outcome::Success),
        Err(e) => AuditEvent::new(category, action, Outcome::Failure).reason(reason(e)),
    }
}

/// Makes an administrative change and records it. Both run in a task of their own, so a
/// client that goes away cannot leave a change without its record; when the record
/// cannot be written, the answer says the change was made.
async fn audited<F>(
    api: &Arc<Api>,
    c: &Caller,
    action: &'static str,
    object: String,
    change: F,
) -> Answer
where
    F: std::future::Future<Output = Result<(), WorkError>> + Send + 'static,
{
    let (api, c) = (api.clone(), c.clone());
    let done = tokio::spawn(async move {
        let result = change.await;
        let event = outcome_event(Category::Configuration, action, &result);
        match audit(&api, &c, event, &[("object", object)]).await {
            Ok(()) => result.map_err(ApiError::from),
            Err(_) if result.is_ok() => Err(ApiError::new(
                ErrorCode::Unavailable,
                "The change was saved, but its audit record could not be written; tell the platform operators.",
            )),
            Err(e) => Err(e),
        }
    })
    .await;
    done.map_err(|_| ApiError::new(ErrorCode::Internal, "The change failed."))?
        .and_then(|()| no_content())
}

// ---- handlers -------------------------------------------------------------------------

/// The signed-in user as the portal knows them.
#[utoipa::path(get, path = "/api/portal/me", tag = "portal",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(api: Arc<Api>, c: Caller) -> Answer {
    let mut me = api.work.me(&c.viewer);
    me.name = c.name;
    ok(&me)
}

/// Every institution.
#[utoipa::path(get, path = "/api/portal/institutions", tag = "organisation",
    responses((status = 200, body = [Institution]), (status = 401, body = ErrorBody)))]
async fn institutions(api: Arc<Api>, _c: Caller) -> Answer {
    ok(&api.work.institutions().await?)
}

/// Adds or changes an institution (platform administrators).
#[utoipa::path(put, path = "/api/portal/institutions/{id}", tag = "organisation",
    params(("id" = String, Path, description = "tenant id")), request_body = Institution,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn put_institution(api: Arc<Api>, c: Caller, id: String, i: Institution) -> Answer {
    if i.id != id {
        return Err(bad("id: the body's id must be the one in the path"));
    }
    let (work, v) = (api.work.clone(), c.viewer.clone());
    let change = async move { work.put_institution(&v, i).await };
    audited(&api, &c, "portal-institution-put", id, change).await
}

/// Every customer service centre.
#[utoipa::path(get, path = "/api/portal/centres", tag = "organisation",
    responses((status = 200, body = [Centre]), (status = 401, body = ErrorBody)))]
async fn centres(api: Arc<Api>, _c: Caller) -> Answer {
    ok(&api.work.centres().await?)
}

/// Adds or changes a centre (administrators of the institution that runs it).
#[utoipa::path(put, path = "/api/portal/centres/{id}", tag = "organisation",
    params(("id" = String, Path, description = "centre id")), request_body = Centre,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn put_centre(api: Arc<Api>, c: Caller, id: String, centre: Centre) -> Answer {
    if centre.id != id {
        return Err(bad("id: the body's id must be the one in the path"));
    }
    let (work, v) = (api.work.clone(), c.viewer.clone());
    let change = async move { work.put_centre(&v, centre).await };
    audited(&api, &c, "portal-centre-put", id, change).await
}

/// Who works at which centre (what the caller administers).
#[utoipa::path(get, path = "/api/portal/staff", tag = "organisation",
    responses((status = 200, body = [Assignment]), (status = 403, body = ErrorBody)))]
async fn staff(api: Arc<Api>, c: Caller) -> Answer {
    ok(&api.work.assignments(&c.viewer).await?)
}

/// Sets the centres a person works at (an empty list removes them).
#[utoipa::path(put, path = "/api/portal/staff", tag = "organisation", request_body = Assignment,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn put_staff(api: Arc<Api>, c: Caller, a: Assignment) -> Answer {
    let subject = a.subject.clone();
    let (work, v) = (api.work.clone(), c.viewer.clone());
    let change = async move { work.put_assignment(&v, a).await };
    audited(&api, &c, "portal-staff-put", subject, change).await
}

/// The service catalogue.
#[utoipa::path(get, path = "/api/portal/services", tag = "catalogue",
    responses((status = 200, body = [Service]), (status = 401, body = ErrorBody)))]
async fn services(api: Arc<Api>, _c: Caller) -> Answer {
    ok(&api.work.services().await?)
}

/// Adds or replaces a service (administrators of the owning institution).
#[utoipa::path(put, path = "/api/portal/services/{code}", tag = "catalogue",
    params(("code" = String, Path, description = "service code")), request_body = Service,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn put_service(api: Arc<Api>, c: Caller, code: String, s: Service) -> Answer {
    if s.code != code {
        return Err(bad("code: the body's code must be the one in the path"));
    }
    let (work, v) = (api.work.clone(), c.viewer.clone());
    let change = async move { work.put_service(&v, s).await };
    audited(&api, &c, "portal-service-put", code, change).await
}

/// A client search.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ClientQuery {
    /// Words of the name (diacritics ignored) or a whole personal code.
    q: String,
    /// At most this many (1-200, default 50).
    limit: Option<usize>,
}

/// Finds clients by name or code; codes are masked.
#[utoipa::path(get, path = "/api/portal/clients", tag = "clients", params(ClientQuery),
    responses((status = 200, body = [ClientView]), (status = 401, body = ErrorBody)))]
async fn search_clients(api: Arc<Api>, c: Caller, q: ClientQuery) -> Answer {
    if q.q.chars().count() > 200 {
        return Err(bad("q: at most 200 characters"));
    }
    ok(&api
        .work
        .search_clients(&c.viewer, &q.q, q.limit.unwrap_or(50))
        .await?)
}

/// Registers a client at one of the caller's centres.
#[utoipa::path(post, path = "/api/portal/clients", tag = "clients", request_body = NewClient,
    responses((status = 201, body = ClientView), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_client(api: Arc<Api>, c: Caller, new: NewClient) -> Answer {
    let view = api.work.add_client(&c.viewer, new).await?;
    Ok(json(StatusCode::CREATED, &view))
}

/// One client, code masked.
#[utoipa::path(get, path = "/api/portal/clients/{id}", tag = "clients",
    params(("id" = u64, Path, description = "client number")),
    responses((status = 200, body = ClientView), (status = 403, body = ErrorBody)))]
async fn client(api: Arc<Api>, c: Caller, id: u64) -> Answer {
    ok(&api.work.client(&c.viewer, id).await?)
}

/// A client's whole personal code.
#[derive(Debug, Serialize, ToSchema)]
struct Unmasked {
    id: u64,
    code: String,
}

/// Discloses a client's whole code to a role that works with the client. The
/// disclosure (and any refused attempt) is in the audit log before the answer leaves.
#[utoipa::path(post, path = "/api/portal/clients/{id}/unmask", tag = "clients",
    params(("id" = u64, Path, description = "client number")),
    responses((status = 200, body = Unmasked), (status = 403, body = ErrorBody)))]
async fn unmask(api: Arc<Api>, c: Caller, id: u64) -> Answer {
    let result = api.work.unmask(&c.viewer, id).await;
    let event = outcome_event(Category::Database, "personal-code-unmask", &result);
    audit(&api, &c, event, &[("client", id.to_string())]).await?;
    ok(&Unmasked { id, code: result? })
}

/// The case list: a view, filters and a page.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `all` (default), `mine`, `queue` (open cases of my centres) or `deadline`.
    view: Option<String>,
    /// For `view=deadline`: due within this many days (default 3; passed ones too).
    days: Option<u32>,
    /// Comma-separated states.
    state: Option<String>,
    service: Option<String>,
    channel: Option<Channel>,
    centre: Option<String>,
    /// Words of the client's name (diacritics ignored), a service code or name, a case
    /// number or a whole client code.
    q: Option<String>,
    /// Only cases numbered below this (the last number of the previous page).
    before: Option<u64>,
    /// Page size, 1-500 (default 50).
    limit: Option<usize>,
}

fn parse_state(s: &str) -> Result<State, ApiError> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_owned()))
        .map_err(|_| bad(format!("state: no state {s:?}")))
}

impl ListQuery {
    fn filter(self) -> Result<index::Filter, ApiError> {
        let view = match self.view.as_deref().unwrap_or("all") {
            "all" => View::All,
            "mine" => View::Mine,
            "queue" => View::Queue,
            "deadline" => View::Deadline {
                days: self.days.unwrap_or(3).min(3650),
            },
            other => {
                return Err(bad(format!(
                    "view: no view {other:?} (all, mine, queue, deadline)"
                )));
            }
        };
        let states = match self.state.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => {
                let mut states: Vec<State> =
                    list.split(',').map(parse_state).collect::<Result<_, _>>()?;
                // Eight states at most, however often they are named.
                states.sort_by_key(|s| *s as u8);
                states.dedup();
                states
            }
        };
        if self.q.as_ref().is_some_and(|q| q.chars().count() > 200) {
            return Err(bad("q: at most 200 characters"));
        }
        Ok(index::Filter {
            view,
            states,
            service: self.service,
            channel: self.channel,
            centre: self.centre,
            text: self.q.filter(|q| !q.trim().is_empty()),
            before: self.before,
            limit: self.limit.unwrap_or(50),
        })
    }
}

/// A page of cases, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct CasePage {
    cases: Vec<CaseView>,
    /// Pass as `before` for the next page; absent on the last.
    next: Option<u64>,
}

/// Lists cases the caller may see.
#[utoipa::path(get, path = "/api/portal/cases", tag = "cases", params(ListQuery),
    responses((status = 200, body = CasePage), (status = 400, body = ErrorBody)))]
async fn list_cases(api: Arc<Api>, c: Caller, q: ListQuery) -> Answer {
    let filter = q.filter()?;
    let limit = filter.limit.clamp(1, 500);
    let cases = api.work.list(&c.viewer, filter).await?;
    let next = (cases.len() == limit)
        .then(|| cases.last().map(|c| c.id))
        .flatten();
    ok(&CasePage { cases, next })
}

/// Registers a case at one of the caller's centres.
#[utoipa::path(post, path = "/api/portal/cases", tag = "cases", request_body = NewCase,
    responses((status = 201, body = CaseView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn register(api: Arc<Api>, c: Caller, new: NewCase) -> Answer {
    let view = api.work.register(&c.viewer, new).await?;
    Ok(json(StatusCode::CREATED, &view))
}

/// One case with its history and the moves the caller may make.
#[utoipa::path(get, path = "/api/portal/cases/{id}", tag = "cases",
    params(("id" = u64, Path, description = "case number")),
    responses((status = 200, body = CaseDetail), (status = 403, body = ErrorBody)))]
async fn case(api: Arc<Api>, c: Caller, id: u64) -> Answer {
    ok(&api.work.get(&c.viewer, id).await?)
}

/// A move of a case to another state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Move {
    to: State,
    #[serde(default)]
    note: Option<String>,
}

/// Moves a case (the roles allowed depend on the move).
#[utoipa::path(post, path = "/api/portal/cases/{id}/moves", tag = "cases",
    params(("id" = u64, Path, description = "case number")), request_body = Move,
    responses((status = 200, body = CaseView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn move_case(api: Arc<Api>, c: Caller, id: u64, m: Move) -> Answer {
    ok(&api.work.move_case(&c.viewer, id, m.to, m.note).await?)
}

/// A note on a case.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Note {
    text: String,
}

/// Adds a note to a case's history.
#[utoipa::path(post, path = "/api/portal/cases/{id}/notes", tag = "cases",
    params(("id" = u64, Path, description = "case number")), request_body = Note,
    responses((status = 200, body = CaseView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn add_note(api: Arc<Api>, c: Caller, id: u64, n: Note) -> Answer {
    ok(&api.work.add_note(&c.viewer, id, n.text).await?)
}

/// Who a case is given to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Assignee {
    /// A subject working at the case's centre, or null for nobody.
    assignee: Option<String>,
}

/// Gives a case to someone at its centre.
#[utoipa::path(post, path = "/api/portal/cases/{id}/assignee", tag = "cases",
    params(("id" = u64, Path, description = "case number")), request_body = Assignee,
    responses((status = 200, body = CaseView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn assign(api: Arc<Api>, c: Caller, id: u64, a: Assignee) -> Answer {
    ok(&api.work.assign(&c.viewer, id, a.assignee).await?)
}

/// Where an upload goes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Upload {
    /// The file's name.
    name: String,
}

/// An upload: the file name, its declared media type and its bytes.
type UploadParts = (Upload, Option<String>, bytes::Bytes);

/// Attaches a file to a case: the body is the file, `Content-Type` its type (PDF, PNG,
/// JPEG, plain text, ODT or DOCX, checked against the content), at most
/// `[portal] attachment_max_bytes`.
#[utoipa::path(post, path = "/api/portal/cases/{id}/attachments", tag = "cases",
    params(("id" = u64, Path, description = "case number"), Upload),
    request_body(content = Vec<u8>, content_type = "application/pdf", description = "the file"),
    responses((status = 201, body = Attachment), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn attach(api: Arc<Api>, c: Caller, id: u64, (up, ct, bytes): UploadParts) -> Answer {
    let declared = ct.unwrap_or_default();
    let a = api
        .work
        .attach(
            &c.viewer,
            id,
            up.name,
            &declared,
            bytes.to_vec(),
            api.attachment_max_bytes,
        )
        .await?;
    Ok(json(StatusCode::CREATED, &a))
}

/// `filename*` of RFC 6266 / 8187: UTF-8, percent-encoded.
fn filename_star(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The name for clients that ignore `filename*`: ASCII letters, digits and `.-_ `.
fn ascii_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Downloads an attachment, checked against its recorded SHA-256 (`Repr-Digest`).
#[utoipa::path(get, path = "/api/portal/cases/{id}/attachments/{n}", tag = "cases",
    params(("id" = u64, Path, description = "case number"), ("n" = u64, Path, description = "attachment number")),
    responses((status = 200, description = "the file, as an attachment", body = Vec<u8>), (status = 403, body = ErrorBody)))]
async fn download(api: Arc<Api>, c: Caller, (id, n): (u64, u64)) -> Answer {
    let (meta, bytes) = api.work.attachment(&c.viewer, id, n).await?;
    let mut r = Response::new(bytes.into());
    let h = r.headers_mut();
    let value = |s: String| {
        HeaderValue::from_str(&s)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
    };
    h.insert(header::CONTENT_TYPE, value(meta.media_type.clone()));
    h.insert(
        header::CONTENT_DISPOSITION,
        value(format!(
            "attachment; filename=\"{}\"; filename*=UTF-8''{}",
            ascii_name(&meta.name),
            filename_star(&meta.name)
        )),
    );
    // Never rendered as a page of ours, even if opened directly.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(raw) = hex::decode(&meta.sha256) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        h.insert("repr-digest", value(format!("sha-256=:{b64}:")));
    }
    Ok(r)
}

/// The caller's saved filters.
#[utoipa::path(get, path = "/api/portal/filters", tag = "cases",
    responses((status = 200, body = [SavedFilter])))]
async fn filters(api: Arc<Api>, c: Caller) -> Answer {
    ok(&api.work.filters(&c.viewer).await?)
}

/// Saves a filter under its name.
#[utoipa::path(put, path = "/api/portal/filters", tag = "cases", request_body = SavedFilter,
    responses((status = 204), (status = 400, body = ErrorBody)))]
async fn put_filter(api: Arc<Api>, c: Caller, f: SavedFilter) -> Answer {
    api.work.put_filter(&c.viewer, f).await?;
    no_content()
}

/// Which saved filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FilterName {
    name: String,
}

/// Deletes a saved filter.
#[utoipa::path(delete, path = "/api/portal/filters", tag = "cases", params(FilterName),
    responses((status = 204)))]
async fn delete_filter(api: Arc<Api>, c: Caller, f: FilterName) -> Answer {
    api.work.delete_filter(&c.viewer, &f.name).await?;
    no_content()
}

/// A report request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// What to group by.
    by: Dimension,
    /// First day, `YYYY-MM-DD` (UTC).
    from: String,
    /// Day after the last, `YYYY-MM-DD` (UTC).
    to: String,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// Milliseconds at the start of a `YYYY-MM-DD` day (UTC).
pub fn day_start(date: &str) -> Option<u64> {
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some()
        || !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if d > days_in_month {
        return None;
    }
    let (y, mp) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).ok().map(|d| d * 86_400_000)
}

fn ms_text(v: Option<u64>) -> String {
    v.map(|ms| format!("{:.2}", ms as f64 / 3_600_000.0))
        .unwrap_or_default()
}

/// Counts, medians and 90th percentiles of the three times (hours in CSV, milliseconds in
/// JSON), deadline compliance; over the cases the caller may see.
#[utoipa::path(get, path = "/api/portal/reports", tag = "reports", params(ReportQuery),
    responses((status = 200, body = [ReportRow]), (status = 200, content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody)))]
async fn reports(api: Arc<Api>, c: Caller, q: ReportQuery) -> Answer {
    let from = day_start(&q.from).ok_or_else(|| bad("from: a date as YYYY-MM-DD"))?;
    let to = day_start(&q.to).ok_or_else(|| bad("to: a date as YYYY-MM-DD"))?;
    let rows = api.work.report(&c.viewer, from, to, q.by).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => ok(&rows),
        "csv" => {
            let header = [
                "group",
                "cases",
                "apply_median_h",
                "apply_p90_h",
                "execution_median_h",
                "execution_p90_h",
                "deliver_median_h",
                "deliver_p90_h",
                "deadline_breached",
                "deadline_compliance",
            ];
            let body = report::csv(
                &header,
                rows.iter().map(|r| {
                    let s = &r.summary;
                    vec![
                        r.key.clone(),
                        s.cases.to_string(),
                        ms_text(s.time_to_apply.median),
                        ms_text(s.time_to_apply.p90),
                        ms_text(s.execution_time.median),
                        ms_text(s.execution_time.p90),
                        ms_text(s.time_to_deliver.median),
                        ms_text(s.time_to_deliver.p90),
                        s.deadline_breached.to_string(),
                        format!("{:.4}", s.deadline_compliance),
                    ]
                }),
            );
            let mut r = Response::new(body.into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"report.csv\""),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(r)
        }
        other => Err(bad(format!("format: {other:?} is neither json nor csv"))),
    }
}

/// The error body every failure has.
#[derive(Debug, Serialize, ToSchema)]
struct ErrorBody {
    /// Machine-readable: `bad_request`, `unauthenticated`, `forbidden`, `conflict`, …
    code: String,
    /// Safe to show.
    message: String,
    request_id: String,
}

/// The OpenAPI document of the portal API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kopa portal API", description = "VPVKAC case work: organisation, catalogue, clients, cases, reports. Every call needs the portal's SSO session cookie; writes need a same-origin JSON body."),
    paths(me, institutions, put_institution, centres, put_centre, staff, put_staff, services,
        put_service, search_clients, add_client, client, unmask, list_cases, register, case,
        move_case, add_note, assign, attach, download, filters, put_filter, delete_filter, reports),
    components(schemas(Dimension, Channel, State)),
    tags((name = "portal"), (name = "organisation"), (name = "catalogue"), (name = "clients"),
        (name = "cases"), (name = "reports"))
)]
struct ApiDoc;

/// The OpenAPI document as pretty JSON (what `/api/openapi.json` serves and
/// `docs/openapi.json` holds).
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

// ---- routes ---------------------------------------------------------------------------

type Route = warp::filters::BoxedFilter<(Reply,)>;
type Part<T> = warp::filters::BoxedFilter<(T,)>;

/// A query string of type `Q`, with serde's own message when it does not fit.
fn query<Q: DeserializeOwned + Send + 'static>() -> Part<Q> {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            serde_urlencoded::from_str::<Q>(&raw)
                .map_err(|e| bad(format!("Invalid query: {e}")).into_rejection())
        })
        .boxed()
}

/// Nothing more from the request.
fn nothing() -> Part<()> {
    warp::any().map(|| ()).boxed()
}

/// A route: `before` (path, method, origin) picks it, then the caller must be signed in,
/// and only then is `after` (query, body) read, so a stranger gets 401 whatever they
/// send and never has a body buffered.
fn route<T, U, F, Fut>(api: &Arc<Api>, before: Part<T>, after: Part<U>, h: F) -> Route
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(Arc<Api>, Caller, T, U) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let api2 = api.clone();
    before
        .and(caller(api.clone()))
        .and(after)
        .then(move |t: T, c: Caller, u: U| {
            let (api, h) = (api2.clone(), h.clone());
            async move { reply(h(api, c, t, u).await) }
        })
        .boxed()
}

fn p(segment: &'static str) -> warp::filters::BoxedFilter<()> {
    warp::path("api")
        .and(warp::path("portal"))
        .and(warp::path(segment))
        .boxed()
}

/// `GET /api/portal/<segment>`.
fn get(segment: &'static str) -> Part<()> {
    p(segment)
        .and(warp::path::end())
        .and(warp::get())
        .map(|| ())
        .boxed()
}

/// `GET /api/portal/<segment>/<id>`.
fn get_id(segment: &'static str) -> Part<u64> {
    p(segment)
        .and(warp::path::param::<u64>())
        .and(warp::path::end())
        .and(warp::get())
        .boxed()
}

/// A write to `/api/portal/<segment>` by `method`, from our own origin.
fn write(
    segment: &'static str,
    method: impl Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
) -> Part<()> {
    p(segment)
        .and(warp::path::end())
        .and(method)
        .and(same_origin())
        .map(|| ())
        .boxed()
}

/// `PUT /api/portal/<segment>/<key>` from our own origin.
fn put_key(segment: &'static str) -> Part<String> {
    p(segment)
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::put())
        .and(same_origin())
        .boxed()
}

/// `POST /api/portal/<segment>/<id>/<action>` from our own origin.
fn post_action(segment: &'static str, action: &'static str) -> Part<u64> {
    p(segment)
        .and(warp::path::param::<u64>())
        .and(warp::path(action))
        .and(warp::path::end())
        .and(warp::post())
        .and(same_origin())
        .boxed()
}

/// An upload's query, declared type and bytes.
fn upload_parts() -> Part<UploadParts> {
    query::<Upload>()
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::bytes())
        .map(|up: Upload, ct: Option<String>, b: bytes::Bytes| (up, ct, b))
        .boxed()
}

/// All routes of the API, and the OpenAPI document.
pub fn routes(api: Arc<Api>) -> Route {
    let a = &api;
    let all: Vec<Route> = vec![
        route(a, get("me"), nothing(), |api, c, (), ()| me(api, c)),
        route(a, get("institutions"), nothing(), |api, c, (), ()| {
            institutions(api, c)
        }),
        route(a, get("centres"), nothing(), |api, c, (), ()| {
            centres(api, c)
        }),
        route(a, get("staff"), nothing(), |api, c, (), ()| staff(api, c)),
        route(a, get("services"), nothing(), |api, c, (), ()| {
            services(api, c)
        }),
        route(a, get("filters"), nothing(), |api, c, (), ()| {
            filters(api, c)
        }),
        route(a, get("clients"), query(), |api, c, (), q| {
            search_clients(api, c, q)
        }),
        route(a, get("cases"), query(), |api, c, (), q| {
            list_cases(api, c, q)
        }),
        route(a, get("reports"), query(), |api, c, (), q| {
            reports(api, c, q)
        }),
        route(
            a,
            write("filters", warp::delete()),
            query(),
            |api, c, (), q| delete_filter(api, c, q),
        ),
        route(a, get_id("clients"), nothing(), |api, c, id, ()| {
            client(api, c, id)
        }),
        route(a, get_id("cases"), nothing(), |api, c, id, ()| {
            case(api, c, id)
        }),
        route(a, write("staff", warp::put()), body(), |api, c, (), b| {
            put_staff(api, c, b)
        }),
        route(a, write("filters", warp::put()), body(), |api, c, (), b| {
            put_filter(api, c, b)
        }),
        route(
            a,
            write("clients", warp::post()),
            body(),
            |api, c, (), b| add_client(api, c, b),
        ),
        route(a, write("cases", warp::post()), body(), |api, c, (), b| {
            register(api, c, b)
        }),
        route(a, put_key("institutions"), body(), put_institution),
        route(a, put_key("centres"), body(), put_centre),
        route(a, put_key("services"), body(), put_service),
        route(
            a,
            post_action("clients", "unmask"),
            nothing(),
            |api, c, id, ()| unmask(api, c, id),
        ),
        route(a, post_action("cases", "moves"), body(), move_case),
        route(a, post_action("cases", "notes"), body(), add_note),
        route(a, post_action("cases", "assignee"), body(), assign),
        route(
            a,
            post_action("cases", "attachments"),
            upload_parts(),
            attach,
        ),
        route(
            a,
            p("cases")
                .and(warp::path::param::<u64>())
                .and(warp::path("attachments"))
                .and(warp::path::param::<u64>())
                .and(warp::path::end())
                .and(warp::get())
                .map(|id: u64, n: u64| (id, n))
                .boxed(),
            nothing(),
            |api, c, at, ()| download(api, c, at),
        ),
    ];
    let doc = warp::path("api")
        .and(warp::path("openapi.json"))
        .and(warp::path::end())
        .and(warp::get())
        .map(|| {
            let mut r = Response::new(openapi_json().into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        })
        .boxed();
    all.into_iter()
        .fold(doc, |acc, r| acc.or(r).unify().boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn openapi_document_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let checked = kopa_core::generated::check_or_bless(&path, &openapi_json());
        assert!(checked.is_ok(), "{checked:?}");
    }

    #[test]
    fn openapi_document_describes_every_route_and_schema() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/api/portal/me",
            "/api/portal/cases",
            "/api/portal/cases/{id}",
            "/api/portal/cases/{id}/moves",
            "/api/portal/clients/{id}/unmask",
            "/api/portal/reports",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for s in [
            "CaseView",
            "CaseDetail",
            "HistoryEntry",
            "Service",
            "ReportRow",
            "ErrorBody",
        ] {
            assert!(schemas.contains_key(s), "{s}");
        }
        // Every $ref resolves.
        let text = openapi_json();
        for r in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
    }

    #[test]
    fn dates_are_days_since_the_epoch() {
        assert_eq!(day_start("1970-01-01"), Some(0));
        assert_eq!(day_start("2026-11-27"), Some(1_795_737_600_000));
        assert_eq!(day_start("2024-03-01"), Some(1_709_251_200_000));
        assert_eq!(day_start("2026-13-01"), None);
        assert_eq!(day_start("2026-1"), None);
        assert_eq!(day_start("2026-02-29"), None);
        assert!(day_start("2024-02-29").is_some());
        assert_eq!(crate::index::year_month(1_795_737_600_000), (2026, 11));
        assert_eq!(crate::index::year_month(1_709_251_200_000 - 1), (2024, 2));
    }
}
