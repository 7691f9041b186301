//! Provider rules that need control of the clock, an administrator or a restart: expired
//! codes, forced re-authentication, tenant-bound clients, consent for third-party clients
//! registered through the admin API, and signing-key rotation with overlap.

use kopa_config::{ClientAuthMethod, OidcClientConfig};
use kopa_core::{Clock, FixedClock};
use kopa_tests::browser::{Browser, form_encode, hidden, sign_in_with_new_totp};
use kopa_tests::slapd::{Municipality, Slapd, user};
use kopa_tests::{Client, Resp, kopa_ok};
use std::sync::Arc;

const REDIRECT: &str = "https://rp.ventspils.lv/cb";
const VERIFIER: &str = "a-pkce-verifier-that-is-long-enough-0123456789";

fn body(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn public_client(id: &str, tenant: Option<&str>) -> OidcClientConfig {
    OidcClientConfig {
        auth_method: ClientAuthMethod::None,
        redirect_uris: vec![REDIRECT.into()],
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["openid".into(), "profile".into()],
        first_party: true,
        tenant: tenant.map(str::to_owned),
        ..OidcClientConfig::new(id)
    }
}

fn challenge() -> String {
    kopa_idp::oidc::jose::pkce_s256(VERIFIER)
}

fn authorize_path(client: &str, extra: &str) -> String {
    format!(
        "/oidc/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20profile&state=s1&code_challenge={}&code_challenge_method=S256{extra}",
        form_encode(&[("x", REDIRECT)]).trim_start_matches("x="),
        challenge()
    )
}

/// The `code` (or `error`) of a redirect to the client.
fn param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Signs in through the form the authorize redirect leads to; returns the redirect that
/// follows the sign-in (back to `/oidc/authorize/resume`).
async fn sign_in_via(b: &mut Browser, login_location: &str, login: &str, password: &str) -> Resp {
    let page = b.get(login_location).await;
    assert_eq!(page.status, 200, "{}", body(&page));
    let html = body(&page);
    let csrf = hidden(&html, "csrf").unwrap();
    let return_to = hidden(&html, "return_to").unwrap();
    b.post_form(
        "/login",
        &[
            ("csrf", &csrf),
            ("username", login),
            ("password", password),
            ("return_to", &return_to),
        ],
    )
    .await
}

async fn exchange(b: &mut Browser, client: &str, code: &str, extra: &[(&str, &str)]) -> Resp {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", client),
    ];
    pairs.extend_from_slice(extra);
    b.post_form_from("/oidc/token", &pairs, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_expire_reauthentication_is_forced_and_clients_keep_to_their_tenant() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.directories = vec![slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()])];
    config.oidc_clients = vec![
        public_client("ventspils-app", Some("ventspils")),
        public_client("talsi-app", Some("talsi")),
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let clock = Arc::new(FixedClock::at(now));
    let kopa = kopa::start_with_clock(config, clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap();
    let mut b = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let anna = user("anna.berzina");

    // login_hint pre-fills the form.
    let first = b
        .get(&authorize_path(
            "ventspils-app",
            "&login_hint=anna.berzina%40ventspils.lv",
        ))
        .await;
    assert_eq!(first.status, 303);
    let login_page = first.header("location").to_owned();
    assert!(login_page.starts_with("/login?"), "{login_page}");
    let page = b.get(&login_page).await;
    assert!(body(&page).contains("value=\"anna.berzina@ventspils.lv\""));
    let resp = sign_in_via(&mut b, &login_page, &anna.login(), anna.password).await;
    let resumed = b.get(resp.header("location")).await;
    let location = resumed.header("location").to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    let code = param(&location, "code").expect("a code");

    // 61 s later the code is dead (codes live at most 60 s).
    clock.advance(61_000);
    let late = exchange(&mut b, "ventspils-app", &code, &[]).await;
    assert_eq!(late.status, 400, "{}", body(&late));
    assert_eq!(late.json()["error"], "invalid_grant");

    // A fresh code works, once.
    let again = b.get(&authorize_path("ventspils-app", "")).await;
    let code = param(again.header("location"), "code").expect("SSO: a code without a form");
    let ok = exchange(&mut b, "ventspils-app", &code, &[]).await;
    assert_eq!(ok.status, 200, "{}", body(&ok));
    assert_eq!(ok.headers["cache-control"], "no-store");
    let tokens = ok.json();
    assert!(tokens["id_token"].is_string() && tokens["refresh_token"].is_null());

    // prompt=login and an exceeded max_age show the form although a session exists.
    for extra in ["&prompt=login", "&max_age=10"] {
        clock.advance(11_000);
        let forced = b.get(&authorize_path("ventspils-app", extra)).await;
        let to = forced.header("location").to_owned();
        assert!(
            to.starts_with("/login?") && to.contains("reauth=1"),
            "{extra}: {to}"
        );
        let page = b.get(&to).await;
        assert_eq!(page.status, 200, "{extra}: the form, not a redirect");
        // Returning without signing in again gets no code.
        let return_to = hidden(&body(&page), "return_to").unwrap();
        let skipped = b.get(&return_to).await;
        assert!(
            skipped.header("location").starts_with("/login?"),
            "{extra}: {}",
            skipped.header("location")
        );
        let to = skipped.header("location").to_owned();
        let resp = sign_in_via(&mut b, &to, &anna.login(), anna.password).await;
        let done = b.get(resp.header("location")).await;
        assert!(param(done.header("location"), "code").is_some(), "{extra}");
    }
    // prompt=none for a user who is signed in returns a code silently.
    let silent = b
        .get(&authorize_path("ventspils-app", "&prompt=none"))
        .await;
    assert!(param(silent.header("location"), "code").is_some());

    // A client bound to Talsi refuses a Ventspils user, back at its redirect URI.
    let foreign = b.get(&authorize_path("talsi-app", "")).await;
    let to = foreign.header("location");
    assert_eq!(param(to, "error").as_deref(), Some("access_denied"), "{to}");
    assert_eq!(param(to, "state").as_deref(), Some("s1"));
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_register_third_party_clients_and_users_consent_once() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.directories = vec![slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()])];
    let kopa = kopa::start(config).await.unwrap();
    let first = kopa
        .first_admin
        .as_ref()
        .expect("first start creates the admin");
    let password = first.password.as_ref().unwrap().expose().to_owned();
    let mut admin = sign_in_with_new_totp(&kopa, &first.username, &password).await;
    let csrf = admin.cookies["__Host-kopa-csrf"].clone();
    let origin = format!("https://{}", kopa.addr);
    let api = |method: &str, path: &str, json: &str, csrf: Option<&str>| {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", kopa.addr))
            .header("content-type", "application/json")
            .header("origin", &origin);
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.body(http_body_util::Full::new(bytes::Bytes::from(
            json.to_owned(),
        )))
        .unwrap()
    };
    let new_client = format!(
        r#"{{"client_id": "ventspils-intranet", "name": "Ventspils intranets", "token_endpoint_auth_method": "client_secret_post", "redirect_uris": ["{REDIRECT}"], "scopes": ["openid", "profile", "email"]}}"#
    );
    let path = "/api/admin/oidc/clients";
    assert_eq!(
        admin
            .send(api("POST", path, &new_client, None))
            .await
            .status,
        403
    );
    let created = admin
        .send(api("POST", path, &new_client, Some(&csrf)))
        .await;
    assert_eq!(created.status, 201, "{}", body(&created));
    let secret = created.json()["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32);
    let again = admin
        .send(api("POST", path, &new_client, Some(&csrf)))
        .await;
    assert_eq!(again.status, 409);
    let bad = admin
        .send(api(
            "POST",
            path,
            r#"{"client_id": "x", "redirect_uris": ["http://evil.example/cb"]}"#,
            Some(&csrf),
        ))
        .await;
    assert_eq!(bad.status, 400);
    assert!(body(&bad).contains("redirect_uris[0]"), "{}", body(&bad));
    let listed = admin.send(api("GET", path, "", None)).await;
    assert!(body(&listed).contains("ventspils-intranet"));
    assert!(
        !body(&listed).contains(&secret),
        "the secret is shown once only"
    );

    // A directory user meets the consent page once.
    let anna = user("anna.berzina");
    let mut b = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let path_auth = authorize_path("ventspils-intranet", "");
    let to_login = b.get(&path_auth).await.header("location").to_owned();
    let resp = sign_in_via(&mut b, &to_login, &anna.login(), anna.password).await;
    let consent = b.get(resp.header("location")).await;
    assert_eq!(consent.status, 200, "{}", body(&consent));
    let html = body(&consent);
    assert!(html.contains("Ventspils intranets") && html.contains("value=\"allow\""));
    let request = hidden(&html, "request").unwrap();
    let csrf_b = hidden(&html, "csrf").unwrap();
    let allowed = b
        .post_form(
            "/oidc/authorize/consent",
            &[
                ("csrf", &csrf_b),
                ("request", &request),
                ("decision", "allow"),
            ],
        )
        .await;
    let code = param(allowed.header("location"), "code").expect("code after consent");
    // Confidential: the secret is required, in the registered way (the form).
    let no_secret = exchange(&mut b, "ventspils-intranet", &code, &[]).await;
    assert_eq!(no_secret.status, 401);
    let again = b.get(&path_auth).await;
    let code = param(again.header("location"), "code").expect("consent remembered");
    let ok = exchange(
        &mut b,
        "ventspils-intranet",
        &code,
        &[("client_secret", &secret)],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", body(&ok));

    // Removed, the client is unknown: an error page, never a redirect.
    let gone = admin
        .send(api(
            "DELETE",
            "/api/admin/oidc/clients/ventspils-intranet",
            "",
            Some(&csrf),
        ))
        .await;
    assert_eq!(gone.status, 204, "{}", body(&gone));
    let unknown = b.get(&path_auth).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.headers.get("location").is_none());
    let records = kopa_tests::audit_records(&kopa.data_dir);
    for action in ["oidc-client-created", "oidc-consent", "oidc-client-deleted"] {
        assert!(
            records.iter().any(|r| r["event.action"] == action),
            "{action}"
        );
    }
    kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_stay_published_and_their_tokens_keep_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "rotation-test-secret-0123456789abcdefghij").unwrap();
    // The same address after the restart: it is part of the issuer.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = || {
        let mut c = kopa_tests::config_in(dir.path());
        c.server.listen = format!("127.0.0.1:{port}");
        c.oidc_clients = vec![OidcClientConfig {
            auth_method: ClientAuthMethod::ClientSecretPost,
            secret_file: Some(secret_file.clone()),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["api".into()],
            redirect_uris: vec![],
            ..public_client("batch", None)
        }];
        c
    };
    let token = |kopa: &kopa::Handle| {
        let mut b = Browser::new(
            Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
            kopa.addr,
        );
        async move {
            let r = b
                .post_form_from(
                    "/oidc/token",
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", "batch"),
                        ("client_secret", "rotation-test-secret-0123456789abcdefghij"),
                    ],
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{}", body(&r));
            let token = r.json()["access_token"].as_str().unwrap().to_owned();
            let jwks = b.get("/oidc/jwks").await.json();
            (b, token, jwks)
        }
    };
    let kid = |t: &str| {
        let header = t.split('.').next().unwrap();
        let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let kopa = kopa::start(config()).await.unwrap();
    let (_, old_token, old_jwks) = token(&kopa).await;
    assert_eq!(old_jwks["keys"].as_array().unwrap().len(), 2);
    kopa.shutdown().await;

    let out = kopa_ok(&["keys", "rotate", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("New ES256 key"));

    let kopa = kopa::start(config()).await.unwrap();
    let (mut b, new_token, jwks) = token(&kopa).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 4, "{jwks:#}");
    assert!(
        kids.contains(&kid(&old_token).as_str()),
        "old key still published"
    );
    assert_ne!(
        kid(&new_token),
        kid(&old_token),
        "new tokens use the new key"
    );
    for t in [&old_token, &new_token] {
        let r = b
            .post_form_from(
                "/oidc/introspect",
                &[
                    ("token", t),
                    ("client_id", "batch"),
                    ("client_secret", "rotation-test-secret-0123456789abcdefghij"),
                ],
                None,
            )
            .await;
        assert_eq!(r.json()["active"], true, "{}", body(&r));
    }
    kopa.shutdown().await;
}
