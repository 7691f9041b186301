//! The security monitor against real peers: a scripted brute-force series against the
//! real login (two slapd directories) raises the alert, which a real SMTP server
//! (aiosmtpd) receives as mail and an HTTP receiver as a webhook whose HMAC it checks
//! itself; the officers' API is scoped by tenant; a certificate expiring in 10 days is
//! flagged and its control passes once it is renewed; `/metrics` passes `promtool check
//! metrics`; a restart keeps alerts, acknowledgements and the time series.

use crate::portal::{json_of, serious, sign_in_as, ui_dir};
use kopa_config::{EmailConfig, SmtpSecurity, WatchedFile, WebhookConfig};
use kopa_tests::Client;
use kopa_tests::browser::Browser;
use kopa_tests::slapd::{Municipality, Slapd, user};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

/// A self-signed certificate valid for `days` more days, written to `path`.
fn write_cert(path: &Path, days: i64) {
    let mut params = rcgen::CertificateParams::new(vec!["sp.talsi.test".into()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(300);
    params.not_after = now + time::Duration::days(days) + time::Duration::hours(1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(path, params.self_signed(&key).unwrap().pem()).unwrap();
}

struct Sink {
    child: std::process::Child,
    smtp_port: u16,
    http_port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    fn start(secret: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let venv = kopa_tests::pyenv();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/alert_sink.py");
        let mut child = std::process::Command::new(venv.join("bin/python3"))
            .arg(script)
            .arg(dir.path())
            .arg(secret)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.first(), Some(&"ready"), "alert sink: {line}");
        Self {
            child,
            smtp_port: parts[1].parse().unwrap(),
            http_port: parts[2].parse().unwrap(),
            dir,
        }
    }

    fn lines(&self, file: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 250 ms for up to 60 s.
async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..240 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

fn config(dir: &Path, slapd: &Slapd, sink: &Sink, cert: &Path) -> kopa_config::Config {
    let mut c = kopa_tests::config_in(dir);
    c.directories = vec![
        slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]),
        slapd.directory(Municipality::Talsi, vec![slapd.ldap_url()]),
    ];
    // Officers sign in without TOTP here; MFA has its own tests.
    c.mfa.required_roles = vec![];
    c.login.backoff_base_ms = 0;
    c.login.ip_free_failures = 1000;
    let m = &mut c.monitor;
    m.host_interval_secs = 1;
    m.audit_interval_secs = 1;
    m.appliance_interval_secs = 2;
    m.certificate_interval_secs = 1;
    m.evaluate_interval_secs = 1;
    m.certificate_files = vec![WatchedFile {
        name: "talsi-sp".into(),
        path: cert.to_owned(),
    }];
    m.email = Some(EmailConfig {
        smtp_host: "127.0.0.1".into(),
        smtp_port: sink.smtp_port,
        security: SmtpSecurity::None,
        username: None,
        password_file: None,
        from: "kopa@kopa.test".into(),
        to: vec!["drosiba@ventspils.lv".into()],
    });
    let secret_file = dir.join("webhook-secret");
    c.monitor.webhooks = vec![WebhookConfig {
        name: "siem".into(),
        url: format!("http://127.0.0.1:{}/hook", sink.http_port),
        secret_file,
    }];
    c
}

async fn fail_logins(kopa: &kopa::Handle, login: &str, n: usize) {
    let mut b = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    for _ in 0..n {
        let r = b.login(login, "Nepareiza-Parole-9", "").await;
        assert_ne!(r.status, 303, "a wrong password signed in");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn brute_force_alerts_reach_mail_and_webhook_and_officers_see_only_their_tenant() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = "kopa-webhook-secret-0123456789";
    std::fs::File::create(dir.path().join("webhook-secret"))
        .unwrap()
        .write_all(secret.as_bytes())
        .unwrap();
    let sink = Sink::start(secret);
    let cert = dir.path().join("talsi-sp.pem");
    write_cert(&cert, 10);
    let cfg = config(dir.path(), &slapd, &sink, &cert);
    let kopa = kopa::start(cfg.clone()).await.unwrap();

    // Twelve wrong passwords for a Ventspils account, ten for a Talsi one.
    fail_logins(&kopa, &user("anna.berzina").login(), 12).await;
    fail_logins(&kopa, &user("marta.ozola").login(), 10).await;

    // The mail, as Python's email package decodes it.
    let mails = eventually("two alert mails", async || {
        let m: Vec<Value> = sink
            .lines("mail.jsonl")
            .into_iter()
            .filter(|m| {
                m["subject"]
                    .as_str()
                    .unwrap()
                    .contains("Daudz neveiksmīgu pieteikšanos")
            })
            .collect();
        (m.len() >= 2).then_some(m)
    })
    .await;
    let mail = &mails[0];
    assert_eq!(mail["mail_from"], "kopa@kopa.test");
    assert_eq!(mail["rcpt_tos"], json!(["drosiba@ventspils.lv"]));
    assert!(
        mail["subject"].as_str().unwrap().contains("AKTĪVS/FIRING"),
        "{mail}"
    );
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains("Daudz neveiksmīgu pieteikšanos"), "{mail}");
    assert!(
        body.contains("tenant=ventspils") || body.contains("tenant=talsi"),
        "{mail}"
    );
    assert_eq!(mail["defects"], json!([]));
    assert!(
        !mail.to_string().contains("Nepareiza"),
        "a password reached the mail"
    );
    // The webhook, its signature checked by the receiver.
    let hooks = eventually("two signed webhooks", async || {
        let h: Vec<Value> = sink
            .lines("hooks.jsonl")
            .into_iter()
            .filter(|h| h["body"]["rule"] == "auth-brute-force")
            .collect();
        (h.len() >= 2).then_some(h)
    })
    .await;
    assert!(hooks.iter().all(|h| h["valid"] == true), "{hooks:?}");
    let tenants: Vec<&str> = hooks
        .iter()
        .map(|h| h["body"]["labels"]["tenant"].as_str().unwrap())
        .collect();
    assert!(
        tenants.contains(&"ventspils") && tenants.contains(&"talsi"),
        "{tenants:?}"
    );

    // Ventspils' security officer sees Ventspils' alert and not Talsi's.
    let zanis = user("zanis.cakste");
    let mut officer = sign_in_as(&kopa, &zanis.login(), zanis.password).await;
    let alerts = json_of(&officer.get("/api/monitor/alerts").await);
    let list = alerts["alerts"].as_array().unwrap();
    let brute: Vec<&Value> = list
        .iter()
        .filter(|a| a["rule"] == "auth-brute-force")
        .collect();
    assert_eq!(brute.len(), 1, "{alerts}");
    assert_eq!(brute[0]["labels"]["tenant"], "ventspils");
    assert_eq!(brute[0]["state"], "firing");
    assert!(
        list.iter().all(|a| a["labels"]["tenant"] != "talsi"),
        "Talsi's alert leaked"
    );
    // Platform controls read Talsi's LDAP CA too; Ventspils' officer sees none of it.
    let c = json_of(&officer.get("/api/monitor/compliance").await);
    assert!(
        c["controls"].as_array().is_some_and(|l| !l.is_empty()),
        "{c}"
    );
    assert!(
        !c.to_string().contains("ldap-ca:talsi"),
        "Talsi's evidence leaked"
    );
    let auth = json_of(&officer.get("/api/monitor/auth").await);
    assert_eq!(auth["top_accounts"][0]["key"], user("anna.berzina").login());
    assert_eq!(auth["top_accounts"][0]["failures"], 12);
    assert!(
        auth["top_accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["tenant"] == "ventspils")
    );
    assert_eq!(auth["top_ips"][0]["key"], "127.0.0.1");

    // Acknowledged with a reason, which the audit log keeps; another tenant's alert id
    // is refused like one that does not exist.
    let origin = format!("https://{}", kopa.addr);
    let id = brute[0]["id"].as_str().unwrap().to_owned();
    let r = officer
        .json(
            "POST",
            &format!("/api/monitor/alerts/{id}/ack"),
            &json!({"reason": "Pārbaudām ar IT nodaļu"}),
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json_of(&r)["ack"]["reason"], "Pārbaudām ar IT nodaļu");
    let r = officer
        .json(
            "POST",
            &format!("/api/monitor/alerts/{id}/ack"),
            &json!({"reason": ""}),
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = officer
        .json(
            "POST",
            "/api/monitor/alerts/0011223344556677/silence",
            &json!({"reason": "x", "minutes": 5}),
            Some(&origin),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = officer
        .json(
            "POST",
            &format!("/api/monitor/alerts/{id}/ack"),
            &json!({"reason": "x"}),
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, 403);
    let records = kopa_tests::audit_records(&kopa.data_dir);
    let acked: Vec<&Value> = records
        .iter()
        .filter(|r| r["event.action"] == "alert-acknowledged")
        .collect();
    assert_eq!(acked.len(), 1, "{acked:?}");
    assert_eq!(acked[0]["event.outcome"], "success");

    // Staff without an officer role are refused; strangers get 401.
    let anna = user("edgars.liepins");
    let mut staff = sign_in_as(&kopa, &anna.login(), anna.password).await;
    assert_eq!(staff.get("/api/monitor/alerts").await.status, 403);
    let mut stranger = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    assert_eq!(stranger.get("/api/monitor/overview").await.status, 401);

    // The platform administrator sees the platform: the certificate expiring in 10 days
    // is flagged by its control and its alert.
    let admin = kopa.first_admin.as_ref().unwrap();
    let (admin, password) = (
        admin.username.clone(),
        admin.password.as_ref().unwrap().expose().to_owned(),
    );
    let mut platform = sign_in_as(&kopa, &admin, &password).await;
    let certs = eventually("the watched certificate", async || {
        let c = json_of(&platform.get("/api/monitor/certificates").await);
        c["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "talsi-sp")
            .cloned()
    })
    .await;
    let days = certs["days_left"].as_f64().unwrap();
    assert!((9.9..10.2).contains(&days), "{certs}");
    assert_eq!(certs["key_type"], "EC");
    let control = |c: &Value, id: &str| -> Option<Value> {
        c["controls"].as_array()?.iter().find(|x| x["id"] == id)?["results"]
            .as_array()?
            .first()
            .cloned()
    };
    let failing = eventually("the certificate control to fail", async || {
        let c = json_of(&platform.get("/api/monitor/compliance").await);
        let r = control(&c, "OPS-CERT-02")?;
        (r["status"] == "fail").then_some(r)
    })
    .await;
    assert!(
        failing["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["labels"]["cert"] == "talsi-sp"),
        "{failing}"
    );
    let alerts = json_of(&platform.get("/api/monitor/alerts").await);
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "cert-expiring" && a["labels"]["cert"] == "talsi-sp"),
        "{alerts}"
    );

    // Renewed for 400 days: the control passes on the next evaluation.
    write_cert(&cert, 400);
    eventually("the certificate control to pass", async || {
        let c = json_of(&platform.get("/api/monitor/compliance").await);
        (control(&c, "OPS-CERT-02")?["status"] == "pass").then_some(())
    })
    .await;

    // /metrics from loopback, checked by Prometheus' own parser.
    let mut scraper = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let metrics = scraper.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        text.contains("kopa_auth_failed_logins_total{tenant=\"ventspils\"} 12"),
        "{text}"
    );
    assert!(text.contains("kopa_cert_expiry_seconds{cert=\"talsi-sp\"}"));
    for secret in ["anna", "marta", "127.0.0.1", "zanis"] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A restart keeps the alerts, the acknowledgement, the series and the control history.
    kopa.shutdown().await;
    let kopa = kopa::start(cfg).await.unwrap();
    let mut officer = sign_in_as(&kopa, &zanis.login(), zanis.password).await;
    let alerts = json_of(&officer.get("/api/monitor/alerts").await);
    let kept = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(kept["ack"]["reason"], "Pārbaudām ar IT nodaļu");
    let series = json_of(
        &officer
            .get("/api/monitor/series?name=auth.failed_logins_total")
            .await,
    );
    let series = series["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "only Ventspils' series: {series:?}");
    let points = series[0]["points"].as_array().unwrap();
    // A day's span comes as 5-minute rollups: the burst is the bucket's maximum.
    assert!(points.iter().any(|p| p["max"] == 12.0), "{points:?}");
    let mut platform = sign_in_as(&kopa, &admin, &password).await;
    let c = json_of(&platform.get("/api/monitor/compliance").await);
    let changes = c["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|ch| ch["control"] == "OPS-CERT-02" && ch["to"] == "pass" && ch["from"] == "fail"),
        "{changes:?}"
    );
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_security_officer_sees_a_brute_force_on_the_dashboard_in_a_real_browser() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = "kopa-webhook-secret-0123456789";
    std::fs::write(dir.path().join("webhook-secret"), secret).unwrap();
    let sink = Sink::start(secret);
    let cert = dir.path().join("talsi-sp.pem");
    write_cert(&cert, 10);
    let mut cfg = config(dir.path(), &slapd, &sink, &cert);
    cfg.portal.ui_dir = Some(ui_dir());
    let kopa = kopa::start(cfg).await.unwrap();

    // The scripted brute force against the real login.
    let anna = user("anna.berzina");
    fail_logins(&kopa, &anna.login(), 12).await;
    let zanis = user("zanis.cakste");
    let mut api = sign_in_as(&kopa, &zanis.login(), zanis.password).await;
    eventually("the brute-force alert", async || {
        let a = json_of(&api.get("/api/monitor/alerts").await);
        a["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["rule"] == "auth-brute-force" && a["state"] == "firing")
            .then_some(())
    })
    .await;

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("security-screenshots");
    let profile = tempfile::tempdir().unwrap();
    let axe_js = kopa_tests::pyenv().join("node_modules/axe-core/axe.min.js");
    let axe_js = axe_js.to_str().unwrap();
    let url = format!("https://{}", kopa.addr);
    let ca = kopa.data_dir.join("tls/cert.pem");
    let (login, target) = (zanis.login(), anna.login());
    let args: Vec<String> = [
        "--url",
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "--username",
        &login,
        "--password",
        zanis.password,
        "--target",
        &target,
        "--reason",
        "Zvanījām Annai: nav viņa",
        "--axe",
        axe_js,
        "--profile",
        profile.path().to_str().unwrap(),
        "--screenshots",
        shots.to_str().unwrap(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out: Value =
        serde_json::from_str(&kopa_tests::run_peer("security_browser.py", args).await).unwrap();
    assert!(out["failed"].is_null(), "{out:#}");
    assert_eq!(out["page_errors"], json!([]), "{out:#}");
    assert_eq!(out["landed_on"], "/security");
    assert_eq!(out["nav_has_security"], true);
    assert_eq!(out["brute_force_rows"], 1, "{out:#}");
    assert!(
        out["brute_force_text"]
            .as_str()
            .unwrap()
            .contains("tenant=ventspils"),
        "{out:#}"
    );
    assert!(out["chart_bars"].as_u64().unwrap() >= 1, "{out:#}");
    assert_eq!(out["top_account"], target.as_str());
    assert!(out["controls"].as_u64().unwrap() >= 20, "{out:#}");
    assert_eq!(out["acknowledged"], true);
    assert!(out["evidence_rows"].as_u64().unwrap() >= 1, "{out:#}");
    assert_eq!(out["audit_rows"], 12, "{out:#}");
    assert!(
        out["csv_header"]
            .as_str()
            .unwrap()
            .starts_with("@timestamp,"),
        "{out:#}"
    );
    assert_eq!(out["csv_rows"], 12, "{out:#}");
    let findings = serious(&json!({"security": out["axe"]}));
    assert!(findings.is_empty(), "accessibility: {findings:#?}");

    // What the browser did is on record: the acknowledgement and the CSV download.
    let alerts = json_of(&api.get("/api/monitor/alerts").await);
    let brute = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "auth-brute-force")
        .cloned()
        .unwrap();
    assert_eq!(brute["ack"]["reason"], "Zvanījām Annai: nav viņa");
    let records = kopa_tests::audit_records(&kopa.data_dir);
    assert!(
        records
            .iter()
            .any(|r| r["event.action"] == "alert-acknowledged")
    );
    assert!(
        records
            .iter()
            .any(|r| r["event.action"] == "audit-exported" && r["event.outcome"] == "success")
    );
    kopa.shutdown().await;
}
