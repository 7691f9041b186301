//! Benchmarks that need the testkit (real slapd, in-process appliance). Prints one JSON
//! object; `scripts/bench.py` turns it into rows of BENCHMARKS.md.
//!
//! `kopa-bench login [SECONDS] [CLIENTS] [h1|h1-hyper|h2] [POOL]`: full sign-ins per second
//! through the HTTPS form (keep-alive HTTP/1.1 or HTTP/2), next to a plain ldap3 search+bind
//! client with the same pool size against the same slapd, in the same run, with the CPU
//! each phase cost this process and slapd per operation. The load generator shares this
//! process and its two cores with Kopa, so for HTTP/1.1 it is a lean one ([`LeanH1`]: the
//! request's bytes written, the response read to its end); `h1-hyper` sends the same
//! requests through hyper's client instead, as HTTP/2 does.
//! `kopa-bench sessions [COUNT]`: resident memory added by COUNT stored SSO sessions.
//! `kopa-bench saml [SECONDS]`: signed SAML Responses per second on one thread next to raw
//! RSA-2048 signatures per second on one thread, in the same run.
//! `kopa-bench token [SECONDS] [CLIENTS]`: `client_credentials` grants per second at the
//! token endpoint, ES256 and RS256, over keep-alive HTTP/1.1 and over a new TLS connection
//! per request, next to the raw signature rate of the same algorithms (aws-lc-rs, every
//! core) and to `/healthz` over a new TLS connection per request, all in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http_body_util::Full;
use kopa_tests::browser::{form_encode, hidden};
use kopa_tests::client::{Client, Proto};
use kopa_tests::slapd::{Municipality, RawPool, Slapd, user};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// LDAP connections per pool (search and bind), for Kopa and the raw client alike.
const POOL: usize = 8;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user and system) used so far by process `pid` ("self" for this one), from
/// /proc; Linux reports them in USER_HZ, 100 per second on every architecture it runs on.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may itself hold spaces: state is the first,
    // utime the twelfth, stime the thirteenth.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// CPU used by this process (the appliance and the bench client, or the raw client) and
/// by slapd between two points.
struct CpuMark {
    own: f64,
    slapd: f64,
    slapd_pid: String,
}

impl CpuMark {
    fn now(slapd: &Slapd) -> Self {
        let slapd_pid = slapd.pid().expect("slapd is running").to_string();
        Self {
            own: cpu_secs("self"),
            slapd: cpu_secs(&slapd_pid),
            slapd_pid,
        }
    }

    /// CPU seconds of this process and of slapd since this mark.
    fn since(&self) -> (f64, f64) {
        (
            cpu_secs("self") - self.own,
            cpu_secs(&self.slapd_pid) - self.slapd,
        )
    }
}

/// Slices each side of the sign-in benchmark is measured in, alternating with the other,
/// so that the machine's drift (this kind of virtual machine's speed moves by a fifth
/// within minutes) touches Kopa and the baseline alike.
const SLICES: u32 = 4;

/// Totals of one side of the sign-in benchmark over its slices.
#[derive(Default)]
struct Side {
    ops: u64,
    secs: f64,
    own_cpu: f64,
    slapd_cpu: f64,
}

impl Side {
    fn add(&mut self, ops: u64, secs: f64, mark: &CpuMark) {
        let (own, slapd) = mark.since();
        self.ops += ops;
        self.secs += secs;
        self.own_cpu += own;
        self.slapd_cpu += slapd;
    }

    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.secs.max(f64::EPSILON)
    }

    /// CPU microseconds per operation, as JSON.
    fn cpu(&self) -> serde_json::Value {
        let ops = (self.ops as f64).max(1.0);
        serde_json::json!({
            "bench_process_us": (self.own_cpu * 1e6 / ops).round(),
            "slapd_us": (self.slapd_cpu * 1e6 / ops).round(),
        })
    }
}

/// How the sign-in load reaches Kopa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// HTTP/1.1 through [`LeanH1`].
    Lean,
    /// Through hyper's client, HTTP/1.1 or HTTP/2.
    Hyper(Proto),
}

/// One benchmark client: its connection to Kopa, carrying its session-bound login form.
enum LoginClient {
    /// The request is built once, inside.
    Lean(Box<LeanH1>),
    /// The request is built per sign-in from the form's cookie and body.
    Hyper {
        conn: kopa_tests::client::Conn,
        cookie: String,
        body: Bytes,
    },
}

impl LoginClient {
    /// Posts the login form once and returns the response's status.
    async fn sign_in(&mut self, addr: std::net::SocketAddr) -> u16 {
        match self {
            LoginClient::Lean(lean) => lean.send().await,
            LoginClient::Hyper { conn, cookie, body } => {
                let req = http::Request::post(format!("https://{addr}/login"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("origin", format!("https://{addr}"))
                    .header("cookie", cookie.as_str())
                    .body(Full::new(body.clone()))
                    .unwrap();
                conn.send(req).await.status
            }
        }
    }
}

/// A keep-alive HTTP/1.1 client that does only what the sign-in load needs: the same
/// request, built once, written again and again; each response read up to the end its
/// `content-length` gives. Anything else (chunked bodies, a closed connection, a
/// malformed head) stops the benchmark with a message.
struct LeanH1 {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl LeanH1 {
    fn new(
        tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        addr: std::net::SocketAddr,
        cookie: &str,
        body: &[u8],
    ) -> Self {
        let mut request = format!(
            "POST /login HTTP/1.1\r\nhost: {addr}\r\norigin: https://{addr}\r\n\
             content-type: application/x-www-form-urlencoded\r\ncookie: {cookie}\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        Self {
            tls,
            request,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends the request and returns the response's status.
    async fn send(&mut self) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        self.tls.write_all(&self.request).await.unwrap();
        self.tls.flush().await.unwrap();
        self.buf.clear();
        loop {
            if let Some((status, len)) = response_length(&self.buf)
                && self.buf.len() >= len
            {
                assert_eq!(self.buf.len(), len, "bytes after the response");
                return status;
            }
            let mut chunk = [0_u8; 4096];
            let n = self.tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "Kopa closed the keep-alive connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The status and the whole length (head and body) of the HTTP/1.1 response at the start
/// of `buf`, once its head is complete.
fn response_length(buf: &[u8]) -> Option<(u16, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).expect("an ASCII response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().expect("a status code");
    let mut body = None;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("content-length") {
            body = Some(value.trim().parse::<usize>().expect("a content-length"));
        }
        assert!(
            !name.eq_ignore_ascii_case("transfer-encoding"),
            "the lean client reads content-length bodies only: {head}"
        );
    }
    Some((status, head_end + body.expect("a content-length")))
}

async fn login_bench(seconds: u64, clients: usize, load: Load, pool: usize) -> serde_json::Value {
    let slapd = Slapd::start();
    let url = slapd.ldap_url();
    let slice = Duration::from_secs(seconds) / SLICES;
    // The baseline asks for the attributes a Kopa sign-in asks for, so both do the same
    // directory work.
    let attributes = kopa_idp::directory::ldap::user_search_attributes(
        &slapd.directory(Municipality::Ventspils, vec![url.clone()]),
    )
    .unwrap();
    let raw_pool = RawPool::connect(&slapd, &url, pool, &attributes).await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.directories = [Municipality::Ventspils, Municipality::Talsi]
        .into_iter()
        .map(|m| {
            let mut d = slapd.directory(m, vec![url.clone()]);
            d.pool_size = pool as u32;
            d
        })
        .collect();
    config.login.backoff_base_ms = 0;
    // Many clients share three accounts; successes never lock, but in-flight attempts count.
    config.login.lockout_threshold = 100;
    config.server.max_connections = 4096;
    let kopa = kopa::start(config).await.unwrap();
    let client = Client::trusting(&kopa.data_dir.join("tls/cert.pem"));
    // Ventspils users (groups from memberOf, so one search and one bind, as the raw
    // client does) whose roles need no second factor.
    let users: Vec<_> = ["anna.berzina", "liga.udre"]
        .iter()
        .map(|u| (user(u).login(), user(u).password.to_owned()))
        .collect();
    let addr = kopa.addr;
    let mut ready = Vec::new();
    let proto = match load {
        Load::Lean => Proto::H1,
        Load::Hyper(proto) => proto,
    };
    for i in 0..clients {
        let (mut conn, _) = client.connect(addr, proto).await;
        let page = conn.send(kopa_tests::client::get("/login")).await;
        let cookie = page
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let csrf = hidden(&String::from_utf8_lossy(&page.body), "csrf").unwrap();
        let (login, password) = &users[i % users.len()];
        let body = Bytes::from(form_encode(&[
            ("csrf", &csrf),
            ("username", login),
            ("password", password),
        ]));
        ready.push(match load {
            // The form came over a hyper connection; the load goes over a lean one.
            Load::Lean => LoginClient::Lean(Box::new(LeanH1::new(
                client.connect_tls(addr, Proto::H1).await,
                addr,
                &cookie,
                &body,
            ))),
            Load::Hyper(_) => LoginClient::Hyper { conn, cookie, body },
        });
    }
    let refused = Arc::new(std::sync::Mutex::new(
        std::collections::BTreeMap::<u16, u64>::new(),
    ));
    let (mut raw, mut kopa_side) = (Side::default(), Side::default());
    for _ in 0..SLICES {
        let mark = CpuMark::now(&slapd);
        let rate = raw_pool.run(slice).await;
        raw.add(rate.logins, rate.elapsed.as_secs_f64(), &mark);

        let done = Arc::new(AtomicU64::new(0));
        let mark = CpuMark::now(&slapd);
        let started = Instant::now();
        let deadline = started + slice;
        let tasks: Vec<_> = std::mem::take(&mut ready)
            .into_iter()
            .map(|mut c| {
                let (done, refused) = (done.clone(), refused.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let status = c.sign_in(addr).await;
                        if status == 303 {
                            done.fetch_add(1, Ordering::Relaxed);
                        } else {
                            *refused.lock().unwrap().entry(status).or_default() += 1;
                        }
                    }
                    c
                })
            })
            .collect();
        for t in tasks {
            ready.push(t.await.unwrap());
        }
        kopa_side.add(
            done.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
            &mark,
        );
    }
    kopa.shutdown().await;
    serde_json::json!({
        "clients": clients,
        "http": if proto == Proto::H2 { "HTTP/2" } else { "HTTP/1.1" },
        "load_client": if load == Load::Lean { "lean" } else { "hyper" },
        "pool": pool,
        "seconds": seconds,
        "slices": SLICES,
        "raw_search_bind_per_s": raw.per_sec(),
        "raw_attributes": attributes,
        "login_per_s": kopa_side.per_sec(),
        "ratio": kopa_side.per_sec() / raw.per_sec(),
        "raw_cpu_per_search_bind": raw.cpu(),
        "login_cpu_per_sign_in": kopa_side.cpu(),
        "refused_by_status": *refused.lock().unwrap(),
    })
}

async fn sessions_bench(count: usize) -> serde_json::Value {
    use kopa_idp::session::{SessionData, Sessions};
    let dir = tempfile::tempdir().unwrap();
    let store = kopa_store::Store::open(dir.path(), &kopa_idp::SCHEMA).unwrap();
    let sessions = Sessions::new(
        store,
        Arc::new(kopa_core::SystemClock),
        kopa_config::SessionConfig::default(),
    );
    let before = rss_kib();
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (sessions, next) = (sessions.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count as u64 {
                    break;
                }
                let data = SessionData {
                    subject: format!("ventspils:user-{i}"),
                    login: format!("user-{i}"),
                    display_name: format!("Lietotājs {i}"),
                    tenant: Some(kopa_core::TenantId::new("ventspils").unwrap()),
                    directory: "ventspils".into(),
                    roles: vec![kopa_core::Role::Specialist],
                    groups: vec!["Speciālisti".into()],
                    amr: vec!["pwd".into()],
                    email: None,
                    given_name: None,
                    family_name: None,
                    ip: "192.0.2.10".into(),
                    user_agent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/156".into(),
                };
                sessions.create(data).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let after = rss_kib();
    let file = std::fs::metadata(dir.path().join("idp.redb"))
        .unwrap()
        .len();
    serde_json::json!({
        "sessions": count,
        "rss_before_mib": before as f64 / 1024.0,
        "rss_after_mib": after as f64 / 1024.0,
        "rss_delta_mib": (after.saturating_sub(before)) as f64 / 1024.0,
        "create_per_s": count as f64 / elapsed.as_secs_f64(),
        "db_file_mib": file as f64 / 1_048_576.0,
    })
}

/// Signatures per second with `threads` threads signing as fast as they can.
fn raw_signature_rate(alg: kopa_config::SigningAlg, seconds: f64, threads: usize) -> f64 {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let message = [7u8; 300];
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
                    let mut n = 0u64;
                    match alg {
                        kopa_config::SigningAlg::ES256 => {
                            let doc = EcdsaKeyPair::generate_pkcs8(
                                &ECDSA_P256_SHA256_FIXED_SIGNING,
                                &rng,
                            )
                            .unwrap();
                            let key = EcdsaKeyPair::from_pkcs8(
                                &ECDSA_P256_SHA256_FIXED_SIGNING,
                                doc.as_ref(),
                            )
                            .unwrap();
                            while Instant::now() < deadline {
                                key.sign(&rng, &message).unwrap();
                                n += 1;
                            }
                        }
                        kopa_config::SigningAlg::RS256 => {
                            let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
                                .unwrap()
                                .serialize_der();
                            let key = RsaKeyPair::from_pkcs8(&pem).unwrap();
                            let mut out = vec![0; key.public_modulus_len()];
                            while Instant::now() < deadline {
                                key.sign(
                                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                                    &rng,
                                    &message,
                                    &mut out,
                                )
                                .unwrap();
                                n += 1;
                            }
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    counts.iter().sum::<u64>() as f64 / seconds
}

/// Requests per second of `make` against `kopa` by `clients` tasks, each on one keep-alive
/// HTTP/1.1 connection, or on a new TLS connection per request.
async fn request_rate(
    kopa: &kopa::Handle,
    client: &Client,
    seconds: u64,
    clients: usize,
    fresh_connections: bool,
    make: impl Fn() -> http::Request<Full<Bytes>> + Send + Sync + Clone + 'static,
) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, done, failed, make) =
            (client.clone(), done.clone(), failed.clone(), make.clone());
        let addr = kopa.addr;
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            while Instant::now() < deadline {
                if conn.is_none() || fresh_connections {
                    conn = Some(client.connect(addr, Proto::H1).await.0);
                }
                let resp = conn.as_mut().unwrap().send(make()).await;
                if resp.status == 200 {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    (rate, failed.load(Ordering::Relaxed))
}

async fn token_bench(seconds: u64, clients: usize) -> serde_json::Value {
    use kopa_config::{OidcClientConfig, SigningAlg};
    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.server.max_connections = 4096;
    let secret = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, secret).unwrap();
    for (id, alg) in [
        ("bench-es256", SigningAlg::ES256),
        ("bench-rs256", SigningAlg::RS256),
    ] {
        config.oidc_clients.push(OidcClientConfig {
            secret_file: Some(secret_file.clone()),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["api".into()],
            first_party: true,
            signing_alg: alg,
            ..OidcClientConfig::new(id)
        });
    }
    let kopa = kopa::start(config).await.unwrap();
    let client = Client::trusting(&kopa.data_dir.join("tls/cert.pem"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let addr = kopa.addr;
    let mut out = serde_json::Map::new();
    for (id, alg) in [
        ("bench-es256", SigningAlg::ES256),
        ("bench-rs256", SigningAlg::RS256),
    ] {
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{id}:{secret}"),
        );
        let make = move || {
            http::Request::post(format!("https://{addr}/oidc/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("Basic {basic}"))
                .body(Full::new(Bytes::from_static(
                    b"grant_type=client_credentials&scope=api",
                )))
                .unwrap()
        };
        let raw = raw_signature_rate(alg, seconds as f64 / 2.0, cores);
        let (keep, keep_failed) =
            request_rate(&kopa, &client, seconds, clients, false, make.clone()).await;
        let (fresh, fresh_failed) =
            request_rate(&kopa, &client, seconds, clients, true, make).await;
        out.insert(
            alg.as_str().to_lowercase(),
            serde_json::json!({
                "raw_signatures_per_s": raw,
                "keepalive_per_s": keep,
                "keepalive_failed": keep_failed,
                "new_connection_per_s": fresh,
                "new_connection_failed": fresh_failed,
            }),
        );
    }
    let healthz = move || {
        http::Request::get(format!("https://{addr}/healthz"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (health_fresh, _) = request_rate(&kopa, &client, seconds, clients, true, healthz).await;
    kopa.shutdown().await;
    out.insert("healthz_new_connection_per_s".into(), health_fresh.into());
    out.insert("clients".into(), clients.into());
    out.insert("seconds".into(), seconds.into());
    out.insert("cores".into(), cores.into());
    serde_json::Value::Object(out)
}

/// Signed SAML Responses (Assertion signed, five attributes) built per second on one
/// thread, next to raw RSA-2048 signatures per second on one thread, alternating twice so
/// both see the same machine.
fn saml_bench(seconds: f64) -> serde_json::Value {
    use kopa_idp::saml::response::{self, Envelope, Released, Statement};
    let dir = tempfile::tempdir().unwrap();
    let keys = kopa_idp::SigningKeys::load_or_generate(dir.path()).unwrap();
    let signer =
        kopa_idp::saml::Signer::new(keys.saml.pem.expose(), &keys.saml_certificate_pem).unwrap();
    let values = |v: &str| vec![v.to_owned()];
    let responses_per_s = || {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let mut n = 0u64;
        let mut bytes = 0usize;
        while Instant::now() < deadline {
            let now = 1_800_000_000;
            let env = Envelope {
                idp_entity: "https://kopa.example.lv/saml/metadata",
                sp_entity: "https://dv.ventspils.lv/saml",
                acs: "https://dv.ventspils.lv/saml/acs",
                in_response_to: Some("_4f1c2d3e4b5a69788796a5b4c3d2e1f0"),
                now,
            };
            let st = Statement {
                name_id: "q7ZJpWcK0m1vXl9nH3rTfA2sYbUe",
                name_id_format: kopa_config::NameIdFormat::Persistent.urn(),
                session_index: "4d2f0c9a8b7e6d5c",
                authn_instant: now - 60,
                authn_context: response::PASSWORD_PROTECTED,
                not_before: now - 120,
                not_on_or_after: now + 300,
                attributes: vec![
                    Released {
                        name: "urn:oid:2.16.840.1.113730.3.1.241",
                        name_format: None,
                        friendly_name: Some("displayName"),
                        values: values("Anna Bērziņa"),
                    },
                    Released {
                        name: "urn:oid:0.9.2342.19200300.100.1.3",
                        name_format: None,
                        friendly_name: Some("mail"),
                        values: values("anna.berzina@ventspils.lv"),
                    },
                    Released {
                        name: "urn:oid:2.5.4.42",
                        name_format: None,
                        friendly_name: Some("givenName"),
                        values: values("Anna"),
                    },
                    Released {
                        name: "urn:oid:2.5.4.4",
                        name_format: None,
                        friendly_name: Some("sn"),
                        values: values("Bērziņa"),
                    },
                    Released {
                        name: "urn:oid:1.3.6.1.4.1.5923.1.1.1.7",
                        name_format: None,
                        friendly_name: Some("eduPersonEntitlement"),
                        values: vec!["specialist".into(), "supervisor".into()],
                    },
                ],
            };
            bytes =
                response::success(&signer, &env, &st, kopa_config::SamlSigning::Assertion).len();
            n += 1;
        }
        (n as f64 / seconds, bytes)
    };
    let mut raw = 0.0;
    let mut signed = 0.0;
    let mut size = 0;
    for _ in 0..2 {
        raw += raw_signature_rate(kopa_config::SigningAlg::RS256, seconds, 1) / 2.0;
        let (rate, bytes) = responses_per_s();
        signed += rate / 2.0;
        size = bytes;
    }
    serde_json::json!({
        "responses_per_s": signed,
        "raw_rsa2048_per_s": raw,
        "ratio": signed / raw,
        "response_bytes": size,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = match args.first().map(String::as_str) {
        Some("login") => {
            let load = match args.get(3).map(String::as_str) {
                Some("h1") => Load::Lean,
                Some("h1-hyper") => Load::Hyper(Proto::H1),
                _ => Load::Hyper(Proto::H2),
            };
            rt.block_on(login_bench(
                num(1, 5),
                num(2, 16) as usize,
                load,
                num(4, POOL as u64) as usize,
            ))
        }
        Some("sessions") => rt.block_on(sessions_bench(num(1, 100_000) as usize)),
        Some("token") => rt.block_on(token_bench(num(1, 5), num(2, 16) as usize)),
        Some("saml") => saml_bench(num(1, 3) as f64),
        _ => {
            eprintln!(
                "usage: kopa-bench login [SECONDS] [CLIENTS] [h1|h1-hyper|h2] [POOL] | sessions [COUNT] | token [SECONDS] [CLIENTS] | saml [SECONDS]"
            );
            std::process::exit(2);
        }
    };
    println!("{out}");
}
