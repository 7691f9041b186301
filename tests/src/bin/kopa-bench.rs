//! Benchmarks that need the testkit (real slapd, in-process appliance). Prints one JSON
//! object; `scripts/bench.py` turns it into rows of BENCHMARKS.md.
//!
//! `kopa-bench login [SECONDS] [CLIENTS]`: full sign-ins per second through the HTTPS form
//! (keep-alive HTTP/2), next to a plain ldap3 search+bind client with the same pool size
//! against the same slapd, in the same run.
//! `kopa-bench sessions [COUNT]`: resident memory added by COUNT stored SSO sessions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http_body_util::Full;
use kopa_tests::browser::{form_encode, hidden};
use kopa_tests::client::{Client, Proto};
use kopa_tests::slapd::{Municipality, Slapd, raw_search_bind_rate, user};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const POOL: usize = 8;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn login_bench(seconds: u64, clients: usize) -> serde_json::Value {
    let slapd = Slapd::start();
    let url = slapd.ldap_url();
    let raw = raw_search_bind_rate(&slapd, &url, POOL, Duration::from_secs(seconds)).await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.directories = [Municipality::Ventspils, Municipality::Talsi]
        .into_iter()
        .map(|m| {
            let mut d = slapd.directory(m, vec![url.clone()]);
            d.pool_size = POOL as u32;
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
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(std::sync::Mutex::new(
        std::collections::BTreeMap::<u16, u64>::new(),
    ));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let form = users[i % users.len()].clone();
        let (client, done, refused) = (client.clone(), done.clone(), refused.clone());
        let addr = kopa.addr;
        tasks.push(tokio::spawn(async move {
            let (mut conn, _) = client.connect(addr, Proto::H2).await;
            let page = conn.send(kopa_tests::client::get("/login")).await;
            let cookie = page
                .header("set-cookie")
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let csrf = hidden(&String::from_utf8_lossy(&page.body), "csrf").unwrap();
            let body = Bytes::from(form_encode(&[
                ("csrf", &csrf),
                ("username", &form.0),
                ("password", &form.1),
            ]));
            while Instant::now() < deadline {
                let req = http::Request::post(format!("https://{addr}/login"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("origin", format!("https://{addr}"))
                    .header("cookie", &cookie)
                    .body(Full::new(body.clone()))
                    .unwrap();
                let resp = conn.send(req).await;
                if resp.status == 303 {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    *refused.lock().unwrap().entry(resp.status).or_default() += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    kopa.shutdown().await;
    let logins = done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
    serde_json::json!({
        "clients": clients,
        "pool": POOL,
        "seconds": seconds,
        "raw_search_bind_per_s": raw.per_sec(),
        "login_per_s": logins,
        "ratio": logins / raw.per_sec(),
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = match args.first().map(String::as_str) {
        Some("login") => rt.block_on(login_bench(num(1, 5), num(2, 16) as usize)),
        Some("sessions") => rt.block_on(sessions_bench(num(1, 100_000) as usize)),
        _ => {
            eprintln!("usage: kopa-bench login [SECONDS] [CLIENTS] | sessions [COUNT]");
            std::process::exit(2);
        }
    };
    println!("{out}");
}
