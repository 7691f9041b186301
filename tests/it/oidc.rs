//! OpenID Connect against an independent relying party: Authlib (Python, driven as
//! `tests/peers/oidc_rp.py` from the venv `scripts/install-deps.sh test` sets up) signs a
//! directory user in through the real login form over HTTPS against real OpenLDAP, then
//! refreshes, introspects, revokes and logs out (with a back-channel logout token), gets
//! client-credentials tokens, and tries what a provider must refuse. Tokens are checked
//! by Authlib and joserfc against the published key set, not by Kopa's own code.

use kopa_config::{OidcClientConfig, SigningAlg};
use kopa_tests::audit_records;
use kopa_tests::slapd::{Municipality, Slapd, TestUser, user};
use serde_json::Value;
use std::path::{Path, PathBuf};

const CLIENT_ID: &str = "authlib-rp";
/// Anna Bērziņa of Ventspils: her groups map to `specialist` only, so no second factor.
const USER: &str = "anna.berzina";

/// 43 random letters and digits (no character needs escaping in HTTP Basic).
fn random_secret() -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0_u8; 43];
    SystemRandom::new().fill(&mut bytes).unwrap();
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Writes `secret` to a new file in `dir` with mode 0600.
fn write_secret(dir: &Path, secret: &str) -> PathBuf {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join("authlib-rp.secret");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(f, "{secret}").unwrap();
    path
}

/// The relying party as Kopa knows it, with its loopback URIs on `rp_port`.
fn client(secret_file: PathBuf, rp_port: u16, alg: SigningAlg) -> OidcClientConfig {
    let rp = format!("http://127.0.0.1:{rp_port}");
    OidcClientConfig {
        name: "Authlib RP".into(),
        secret_file: Some(secret_file),
        redirect_uris: vec![format!("{rp}/callback")],
        post_logout_redirect_uris: vec![format!("{rp}/bye")],
        backchannel_logout_uri: Some(format!("{rp}/backchannel")),
        grant_types: kopa_config::GRANT_TYPES.map(String::from).to_vec(),
        // openid, profile, email, roles, offline_access, api
        scopes: kopa_config::SCOPES.map(String::from).to_vec(),
        first_party: true,
        signing_alg: alg,
        ..OidcClientConfig::new(CLIENT_ID)
    }
}

/// An appliance with both test directories and the Authlib client; the RP's port and
/// secret, for running scenarios against it.
struct Setup {
    kopa: kopa::Handle,
    secret: String,
    rp_port: u16,
    _slapd: Slapd,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start(alg: SigningAlg) -> Self {
        let slapd = Slapd::start();
        let dir = tempfile::tempdir().unwrap();
        let secret = random_secret();
        let secret_file = write_secret(dir.path(), &secret);
        let rp_port = kopa_tests::slapd::free_port();
        let mut config = kopa_tests::config_in(&dir.path().join("data"));
        config.directories = vec![
            slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]),
            slapd.directory(Municipality::Talsi, vec![slapd.ldaps_url()]),
        ];
        config.oidc_clients.push(client(secret_file, rp_port, alg));
        let kopa = kopa::start(config).await.expect("appliance starts");
        Self {
            kopa,
            secret,
            rp_port,
            _slapd: slapd,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:PORT`: without `server.public_url` the issuer is the bound address.
    fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}", self.kopa.addr.port())
    }

    /// Runs one scenario of `oidc_rp.py` as `who`; its JSON observations.
    async fn rp(&self, scenario: &str, who: &TestUser) -> Value {
        let (issuer, login) = (self.issuer(), who.login());
        let (ca, port) = (
            self.kopa.data_dir.join("tls/cert.pem"),
            self.rp_port.to_string(),
        );
        let args: Vec<String> = [
            scenario,
            "--issuer",
            issuer.as_str(),
            "--ca",
            ca.to_str().unwrap(),
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            self.secret.as_str(),
            "--rp-port",
            port.as_str(),
            "--username",
            login.as_str(),
            "--password",
            who.password,
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        let out = kopa_tests::run_peer("oidc_rp.py", args).await;
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("oidc_rp.py {scenario} printed no JSON ({e}):\n{out}"))
    }
}

/// Asserts that each key of `r` is `true`.
fn all_true(r: &Value, keys: &[&str]) {
    for key in keys {
        assert_eq!(r[*key], true, "{key} is not true in {r:#}");
    }
}

/// Asserts `r[key] == expected`, printing the whole observation otherwise.
fn expect(r: &Value, key: &str, expected: impl Into<Value>) {
    let expected = expected.into();
    assert_eq!(r[key], expected, "{key} in {r:#}");
}

fn has_role(claims: &Value, role: &str) -> bool {
    claims["roles"]
        .as_array()
        .is_some_and(|roles| roles.iter().any(|r| r == role))
}

fn actions(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .filter_map(|r| r["event.action"].as_str())
        .collect()
}

fn assert_audited(records: &[Value], wanted: &[&str]) {
    let seen = actions(records);
    for action in wanted {
        assert!(seen.contains(action), "no {action} record among {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authlib_signs_in_refreshes_revokes_and_logs_out_over_the_back_channel() {
    let setup = Setup::start(SigningAlg::ES256).await;
    let anna = user(USER);
    let r = setup.rp("full", anna).await;
    let issuer = setup.issuer();

    all_true(
        &r,
        &[
            "discovery_issuer_matches",
            "first_login_form_shown",
            "state_ok",
            "id_token_valid",
            "kid_in_jwks",
            "at_hash_ok",
            "id_token_sid_present",
            "userinfo_post_ok",
            "refresh_token_issued",
            "refresh_rotated",
            "second_state_ok",
            "second_id_token_valid",
            "sub_stable",
            "sid_stable",
            "introspect_active",
            "logout_redirect_ok",
            "backchannel_received",
            "logout_token_valid",
            "logout_token_sid_matches",
            "login_form_after_logout",
        ],
    );
    expect(&r, "second_login_form_shown", false);
    expect(&r, "id_token_alg", "ES256");
    assert!(
        r["callback_iss"].is_null() || r["callback_iss"] == issuer.as_str(),
        "{r:#}"
    );
    assert!(
        r["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "{r:#}"
    );

    // Who she is, from userinfo; the ID token says the same where it says it at all.
    let info = &r["userinfo"];
    expect(&r, "userinfo_status", 200);
    let sub = info["sub"].as_str().expect("sub").to_owned();
    assert!(!sub.is_empty());
    assert_eq!(info["name"], anna.cn(), "{info:#}");
    assert_eq!(info["email"], anna.mail(), "{info:#}");
    assert_eq!(info["tenant"], Municipality::Ventspils.id(), "{info:#}");
    assert!(info["preferred_username"].is_string(), "{info:#}");
    assert!(has_role(info, "specialist"), "{info:#}");
    assert!(!has_role(info, "tenant_admin"), "{info:#}");
    let claims = &r["claims"];
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(claims["iss"], issuer.as_str());
    for (claim, value) in [
        ("name", Value::from(anna.cn())),
        ("email", Value::from(anna.mail())),
        ("tenant", Value::from(Municipality::Ventspils.id())),
    ] {
        assert!(
            claims[claim].is_null() || claims[claim] == value,
            "{claim} in {claims:#}"
        );
    }
    assert!(claims["roles"].is_null() || has_role(claims, "specialist"));

    // Refresh rotation; a replaced token used again revokes the family.
    expect(&r, "refreshed_access_token_userinfo_status", 200);
    expect(&r, "old_refresh_reuse_status", 400);
    expect(&r, "old_refresh_reuse_error", "invalid_grant");
    expect(&r, "family_revoked_status", 400);
    expect(&r, "family_revoked_error", "invalid_grant");

    // Introspection, revocation.
    expect(&r, "introspect_client_id", CLIENT_ID);
    expect(&r, "introspect_sub", sub.as_str());
    assert!(
        r["introspect_scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|s| s == "openid")),
        "{r:#}"
    );
    expect(&r, "revoke_status", 200);
    expect(&r, "introspect_after_revoke_active", false);
    expect(&r, "userinfo_after_revoke_status", 401);

    // Logout: back to the registered URI with the state, one form-encoded logout token.
    assert_eq!(r["logout_redirect"], r["logout_redirect_expected"], "{r:#}");
    assert!(
        r["backchannel_content_types"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t
                .as_str()
                .unwrap()
                .starts_with("application/x-www-form-urlencoded")),
        "{r:#}"
    );
    assert_eq!(r["logout_token_header"]["typ"], "logout+jwt");

    // A new sign-in (a new SSO session) gets the same subject.
    let again = setup.rp("full", anna).await;
    assert_eq!(
        again["claims"]["sub"],
        sub.as_str(),
        "sub changed between sign-ins"
    );
    assert_ne!(again["claims"]["sid"], r["claims"]["sid"]);

    let records = audit_records(&setup.kopa.data_dir);
    assert_audited(
        &records,
        &[
            "oidc-code-issued",
            "oidc-token-issued",
            "oidc-token-refreshed",
            "oidc-refresh-reuse",
            "oidc-token-revoked",
            "oidc-logout",
        ],
    );
    for record in records.iter().filter(|rec| {
        rec["event.action"]
            .as_str()
            .is_some_and(|a| a.starts_with("oidc-token") || a == "oidc-code-issued")
    }) {
        assert_eq!(record["kopa.client"], CLIENT_ID, "{record:#}");
    }
    let export = serde_json::to_string(&records).unwrap();
    assert!(
        !export.contains(&setup.secret),
        "the client secret is in the audit log"
    );
    setup.kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_give_rfc9068_access_tokens_signed_rs256() {
    let setup = Setup::start(SigningAlg::RS256).await;
    let r = setup.rp("client-credentials", user(USER)).await;

    expect(&r, "at_typ", "at+jwt");
    expect(&r, "at_alg", "RS256");
    all_true(
        &r,
        &["at_signature_valid", "at_kid_in_jwks", "introspect_active"],
    );
    let checks = r["at_claims_ok"].as_object().unwrap();
    for (claim, ok) in checks {
        assert_eq!(*ok, true, "access token claim {claim}: {r:#}");
    }
    assert_eq!(r["at_claims"]["iss"], setup.issuer());
    expect(&r, "refresh_token_issued", false);
    expect(&r, "id_token_issued", false);
    assert_ne!(r["userinfo_status"], 200, "userinfo without a user: {r:#}");

    // Registered for client_secret_basic: the same secret in the body is refused.
    assert!(
        r["post_auth_status"] == 400 || r["post_auth_status"] == 401,
        "{r:#}"
    );
    expect(&r, "post_auth_error", "invalid_client");
    expect(&r, "wrong_secret_status", 401);
    expect(&r, "wrong_secret_error", "invalid_client");
    assert!(
        r["wrong_secret_www_authenticate"]
            .as_str()
            .is_some_and(|h| h.starts_with("Basic")),
        "{r:#}"
    );

    let records = audit_records(&setup.kopa.data_dir);
    assert_audited(&records, &["oidc-token-issued", "oidc-token-failed"]);
    setup.kopa.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_replayed_and_malformed_requests_are_refused() {
    let setup = Setup::start(SigningAlg::ES256).await;
    let r = setup.rp("negative", user(USER)).await;

    expect(&r, "login_form_shown", true);
    // (a) Never a redirect to an unregistered URI, nor to a longer path of a registered one.
    for key in ["unregistered_redirect", "prefix_redirect"] {
        expect(&r, &format!("{key}_followed"), false);
        expect(&r, &format!("{key}_location"), Value::Null);
        expect(&r, &format!("{key}_status"), 400);
    }
    // (b) PKCE plain is refused, back to the client.
    all_true(&r, &["plain_pkce_location_ok", "plain_pkce_state_ok"]);
    expect(&r, "plain_pkce_error", "invalid_request");
    expect(&r, "plain_pkce_code_issued", false);
    // (c, d) Wrong or missing code_verifier.
    for key in ["wrong_verifier", "missing_verifier"] {
        expect(&r, &format!("{key}_status"), 400);
        expect(&r, &format!("{key}_error"), "invalid_grant");
    }
    // (e) A code used twice: refused, and what it gave is revoked.
    expect(&r, "code_reuse_token_active_before", true);
    expect(&r, "code_reuse_status", 400);
    expect(&r, "code_reuse_error", "invalid_grant");
    expect(&r, "code_reuse_token_active_after", false);
    if r.get("code_reuse_refresh_status").is_some() {
        expect(&r, "code_reuse_refresh_status", 400);
        expect(&r, "code_reuse_refresh_error", "invalid_grant");
    }
    // (f) A parameter twice.
    expect(&r, "duplicate_param_status", 400);
    expect(&r, "duplicate_param_error", "invalid_request");
    // (g) prompt=none without a session.
    all_true(&r, &["prompt_none_location_ok", "prompt_none_state_ok"]);
    expect(&r, "prompt_none_error", "login_required");
    expect(&r, "prompt_none_login_form_shown", false);
    // (h, i) Forged access tokens, next to the real one they copy.
    expect(&r, "control_userinfo_status", 200);
    expect(&r, "control_introspect_active", true);
    expect(&r, "alg_none_userinfo_status", 401);
    expect(&r, "alg_none_introspect_active", false);
    let kinds = r["hs256_keys_tried"].as_array().unwrap();
    assert!(kinds.len() >= 2, "both the EC and the RSA key: {r:#}");
    for status in r["hs256_userinfo_status"].as_array().unwrap() {
        assert_eq!(*status, 401, "{r:#}");
    }
    for active in r["hs256_introspect_active"].as_array().unwrap() {
        assert_eq!(*active, false, "{r:#}");
    }
    expect(&r, "tampered_userinfo_status", 401);
    expect(&r, "tampered_introspect_active", false);

    let records = audit_records(&setup.kopa.data_dir);
    assert_audited(&records, &["oidc-code-reuse", "oidc-token-failed"]);
    setup.kopa.shutdown().await;
}
