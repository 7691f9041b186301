//! Kopa's own apps (portal, monitor, VM pages) sign in through the appliance's OpenID
//! Connect provider with the SSO filter: one sign-in serves every app, and signing out of
//! one ends them all. Real slapd behind the login form.

use kopa_tests::browser::{Browser, hidden};
use kopa_tests::slapd::{Municipality, Slapd, user};
use kopa_tests::{Client, Resp};

/// Follows redirects within the appliance; returns the last response and the path of it.
pub(crate) async fn follow(b: &mut Browser, issuer: &str, start: &str) -> (Resp, String) {
    let mut path = start.to_owned();
    for _ in 0..12 {
        let resp = b.get(&path).await;
        if !(300..400).contains(&resp.status) {
            return (resp, path);
        }
        let location = resp.header("location").to_owned();
        path = match location.strip_prefix(issuer) {
            Some(rest) => rest.to_owned(),
            None if location.starts_with('/') => location,
            None => panic!("redirect leaves the appliance: {location}"),
        };
    }
    panic!("too many redirects from {start}");
}

pub(crate) fn body(resp: &Resp) -> String {
    String::from_utf8_lossy(&resp.body).into_owned()
}

pub(crate) fn is_login_form(resp: &Resp) -> bool {
    resp.status == 200 && body(resp).contains("name=\"password\"")
}

#[tokio::test(flavor = "multi_thread")]
async fn one_sign_in_serves_every_app_and_one_sign_out_ends_them_all() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.directories = vec![slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()])];
    let kopa = kopa::start(config).await.unwrap();
    let issuer = format!("https://{}", kopa.addr);
    let mut b = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let anna = user("anna.berzina");

    // The monitor sends an anonymous browser through the provider to the login form.
    let (page, at) = follow(&mut b, &issuer, "/monitor/?tab=alerts").await;
    assert!(is_login_form(&page), "{at}: {}", body(&page));
    let html = body(&page);
    let return_to = hidden(&html, "return_to").unwrap();
    assert!(
        return_to.starts_with("/oidc/authorize/resume"),
        "{return_to}"
    );
    let csrf = hidden(&html, "csrf").unwrap();
    let login = anna.login();
    let resp = b
        .post_form(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", &login),
                ("password", anna.password),
                ("return_to", &return_to),
            ],
        )
        .await;
    assert_eq!(resp.status, 303, "{}", body(&resp));
    let (page, at) = follow(&mut b, &issuer, resp.header("location")).await;
    assert_eq!(page.status, 200, "{at}: {}", body(&page));
    assert_eq!(at, "/monitor/?tab=alerts", "back where the user started");
    assert!(body(&page).contains(&anna.cn()), "{}", body(&page));
    assert!(body(&page).contains("data-app=\"monitor\""));

    // The other apps need no second password.
    for (path, app) in [("/vms/", "vms"), ("/", "portal")] {
        let (page, at) = follow(&mut b, &issuer, path).await;
        assert_eq!(page.status, 200, "{at}: {}", body(&page));
        assert!(!is_login_form(&page), "{path} asked for a password again");
        assert!(
            body(&page).contains(&format!("data-app=\"{app}\"")),
            "{}",
            body(&page)
        );
    }

    // Signing out of one app ends the provider's session, and with it every app.
    let (page, at) = follow(&mut b, &issuer, "/auth/vms/logout").await;
    assert!(is_login_form(&page), "after logout, {at}: {}", body(&page));
    for path in ["/monitor/", "/vms/", "/"] {
        let (page, at) = follow(&mut b, &issuer, path).await;
        assert!(is_login_form(&page), "{path} still signed in at {at}");
    }

    let records = kopa_tests::audit_records(&kopa.data_dir);
    let issued: Vec<&str> = records
        .iter()
        .filter(|r| r["event.action"] == "oidc-code-issued")
        .filter_map(|r| r["kopa.client"].as_str())
        .collect();
    for client in ["kopa-monitor", "kopa-vms", "kopa-portal"] {
        assert!(issued.contains(&client), "{client} not among {issued:?}");
    }
    assert!(records.iter().any(|r| r["event.action"] == "oidc-logout"));
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_with_a_foreign_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kopa = kopa_tests::start_in(dir.path()).await;
    let issuer = format!("https://{}", kopa.addr);
    let mut victim = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    // The attacker starts a sign-in in their own browser and hands the victim the callback.
    let mut attacker = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let first = attacker.get("/monitor/").await;
    assert_eq!(first.status, 303);
    let authorize = first.header("location").to_owned();
    let state = authorize
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .unwrap()
        .to_owned();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("nonce="), "{authorize}");
    let resp = victim
        .get(&format!("/auth/monitor/callback?code=stolen&state={state}"))
        .await;
    assert_eq!(resp.status, 400, "{}", body(&resp));
    // Nor does a made-up code get anywhere in the attacker's own browser.
    let resp = attacker
        .get(&format!(
            "/auth/monitor/callback?code=made-up&state={state}&iss={issuer}"
        ))
        .await;
    assert_eq!(resp.status, 502, "{}", body(&resp));
    let (page, _) = follow(&mut victim, &issuer, "/monitor/").await;
    assert!(is_login_form(&page));
    kopa.shutdown().await;
}
