//! Delivery of back-channel logout tokens: one HTTP/1.1 POST per relying party, over
//! TLS verified against the system's roots (or plain HTTP to a loopback address, which
//! client registration allows only there), with a time limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;

/// Sends logout tokens.
#[derive(Debug, Clone)]
pub struct Sender {
    timeout: Duration,
}

fn tls_config() -> Arc<rustls::ClientConfig> {
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

impl Sender {
    /// A sender giving each endpoint `timeout_secs` to answer.
    pub fn new(timeout_secs: u64) -> Self {
        Self {
            timeout: Duration::from_secs(timeout_secs.max(1)),
        }
    }

    /// POSTs `logout_token=<token>` to `uri`; Ok on a 2xx answer.
    pub async fn post_logout_token(&self, uri: &str, token: &str) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.post(uri, token)).await {
            Ok(r) => r,
            Err(_) => Err("timeout".into()),
        }
    }

    async fn post(&self, uri: &str, token: &str) -> Result<(), String> {
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
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", token)
            .finish();
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let request = Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::CACHE_CONTROL, "no-store")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "bad_uri".to_owned())?;
        let status = if tls {
            let name = ServerName::try_from(connect_host).map_err(|_| "bad_uri".to_owned())?;
            let stream = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, tcp)
                .await
                .map_err(|_| "tls_failed".to_owned())?;
            send(TokioIo::new(stream), request).await?
        } else {
            send(TokioIo::new(tcp), request).await?
        };
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("http_{status}"))
        }
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<u16, String>
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
    // Read (and drop) a bounded body so the connection ends cleanly.
    let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await;
    Ok(status)
}
