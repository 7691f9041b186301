//! The HTTPS edge against real clients: our rustls/hyper client for HTTP/1.1 and HTTP/2,
//! OpenSSL's s_client for protocol versions, raw bytes for malformed input.

use bytes::Bytes;
use http_body_util::Full;
use kopa_tests::{Client, Proto, start_in};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client_for(data_dir: &std::path::Path) -> Client {
    Client::trusting(&data_dir.join("tls/cert.pem"))
}

fn assert_security_headers(resp: &kopa_tests::Resp) {
    assert!(
        resp.header("strict-transport-security")
            .starts_with("max-age="),
        "{:?}",
        resp.headers
    );
    let csp = resp.header("content-security-policy");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(resp.header("x-content-type-options"), "nosniff");
    assert_eq!(resp.header("referrer-policy"), "same-origin");
    assert!(!resp.header("x-request-id").is_empty());
}

#[tokio::test]
async fn health_and_readiness_report_version_and_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let kopa = start_in(dir.path()).await;
    let client = client_for(dir.path());

    let health = client.get(kopa.addr, Proto::H2, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["version"], kopa_core::VERSION);

    let ready = client.get(kopa.addr, Proto::H1, "/readyz").await;
    assert_eq!(ready.status, 200);
    let body = ready.json();
    assert_eq!(body["status"], "ready");
    for service in ["idp", "monitor", "portal", "hypervisor"] {
        assert_eq!(body["services"][service]["status"], "ready", "{body}");
    }
    kopa.shutdown().await;
}

#[tokio::test]
async fn both_protocols_answer_errors_as_json_with_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let kopa = start_in(dir.path()).await;
    let client = client_for(dir.path());
    for proto in [Proto::H1, Proto::H2] {
        let resp = client.get(kopa.addr, proto, "/no/such/page").await;
        let expected = if proto == Proto::H2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(resp.version, expected);
        assert_eq!(resp.status, 404);
        assert_security_headers(&resp);
        let body = resp.json();
        assert_eq!(body["code"], "not_found");
        assert!(!body["message"].as_str().unwrap().is_empty());
        assert_eq!(body["request_id"], resp.header("x-request-id"));

        let ok = client.get(kopa.addr, proto, "/healthz").await;
        assert_security_headers(&ok);
        assert_ne!(ok.header("x-request-id"), resp.header("x-request-id"));

        let post = http::Request::post("https://127.0.0.1/healthz")
            .body(Full::default())
            .unwrap();
        let resp = client.send(kopa.addr, proto, post).await;
        assert_eq!(resp.status, 405);
        assert_eq!(resp.json()["code"], "method_not_allowed");
    }
    kopa.shutdown().await;
}

fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed (make test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let kopa = start_in(dir.path()).await;
    let addr = kopa.addr;
    let results = tokio::task::spawn_blocking(move || {
        [
            // SECLEVEL=0 lets OpenSSL offer the old versions, so the refusal is the server's.
            s_client(addr, &["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            s_client(addr, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            s_client(addr, &["-tls1_2", "-alpn", "h2"]),
            s_client(addr, &["-tls1_3", "-alpn", "http/1.1"]),
        ]
    })
    .await
    .unwrap();
    // The refusal must be the server's: OpenSSL sent the old hello and got an alert back.
    for (ok, out) in &results[..2] {
        assert!(!ok, "old TLS accepted:\n{out}");
        assert!(
            out.contains("SSL alert number"),
            "no alert from the server:\n{out}"
        );
    }
    assert!(
        results[2].0 && results[2].1.contains("TLSv1.2"),
        "{}",
        results[2].1
    );
    assert!(
        results[2].1.contains("ALPN protocol: h2"),
        "{}",
        results[2].1
    );
    assert!(
        results[3].0 && results[3].1.contains("TLSv1.3"),
        "{}",
        results[3].1
    );
    assert!(
        results[3].1.contains("ALPN protocol: http/1.1"),
        "{}",
        results[3].1
    );
    kopa.shutdown().await;
}

async fn raw_tls(
    addr: SocketAddr,
    cert: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            tcp,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_http_gets_400_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let kopa = start_in(dir.path()).await;
    let cert = dir.path().join("tls/cert.pem");
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.7\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut tls = raw_tls(kopa.addr, &cert).await;
        tls.write_all(garbage).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 4"), "{garbage:?} -> {text:?}");
    }
    let ok = client_for(dir.path())
        .get(kopa.addr, Proto::H1, "/healthz")
        .await;
    assert_eq!(ok.status, 200);
    kopa.shutdown().await;
}

#[tokio::test]
async fn declared_oversized_body_is_413_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let kopa = start_in(dir.path()).await;
    let client = client_for(dir.path());
    let big = vec![b'x'; 2 * 1024 * 1024];
    let req = http::Request::post("https://127.0.0.1/healthz")
        .header("content-type", "application/octet-stream")
        .body(Full::new(Bytes::from(big)))
        .unwrap();
    let resp = client.send(kopa.addr, Proto::H2, req).await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.json()["code"], "payload_too_large");
    assert_security_headers(&resp);
    assert_eq!(
        client.get(kopa.addr, Proto::H2, "/healthz").await.status,
        200
    );
    kopa.shutdown().await;
}

#[tokio::test]
async fn slow_request_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.server.header_read_timeout_secs = 1;
    let kopa = kopa::start(config).await.unwrap();
    let mut tls = raw_tls(kopa.addr, &dir.path().join("tls/cert.pem")).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    kopa.shutdown().await;
}

/// A bare edge with test routes, for behaviour that needs a slow or body-reading handler.
async fn bare_edge(dir: &std::path::Path, max_body: u64, grace: Duration) -> BareEdge {
    use warp::Filter;
    let pem = kopa_web::tls::self_signed(&["127.0.0.1".into()], 2).unwrap();
    std::fs::write(dir.join("cert.pem"), &pem.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &pem.key_pem).unwrap();
    let cert = kopa_web::ReloadableCert::open(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = started.clone();
    let slow = warp::path("slow").then(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(3000)).await;
            "done"
        }
    });
    let echo = warp::path("echo")
        .and(warp::body::bytes())
        .map(|b: Bytes| format!("{}", b.len()));
    let routes = slow.or(echo).recover(kopa_web::recover);
    let server = kopa_web::Server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let settings = kopa_web::EdgeSettings {
        max_body_bytes: max_body,
        upload_max_body_bytes: max_body,
        header_read_timeout: Duration::from_secs(5),
        tls_handshake_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        shutdown_grace: grace,
        max_connections: 64,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tls = cert.server_config().unwrap();
    let task = tokio::spawn(server.serve(warp::service(routes), tls, settings, async {
        let _ = rx.await;
    }));
    BareEdge {
        addr,
        stop: tx,
        task,
        started,
    }
}

struct BareEdge {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<kopa_web::ServeSummary>,
    /// Requests that reached the slow handler.
    started: Arc<std::sync::atomic::AtomicUsize>,
}

impl BareEdge {
    async fn wait_slow_started(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the slow request never reached its handler"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let edge = bare_edge(dir.path(), 1024, Duration::from_secs(5)).await;
    let client = Client::trusting(&dir.path().join("cert.pem"));
    let small = http::Request::post("https://127.0.0.1/echo")
        .body(Full::new(Bytes::from(vec![1u8; 1000])))
        .unwrap();
    let resp = client.send(edge.addr, Proto::H2, small).await;
    assert_eq!((resp.status, &resp.body[..]), (200, &b"1000"[..]));

    // Chunked, so no length is declared: the limit must hold while the body streams.
    let mut tls = raw_tls(edge.addr, &dir.path().join("cert.pem")).await;
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        request.extend_from_slice(b"3e8\r\n");
        request.extend_from_slice(&[b'x'; 1000]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    tls.write_all(&request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    let _ = edge.stop.send(());
    edge.task.await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let dir = tempfile::tempdir().unwrap();
    let edge = bare_edge(dir.path(), 1024, Duration::from_secs(10)).await;
    let client = Client::trusting(&dir.path().join("cert.pem"));
    let (mut conn, _) = client.connect(edge.addr, Proto::H2).await;
    let in_flight = tokio::spawn(async move { conn.send(kopa_tests::client::get("/slow")).await });
    edge.wait_slow_started().await;
    let _ = edge.stop.send(());
    let resp = in_flight.await.unwrap();
    assert_eq!((resp.status, &resp.body[..]), (200, &b"done"[..]));
    let summary = edge.task.await.unwrap();
    assert_eq!(summary.dropped_connections, 0);
    assert!(
        tokio::net::TcpStream::connect(edge.addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let edge = bare_edge(dir.path(), 1024, Duration::from_millis(200)).await;
    let client = Client::trusting(&dir.path().join("cert.pem"));
    let (mut conn, _) = client.connect(edge.addr, Proto::H1).await;
    let _in_flight = tokio::spawn(async move { conn.send(kopa_tests::client::get("/slow")).await });
    edge.wait_slow_started().await;
    let started = Instant::now();
    let _ = edge.stop.send(());
    let summary = edge.task.await.unwrap();
    // The handler sleeps 3 s; returning well before proves the grace period cut it off.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(summary.dropped_connections, 1);
}
