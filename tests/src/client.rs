//! A small HTTPS client over rustls and hyper, so tests choose the protocol (ALPN h2 or
//! http/1.1), keep a connection open across events, and see the server's certificate.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Which HTTP version to negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 (ALPN http/1.1).
    H1,
    /// HTTP/2 (ALPN h2).
    H2,
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
    /// HTTP version used.
    pub version: http::Version,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A client trusting exactly one certificate (the appliance's self-signed one).
#[derive(Debug, Clone)]
pub struct Client {
    base: Arc<rustls::ClientConfig>,
}

/// An open connection.
pub enum Conn {
    /// HTTP/1.1.
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::H1(_) => "Conn::H1",
            Conn::H2(_) => "Conn::H2",
        })
    }
}

impl Client {
    /// Trusts the certificates in the PEM file at `ca`.
    pub fn trusting(ca: &Path) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let base = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            base: Arc::new(base),
        }
    }

    /// Opens a TLS connection to `addr` negotiating `proto`; returns it and the server's
    /// leaf certificate fingerprint.
    pub async fn connect(&self, addr: SocketAddr, proto: Proto) -> (Conn, String) {
        let tls = self.connect_tls(addr, proto).await;
        let (_, session) = tls.get_ref();
        let leaf = session.peer_certificates().unwrap()[0].clone();
        let fingerprint = kopa_web::tls::fingerprint(leaf.as_ref());
        let negotiated = session.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let conn = match proto {
            Proto::H1 => {
                assert_eq!(negotiated.as_deref(), Some(&b"http/1.1"[..]));
                let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Proto::H2 => {
                assert_eq!(
                    negotiated.as_deref(),
                    Some(&b"h2"[..]),
                    "server must offer h2"
                );
                let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Conn::H2(send)
            }
        };
        (conn, fingerprint)
    }

    /// Opens a TLS connection to `addr` negotiating `proto` (TCP_NODELAY), without an
    /// HTTP layer on top.
    pub async fn connect_tls(
        &self,
        addr: SocketAddr,
        proto: Proto,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut config = (*self.base).clone();
        config.alpn_protocols = vec![match proto {
            Proto::H1 => b"http/1.1".to_vec(),
            Proto::H2 => b"h2".to_vec(),
        }];
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::IpAddress(addr.ip().into());
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake with Kopa")
    }

    /// One request on a fresh connection.
    pub async fn send(
        &self,
        addr: SocketAddr,
        proto: Proto,
        req: http::Request<Full<Bytes>>,
    ) -> Resp {
        let (mut conn, _) = self.connect(addr, proto).await;
        conn.send(req).await
    }

    /// GET `path` on a fresh connection.
    pub async fn get(&self, addr: SocketAddr, proto: Proto, path: &str) -> Resp {
        self.send(addr, proto, get(path)).await
    }
}

/// A GET request for `path`.
pub fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("https://127.0.0.1{path}"))
        .body(Full::default())
        .unwrap()
}

impl Conn {
    /// Sends `req` on this connection and reads the whole response.
    pub async fn send(&mut self, mut req: http::Request<Full<Bytes>>) -> Resp {
        let resp = match self {
            Conn::H1(s) => {
                // HTTP/1.1 wants origin-form and a Host header (the URI's authority, port
                // included, so that it matches an Origin built from the same address).
                let host = req
                    .uri()
                    .authority()
                    .map(|a| a.as_str().to_owned())
                    .unwrap_or("127.0.0.1".into());
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or("/".into());
                *req.uri_mut() = pq.parse().unwrap();
                req.headers_mut()
                    .insert(http::header::HOST, host.parse().unwrap());
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
            Conn::H2(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            version: parts.version,
        }
    }
}
