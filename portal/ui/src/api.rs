//! Calls to `/api/portal` and the shapes they answer with (the server's OpenAPI document
//! is the reference). A 401 means the portal session ended: the page reloads, which
//! passes through the sign-in and comes back here.

use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Me {
    pub subject: String,
    #[serde(default)]
    pub name: String,
    pub roles: Vec<String>,
    pub centres: Vec<String>,
    pub institutions: Vec<String>,
    pub may_unmask: bool,
}

impl Me {
    pub fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn front_office(&self) -> bool {
        self.has("specialist") || self.has("supervisor")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bilingual {
    pub lv: String,
    pub en: String,
}

impl Bilingual {
    pub fn get(&self, lang: crate::i18n::Lang) -> String {
        crate::i18n::tr(lang, &self.lv, &self.en).to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Service {
    pub code: String,
    pub name: Bilingual,
    pub owner: String,
    pub channels: Vec<String>,
    pub deadline_days: Option<u32>,
    #[serde(default)]
    pub required_documents: Vec<Bilingual>,
    #[serde(default)]
    pub instructions: Option<Bilingual>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Institution {
    pub id: String,
    pub name: Bilingual,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Centre {
    pub id: String,
    pub name: Bilingual,
    pub institution: String,
    pub serves: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Client {
    pub id: u64,
    pub kind: String,
    pub name: String,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stages {
    pub request_started: Option<u64>,
    pub registered: u64,
    pub decided: Option<u64>,
    pub delivered: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Indicators {
    pub time_to_apply: Option<u64>,
    pub execution_time: Option<u64>,
    pub time_to_deliver: Option<u64>,
    pub deadline_breached: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Case {
    pub id: u64,
    pub service: String,
    pub service_name: Bilingual,
    pub owner: String,
    pub centre: String,
    pub channel: String,
    pub client: Option<Client>,
    pub assignee: Option<String>,
    pub state: String,
    pub stages: Stages,
    pub due: Option<u64>,
    pub indicators: Indicators,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryEntry {
    pub at: u64,
    pub by: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<serde_json::Value>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: Case,
    pub history: Vec<HistoryEntry>,
    pub next_states: Vec<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Attachment {
    pub n: u64,
    pub name: String,
    pub media_type: String,
    pub size: u64,
    pub sha256: String,
    pub at: u64,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CasePage {
    pub cases: Vec<Case>,
    pub next: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Spread {
    pub count: u64,
    pub median: Option<u64>,
    pub p90: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReportRow {
    pub key: String,
    pub cases: u64,
    pub time_to_apply: Spread,
    pub execution_time: Spread,
    pub time_to_deliver: Spread,
    pub deadline_breached: u64,
    pub deadline_compliance: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Unmasked {
    pub id: u64,
    pub code: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

async fn read<T: DeserializeOwned>(resp: Result<Response, gloo_net::Error>) -> Result<T, String> {
    read_status(resp).await.map_err(|(_, e)| e)
}

/// Like `read`, keeping the HTTP status of a failure (0: no answer).
async fn read_status<T: DeserializeOwned>(
    resp: Result<Response, gloo_net::Error>,
) -> Result<T, (u16, String)> {
    let resp = resp.map_err(|e| (0, e.to_string()))?;
    let status = resp.status();
    if status == 401 {
        if let Some(w) = web_sys::window() {
            let _ = w.location().reload();
        }
        return Err((401, "Session ended".into()));
    }
    if !resp.ok() {
        let message = match resp.json::<ErrorBody>().await {
            Ok(b) => b.message,
            Err(_) => format!("HTTP {status}"),
        };
        return Err((status, message));
    }
    if status == 204 {
        return serde_json::from_str("null").map_err(|e| (status, e.to_string()));
    }
    resp.json::<T>().await.map_err(|e| (status, e.to_string()))
}

/// `POST url` with a JSON body; a failure keeps its HTTP status.
pub async fn post_status<B: Serialize, T: DeserializeOwned>(
    url: &str,
    body: &B,
) -> Result<T, (u16, String)> {
    let req = Request::post(url)
        .json(body)
        .map_err(|e| (0, e.to_string()))?;
    read_status(req.send().await).await
}

/// `GET url`.
pub async fn get<T: DeserializeOwned>(url: &str) -> Result<T, String> {
    read(Request::get(url).send().await).await
}

/// `POST url` with a JSON body (or none).
pub async fn post<B: Serialize, T: DeserializeOwned>(
    url: &str,
    body: Option<&B>,
) -> Result<T, String> {
    let req = Request::post(url);
    let sent = match body {
        Some(b) => req.json(b).map_err(|e| e.to_string())?.send().await,
        None => req.send().await,
    };
    read(sent).await
}

/// `PUT url` with a JSON body; no content back.
pub async fn put<B: Serialize>(url: &str, body: &B) -> Result<(), String> {
    let sent = Request::put(url)
        .json(body)
        .map_err(|e| e.to_string())?
        .send()
        .await;
    read::<serde_json::Value>(sent).await.map(|_| ())
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SavedFilter {
    pub name: String,
    pub query: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Assignment {
    pub subject: String,
    pub centres: Vec<String>,
}

/// `POST url` with `file` as the body and its type as `Content-Type`.
pub async fn upload(url: &str, file: &web_sys::File) -> Result<Attachment, String> {
    let media = file.type_();
    let media = if media.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        media
    };
    let req = Request::post(url)
        .header("content-type", &media)
        .body(wasm_bindgen::JsValue::from(file.clone()))
        .map_err(|e| e.to_string())?;
    read(req.send().await).await
}

/// `component=value` pairs as a query string.
pub fn query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", String::from(js_sys::encode_uri_component(v))))
        .collect::<Vec<_>>()
        .join("&")
}
