//! Sign-in through the real login form, over HTTPS, against real OpenLDAP directories:
//! sessions, refusals, forged forms, lockout, MFA with an independent TOTP generator
//! (oathtool), logout, the admin API, and the audit trail of all of it.

use kopa_tests::browser::{Browser, hidden, oathtool, shown_secret, sign_in_with_new_totp};
use kopa_tests::slapd::{Municipality, Slapd, user};
use kopa_tests::{Client, KopaProcess, kopa_ok};
use std::path::Path;
use std::time::Duration;

const BAD_CREDENTIALS_LV: &str = "Nepareizs lietotājvārds vai parole.";

/// An appliance in `dir` with both test municipalities as directories (Ventspils over
/// StartTLS, Talsi over LDAPS) and `tweak` applied to its configuration.
async fn appliance(
    dir: &Path,
    slapd: &Slapd,
    tweak: impl FnOnce(&mut kopa_config::Config),
) -> kopa::Handle {
    let mut config = kopa_tests::config_in(dir);
    config.directories = vec![
        slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]),
        slapd.directory(Municipality::Talsi, vec![slapd.ldaps_url()]),
    ];
    tweak(&mut config);
    kopa::start(config).await.expect("appliance starts")
}

fn browser(kopa: &kopa::Handle) -> Browser {
    Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    )
}

fn text(resp: &kopa_tests::Resp) -> String {
    String::from_utf8_lossy(&resp.body).into_owned()
}

use kopa_tests::audit_records as audit;

fn reasons_for(records: &[serde_json::Value], typed: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["user.name"] == typed && r["event.action"] == "login")
        .map(|r| {
            r["event.reason"]
                .as_str()
                .unwrap_or(r["event.outcome"].as_str().unwrap())
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_users_sign_in_and_out_through_the_form() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let kopa = appliance(dir.path(), &slapd, |_| {}).await;
    let mut b = browser(&kopa);

    let anna = user("anna.berzina");
    let resp = b.login(&anna.login(), anna.password, "").await;
    assert_eq!(resp.status, 303, "{}", text(&resp));
    assert_eq!(resp.header("location"), "/account");
    let sid = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-kopa-sid="))
        .unwrap()
        .clone();
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(sid.contains(attr), "{sid}");
    }
    let page = b.get("/account").await;
    assert_eq!(page.status, 200);
    let html = text(&page);
    assert!(
        html.contains("Anna Bērziņa") && html.contains("specialist") && html.contains("ventspils"),
        "{html}"
    );

    // A second sign-in gets a new session id (no fixation).
    let first = b.cookies["__Host-kopa-sid"].clone();
    b.login(&anna.login(), anna.password, "").await;
    assert_ne!(b.cookies["__Host-kopa-sid"], first);

    // Sign out: the session ends on the server, not only in this browser.
    let mut thief = b.clone();
    let csrf = hidden(&text(&b.get("/account").await), "csrf").unwrap();
    let out = b.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 200);
    assert!(!b.cookies.contains_key("__Host-kopa-sid"));
    let after = thief.get("/account").await;
    assert_eq!(after.status, 303);
    assert!(after.header("location").starts_with("/login"));

    // Talsi: a bare name with the institution chosen, groups found by search, LDAPS.
    let edgars = user("edgars.liepins");
    let resp = b.login(edgars.uid, edgars.password, "talsi").await;
    assert_eq!(resp.status, 303, "{}", text(&resp));
    let html = text(&b.get("/account?lang=en").await);
    assert!(
        html.contains("Edgars") && html.contains("service_owner") && html.contains("talsi"),
        "{html}"
    );
    assert!(html.contains("<html lang=\"en\">") && html.contains("Sign out"));

    let records = audit(&kopa.data_dir);
    let ok: Vec<_> = records
        .iter()
        .filter(|r| r["event.action"] == "login" && r["event.outcome"] == "success")
        .collect();
    assert_eq!(ok.len(), 3, "{records:#?}");
    assert_eq!(ok[0]["user.name"], anna.login());
    assert_eq!(ok[0]["organization.id"], "ventspils");
    assert!(ok[0]["user.id"].as_str().unwrap().starts_with("ventspils:"));
    assert!(records.iter().any(|r| r["event.action"] == "logout"));
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_look_alike_to_the_user_but_not_in_the_audit() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let kopa = appliance(dir.path(), &slapd, |c| c.login.backoff_base_ms = 0).await;
    let mut b = browser(&kopa);
    let anna = user("anna.berzina");

    let cases = [
        (anna.login(), "Nepareiza-Parole-1", 401, "wrong_password"),
        (
            "nobody@ventspils.lv".to_owned(),
            anna.password,
            401,
            "unknown_user",
        ),
        (
            user("nina.sumane").login(),
            user("nina.sumane").password,
            401,
            "disabled",
        ),
        (
            user("girts.kenins").login(),
            user("girts.kenins").password,
            401,
            "locked_in_directory",
        ),
        (
            user("ilze.smite").login(),
            user("ilze.smite").password,
            401,
            "disabled",
        ),
        (
            "anna.berzina@riga.lv".to_owned(),
            anna.password,
            400,
            "invalid_input",
        ),
        (
            "*@ventspils.lv".to_owned(),
            anna.password,
            401,
            "unknown_user",
        ),
        (
            ")(uid=*)@ventspils.lv".to_owned(),
            anna.password,
            401,
            "unknown_user",
        ),
    ];
    for (login, password, status, _) in &cases {
        let resp = b.login(login, password, "").await;
        let html = text(&resp);
        assert_eq!(resp.status, *status, "{login}: {html}");
        assert!(html.contains("role=\"alert\""), "{login}");
        assert!(!html.contains(password), "{login}: the password is echoed");
        if *status == 401 {
            assert!(html.contains(BAD_CREDENTIALS_LV), "{login}: {html}");
        }
        assert!(!b.cookies.contains_key("__Host-kopa-sid"));
    }
    let records = audit(&kopa.data_dir);
    for (login, _, _, reason) in &cases {
        assert_eq!(reasons_for(&records, login), [*reason], "{login}");
    }
    let log = std::fs::read(kopa.data_dir.join("audit.redb")).unwrap();
    assert!(
        !log.windows(anna.password.len())
            .any(|w| w == anna.password.as_bytes())
    );
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_forms_are_refused() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let kopa = appliance(dir.path(), &slapd, |_| {}).await;
    let anna = user("anna.berzina");
    let login = anna.login();
    let mut b = browser(&kopa);
    let csrf = b.login_csrf().await;
    let fields = |token: &str| {
        vec![
            ("csrf".to_owned(), token.to_owned()),
            ("username".to_owned(), login.clone()),
            ("password".to_owned(), anna.password.to_owned()),
        ]
    };
    let as_pairs = |v: &Vec<(String, String)>| {
        v.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    for (token, origin) in [
        ("", None),
        ("forged-token", None),
        (csrf.as_str(), Some("https://evil.example")),
    ] {
        let owned = as_pairs(&fields(token));
        let pairs: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let resp = b.post_form_from("/login", &pairs, origin).await;
        assert_eq!(resp.status, 403, "token {token:?} origin {origin:?}");
        assert!(!b.cookies.contains_key("__Host-kopa-sid"));
    }
    // A browser without the cookie cannot replay someone else's token either.
    let mut other = browser(&kopa);
    let owned = as_pairs(&fields(&csrf));
    let pairs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(other.post_form("/login", &pairs).await.status, 403);
    // The genuine form works.
    assert_eq!(b.post_form("/login", &pairs).await.status, 303);
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_directory_is_not_a_wrong_password() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let kopa = appliance(dir.path(), &slapd, |c| {
        c.directories[0].urls = vec![format!("ldap://{closed}")];
        c.directories[0].connect_timeout_secs = 1;
    })
    .await;
    let mut b = browser(&kopa);
    let anna = user("anna.berzina");
    for _ in 0..6 {
        let resp = b.login(&anna.login(), anna.password, "").await;
        assert_eq!(resp.status, 503);
        let html = text(&resp);
        assert!(
            html.contains("nav pieejams") && !html.contains(BAD_CREDENTIALS_LV),
            "{html}"
        );
    }
    let records = audit(&kopa.data_dir);
    assert_eq!(
        reasons_for(&records, &anna.login()),
        vec!["directory_unavailable"; 6],
        "every attempt audited as an outage"
    );
    // Outages do not count towards the lockout.
    assert!(
        !records
            .iter()
            .any(|r| r["event.action"] == "account-locked")
    );
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_wrong_passwords_gets_five_tries_then_the_account_locks() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let kopa = appliance(dir.path(), &slapd, |c| {
        c.login.backoff_base_ms = 0;
        c.login.ip_free_failures = 1000;
    })
    .await;
    let anna = user("anna.berzina");
    let mut b = browser(&kopa);
    let csrf = b.login_csrf().await;
    let login = anna.login();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut b = b.clone();
        let (csrf, login) = (csrf.clone(), login.clone());
        tasks.push(tokio::spawn(async move {
            let wrong = format!("Nepareiza-{i}");
            b.post_form(
                "/login",
                &[("csrf", &csrf), ("username", &login), ("password", &wrong)],
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );

    // The right password is refused now: the account is locked.
    let resp = b.login(&login, anna.password, "").await;
    assert_eq!(resp.status, 429);
    assert!(text(&resp).contains("bloķēts"));

    let records = audit(&kopa.data_dir);
    let reasons = reasons_for(&records, &login);
    let tried = reasons.iter().filter(|r| *r == "wrong_password").count();
    assert_eq!(tried, 5, "{reasons:?}");
    assert_eq!(reasons.len(), 21);
    let locks: Vec<_> = records
        .iter()
        .filter(|r| r["event.action"] == "account-locked")
        .collect();
    assert_eq!(locks.len(), 1);
    assert_eq!(
        locks[0]["kopa.details"]["account"],
        "ventspils:anna.berzina"
    );
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn privileged_users_enrol_totp_then_need_it_and_admins_manage_sessions() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let kopa = appliance(dir.path(), &slapd, |c| c.login.backoff_base_ms = 0).await;
    let janis = user("janis.kalnins"); // tenant_admin of Ventspils: MFA required

    let mut admin = browser(&kopa);
    let resp = admin.login(&janis.login(), janis.password, "").await;
    assert_eq!(resp.status, 303);
    assert!(resp.header("location").starts_with("/login/mfa/enrol"));
    assert!(
        !admin.cookies.contains_key("__Host-kopa-sid"),
        "no session before the second factor"
    );
    let page = text(&admin.get("/login/mfa/enrol").await);
    assert!(page.contains("<svg"), "QR code");
    let secret = shown_secret(&page);
    let csrf = hidden(&page, "csrf").unwrap();
    let wrong = admin
        .post_form("/login/mfa/enrol", &[("csrf", &csrf), ("code", "000000")])
        .await;
    assert_eq!(wrong.status, 401);
    let done = admin
        .post_form(
            "/login/mfa/enrol",
            &[("csrf", &csrf), ("code", &oathtool(&secret, 0))],
        )
        .await;
    assert_eq!(done.status, 200, "{}", text(&done));
    let recovery: Vec<String> = text(&done)
        .split("<li>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(admin.get("/account").await.status, 200);

    // Next time: the second factor is asked for; a wrong code, then the next step's code.
    let mut again = browser(&kopa);
    let resp = again.login(&janis.login(), janis.password, "").await;
    assert!(
        resp.header("location").starts_with("/login/mfa?"),
        "{:?}",
        resp.headers
    );
    let page = text(&again.get("/login/mfa").await);
    let csrf = hidden(&page, "csrf").unwrap();
    assert_eq!(
        again
            .post_form("/login/mfa", &[("csrf", &csrf), ("code", "123456")])
            .await
            .status,
        401
    );
    let ok = again
        .post_form(
            "/login/mfa",
            &[("csrf", &csrf), ("code", &oathtool(&secret, 30))],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", text(&ok));
    assert!(again.cookies.contains_key("__Host-kopa-sid"));
    // A recovery code works once.
    let mut third = browser(&kopa);
    third.login(&janis.login(), janis.password, "").await;
    let csrf = hidden(&text(&third.get("/login/mfa").await), "csrf").unwrap();
    assert_eq!(
        third
            .post_form("/login/mfa", &[("csrf", &csrf), ("code", &recovery[0])])
            .await
            .status,
        303
    );

    // Anna signs in twice; her tenant admin sees and revokes those sessions.
    let anna = user("anna.berzina");
    let mut anna_b = browser(&kopa);
    assert_eq!(
        anna_b.login(&anna.login(), anna.password, "").await.status,
        303
    );
    let subject_of = |records: &[serde_json::Value], typed: &str| -> String {
        records
            .iter()
            .find(|r| r["user.name"] == typed && r["event.outcome"] == "success")
            .unwrap()["user.id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let anna_subject = subject_of(&audit(&kopa.data_dir), &anna.login());
    let list = admin
        .get(&format!("/api/admin/sessions?subject={anna_subject}"))
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["sessions"].as_array().unwrap().len(), 1);

    // Without the anti-forgery header the revocation is refused.
    let body = serde_json::json!({"subject": anna_subject}).to_string();
    let post = |csrf: Option<&str>| {
        let mut req =
            http::Request::post(format!("https://{}/api/admin/sessions/revoke", kopa.addr))
                .header("content-type", "application/json")
                .header("origin", format!("https://{}", kopa.addr));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
            .unwrap()
    };
    assert_eq!(admin.send(post(None)).await.status, 403);
    let token = admin.cookies["__Host-kopa-csrf"].clone();
    let revoked = admin.send(post(Some(&token))).await;
    assert_eq!(revoked.json()["revoked"], 1);
    assert_eq!(
        anna_b.get("/account").await.status,
        303,
        "revoked session still works"
    );

    // A Talsi user's sessions are invisible to a Ventspils tenant admin.
    let edgars = user("edgars.liepins");
    let mut edgars_b = browser(&kopa);
    edgars_b.login(&edgars.login(), edgars.password, "").await;
    let edgars_subject = subject_of(&audit(&kopa.data_dir), &edgars.login());
    let list = admin
        .get(&format!("/api/admin/sessions?subject={edgars_subject}"))
        .await;
    assert_eq!(list.json()["sessions"].as_array().unwrap().len(), 0);
    // And anyone without an admin role gets 403.
    anna_b.login(&anna.login(), anna.password, "").await;
    assert_eq!(
        anna_b
            .get(&format!("/api/admin/sessions?subject={anna_subject}"))
            .await
            .status,
        403
    );
    let anon = browser(&kopa).get("/api/admin/lockouts").await;
    assert_eq!(anon.status, 401);

    let records = audit(&kopa.data_dir);
    for action in ["mfa-enrolled", "session-revoked"] {
        assert!(
            records.iter().any(|r| r["event.action"] == action),
            "{action}"
        );
    }
    assert!(records.iter().any(|r| r["event.reason"] == "mfa_failed"));
    kopa.shutdown().await;
}

#[test]
fn sessions_and_locks_survive_a_restart() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = kopa_config::Config {
        directories: vec![slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()])],
        ..Default::default()
    };
    let file = dir.path().join("kopa.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    let start = || {
        let a = args(&[]);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut p = KopaProcess::spawn(&refs, &[]);
        let addr = p.wait_listening();
        (p, addr)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let anna = user("anna.berzina");

    let (mut kopa, addr) = start();
    let client = Client::trusting(&data.join("tls/cert.pem"));
    let mut b = Browser::new(client.clone(), addr);
    assert_eq!(
        rt.block_on(b.login(&anna.login(), anna.password, ""))
            .status,
        303
    );
    kopa.signal("TERM");
    assert!(kopa.wait_exit(Duration::from_secs(15)).success());

    let (_kopa, addr) = start();
    let mut same = Browser::new(client, addr);
    same.cookies = b.cookies.clone();
    let page = rt.block_on(same.get("/account"));
    assert_eq!(page.status, 200, "session lost over a restart");
    assert!(text(&page).contains("Anna Bērziņa"));
    // The audit trail from before the restart is still there, and still verifies.
    let records = audit(&data);
    assert_eq!(reasons_for(&records, &anna.login()), ["success"]);
    assert!(
        records
            .iter()
            .any(|r| r["event.action"] == "local-account-created"
                && r["kopa.details"]["target_user"] == "admin")
    );
    kopa_ok(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn security_officers_query_their_institutions_audit_trail() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let kopa = appliance(dir.path(), &slapd, |c| c.login.backoff_base_ms = 0).await;
    let (anna, edgars, zanis) = (
        user("anna.berzina"),
        user("edgars.liepins"),
        user("zanis.cakste"),
    );
    let mut anna_b = browser(&kopa);
    anna_b.login(&anna.login(), "Nepareiza-Parole-9", "").await;
    assert_eq!(
        anna_b.login(&anna.login(), anna.password, "").await.status,
        303
    );
    browser(&kopa)
        .login(&edgars.login(), edgars.password, "")
        .await;

    let mut officer = sign_in_with_new_totp(&kopa, &zanis.login(), zanis.password).await;
    let page = officer.get("/api/audit/events?limit=1000").await;
    assert_eq!(page.status, 200, "{}", text(&page));
    let records = page.json()["records"].as_array().unwrap().clone();
    assert!(!records.is_empty());
    assert!(
        records.iter().all(|r| r["organization.id"] == "ventspils"),
        "another tenant leaked"
    );
    assert!(records.iter().any(|r| r["user.name"] == anna.login()));
    let seqs: Vec<u64> = records
        .iter()
        .map(|r| r["event.sequence"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");

    let failures = officer
        .get(&format!(
            "/api/audit/events?outcome=failure&user={}",
            anna.login()
        ))
        .await
        .json();
    let failures = failures["records"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["event.reason"], "wrong_password");

    // Pagination with the cursor walks everything once.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = officer
            .get(&format!("/api/audit/events?order=oldest&limit=2{after}"))
            .await
            .json();
        seen.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["event.sequence"].as_u64().unwrap()),
        );
        match page["next_after"].as_u64() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(seen, sorted);

    assert_eq!(
        officer.get("/api/audit/events?outcome=maybe").await.status,
        400
    );
    assert_eq!(
        officer.get("/api/audit/events?from=yesterday").await.status,
        400
    );
    assert_eq!(anna_b.get("/api/audit/events").await.status, 403);
    assert_eq!(browser(&kopa).get("/api/audit/events").await.status, 401);
    kopa.shutdown().await;
}
