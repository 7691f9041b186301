//! Kopa's own outgoing HTTP/1.1 requests (OIDC back-channel logout tokens, SAML metadata
//! fetches, alert webhooks): TLS verified against the system's roots, or plain HTTP where the caller
//! allows it; one connection per request, a bounded response body.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;

/// The client TLS configuration for outgoing connections: the system's roots, safe
/// protocol versions, aws-lc-rs.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                });
            Arc::new(config)
        })
        .clone()
}

/// An answer: its status, and its body unless that was larger than the limit.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Option<Bytes>,
}

/// Sends `method` to `uri` with an optional form `body`; the answer's body is read up to
/// `body_limit` bytes (beyond, it is dropped and `None`). Errors are short reason codes
/// (`bad_uri`, `connect_failed`, `tls_failed`, `request_failed`), safe to audit.
pub async fn exchange(
    method: Method,
    uri: &str,
    accept: &str,
    form_body: Option<String>,
    body_limit: usize,
) -> Result<Answer, String> {
    let body = form_body.map(|b| Body {
        content_type: "application/x-www-form-urlencoded",
        bytes: b.into_bytes(),
        headers: Vec::new(),
    });
    send_to(method, uri, accept, body, body_limit).await
}

/// A request body with its media type and any extra headers (e.g. a signature).
#[derive(Debug, Clone)]
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Like [`exchange`], with any body.
pub async fn send_to(
    method: Method,
    uri: &str,
    accept: &str,
    body: Option<Body>,
    body_limit: usize,
) -> Result<Answer, String> {
    let url = url::Url::parse(uri).map_err(|_| "bad_uri".to_owned())?;
    let host = url.host_str().ok_or("bad_uri")?.to_owned();
    let tls = match url.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err("bad_uri".into()),
    };
    let port = url.port_or_known_default().ok_or("bad_uri")?;
    let connect_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = TcpStream::connect((connect_host.as_str(), port))
        .await
        .map_err(|_| "connect_failed".to_owned())?;
    let _ = tcp.set_nodelay(true);
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, accept)
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .header(hyper::header::USER_AGENT, "Kopa");
    let mut bytes = Vec::new();
    if let Some(body) = body {
        request = request.header(hyper::header::CONTENT_TYPE, body.content_type);
        for (name, value) in body.headers {
            request = request.header(name, value);
        }
        bytes = body.bytes;
    }
    let request = request
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|_| "bad_uri".to_owned())?;
    if tls {
        let name = ServerName::try_from(connect_host).map_err(|_| "bad_uri".to_owned())?;
        let stream = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, tcp)
            .await
            .map_err(|_| "tls_failed".to_owned())?;
        send(TokioIo::new(stream), request, body_limit).await
    } else {
        send(TokioIo::new(tcp), request, body_limit).await
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>, limit: usize) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|_| "handshake_failed".to_owned())?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(request)
        .await
        .map_err(|_| "request_failed".to_owned())?;
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), limit)
        .collect()
        .await
        .ok()
        .map(http_body_util::Collected::to_bytes);
    Ok(Answer { status, body })
}
