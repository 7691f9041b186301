//! Single Logout when not everyone answers: a service provider that never does, and OIDC
//! relying parties of the same SSO session (Authlib, `tests/peers/oidc_rp.py`) whose
//! back-channel endpoints confirm or fail. The initiator (pysaml2) must hear `Success`
//! only when every application of the session confirmed, `PartialLogout` otherwise.

use super::Setup;
use kopa_config::{NameIdFormat, OidcClientConfig, SamlSigning};
use kopa_tests::slapd::{free_port, user};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const PARTIAL: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";

/// A relying party whose back-channel endpoint is `http://127.0.0.1:<port>/backchannel`.
fn relying_party(dir: &Path, id: &str, port: u16) -> OidcClientConfig {
    let secret = dir.join(format!("{id}.secret"));
    std::fs::write(&secret, format!("{id}-secret-0123456789abcdef0123456789\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let rp = format!("http://127.0.0.1:{port}");
    OidcClientConfig {
        name: id.into(),
        secret_file: Some(secret),
        redirect_uris: vec![format!("{rp}/callback")],
        backchannel_logout_uri: Some(format!("{rp}/backchannel")),
        grant_types: kopa_config::GRANT_TYPES.map(String::from).to_vec(),
        scopes: kopa_config::SCOPES.map(String::from).to_vec(),
        first_party: true,
        ..OidcClientConfig::new(id)
    }
}

impl Setup {
    /// Starts `oidc_rp.py session` for client `id` on `port` in the browser of `jar`
    /// (its endpoint answering `status`), and waits until it signed in.
    async fn rp_session(
        &self,
        id: &str,
        port: u16,
        status: u16,
        jar: &str,
    ) -> tokio::task::JoinHandle<String> {
        let ready = self.dir.path().join(format!("{jar}-{id}.ready"));
        let marta = user("marta.ozola");
        let args: Vec<String> = [
            "session",
            "--issuer",
            &format!("https://127.0.0.1:{}", self.kopa.addr.port()),
            "--ca",
            &self.ca(),
            "--client-id",
            id,
            "--client-secret",
            &format!("{id}-secret-0123456789abcdef0123456789"),
            "--rp-port",
            &port.to_string(),
            "--username",
            &marta.login(),
            "--password",
            marta.password,
            "--cookie-jar",
            self.dir.path().join(jar).to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
            "--wait-logout",
            "20",
            "--backchannel-status",
            &status.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let run = tokio::spawn(kopa_tests::run_peer("oidc_rp.py", args));
        for _ in 0..300 {
            if ready.exists() || run.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready.exists(), "the relying party {id} did not sign in");
        run
    }
}

/// Two fields of every audit record of `action`, in order.
fn fields<'a>(records: &'a [Value], action: &str, names: [&str; 2]) -> Vec<[&'a str; 2]> {
    records
        .iter()
        .filter(|r| r["event.action"] == action)
        .map(|r| names.map(|n| r[n].as_str().unwrap_or_default()))
        .collect()
}

fn rp_result(out: String) -> Value {
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("oidc_rp.py printed no JSON ({e}):\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_logout_is_partial_when_an_sp_stays_silent_or_a_back_channel_rp_fails() {
    let (ok_port, failing_port) = (free_port(), free_port());
    let setup = Setup::start_with(
        &[
            (
                "pysaml2",
                SamlSigning::Assertion,
                NameIdFormat::Persistent,
                true,
                false,
            ),
            (
                "onelogin",
                SamlSigning::Both,
                NameIdFormat::Transient,
                false,
                false,
            ),
        ],
        |config, dir| {
            config.saml.logout_wait_secs = 3;
            config
                .oidc_clients
                .push(relying_party(dir, "rp-ok", ok_port));
            config
                .oidc_clients
                .push(relying_party(dir, "rp-failing", failing_port));
        },
    )
    .await;
    let marta = user("marta.ozola");

    // 1. The other SP of the session never answers its frame: once the wait is over the
    //    page goes on, and the initiator hears PartialLogout.
    let first = setup.login(&setup.sps[0], "redirect", marta, "jar-a").await;
    assert_eq!(first["ok"], true, "{first:#}");
    let r = setup.login(&setup.sps[1], "redirect", marta, "jar-a").await;
    assert_eq!(r["form_shown"], false, "{r:#}");
    let out = setup
        .sp_logout(
            0,
            "jar-a",
            "redirect",
            &first,
            vec![setup.peer_json(1, "stall")],
        )
        .await;
    assert_eq!(out["ok"], true, "{out:#}");
    assert_eq!(out["peers"][0]["stalled"], true, "{out:#}");
    assert_eq!(out["sub_status_code"], PARTIAL, "{out:#}");
    assert_eq!(out["in_response_to"], out["request_id"]);

    // 2. One SSO session across SAML and OIDC: an Authlib RP signs in in the same browser
    //    without the form; the SAML logout sends it a logout token for that session, and
    //    with its endpoint confirming, the initiator hears a plain Success.
    let first = setup.login(&setup.sps[0], "post", marta, "jar-b").await;
    assert_eq!(first["form_shown"], true, "{first:#}");
    let rp = setup.rp_session("rp-ok", ok_port, 200, "jar-b").await;
    let out = setup
        .sp_logout(0, "jar-b", "post", &first, Vec::new())
        .await;
    assert_eq!(out["ok"], true, "{out:#}");
    assert_eq!(
        out["status_code"],
        "urn:oasis:names:tc:SAML:2.0:status:Success"
    );
    assert!(out["sub_status_code"].is_null(), "{out:#}");
    let seen = rp_result(rp.await.unwrap());
    assert_eq!(seen["login_form_shown"], false, "{seen:#}");
    assert_eq!(seen["id_token_valid"], true, "{seen:#}");
    assert_eq!(seen["backchannel_count"], 1, "{seen:#}");
    assert_eq!(seen["logout_token_valid"], true, "{seen:#}");
    assert_eq!(seen["logout_token_sid_matches"], true, "{seen:#}");

    // 3. The same, but the relying party's endpoint answers 500: PartialLogout.
    let first = setup.login(&setup.sps[0], "redirect", marta, "jar-c").await;
    assert_eq!(first["form_shown"], true, "{first:#}");
    let rp = setup
        .rp_session("rp-failing", failing_port, 500, "jar-c")
        .await;
    let out = setup
        .sp_logout(0, "jar-c", "redirect", &first, Vec::new())
        .await;
    assert_eq!(out["ok"], true, "{out:#}");
    assert_eq!(out["sub_status_code"], PARTIAL, "{out:#}");
    let seen = rp_result(rp.await.unwrap());
    assert_eq!(seen["backchannel_count"], 1, "{seen:#}");

    // The audit log tells why each logout was partial.
    let records = kopa_tests::audit_records(&setup.kopa.data_dir);
    let silent: Vec<&Value> = records
        .iter()
        .filter(|r| r["event.action"] == "saml-logout-propagated")
        .collect();
    assert_eq!(silent.len(), 1, "{silent:#?}");
    assert_eq!(silent[0]["event.reason"], "no_answer", "{silent:#?}");
    let back_channel = fields(
        &records,
        "oidc-backchannel-logout",
        ["kopa.client", "event.outcome"],
    );
    assert_eq!(
        back_channel,
        [["rp-ok", "success"], ["rp-failing", "failure"]],
        "{back_channel:?}"
    );
}

/// A service provider for the browser: its keys, metadata and `--peer` JSON, with its
/// endpoints on `http://127.0.0.1:<port>`.
struct BrowserSp {
    config: kopa_config::SamlSpConfig,
    lib: &'static str,
    entity: String,
    port: u16,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl BrowserSp {
    async fn new(dir: &Path, lib: &'static str, i: usize) -> Self {
        let name = format!("browser-sp{i}");
        let (cert, key) = super::sp_keys(dir, &name);
        let port = free_port();
        let entity = format!("https://{name}.sp.test");
        let base = format!("http://127.0.0.1:{port}");
        let args: Vec<String> = [
            "--lib",
            lib,
            "metadata",
            "--entity-id",
            &entity,
            "--acs",
            &format!("{base}/acs"),
            "--sls",
            &format!("{base}/sls"),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let file = dir.join(format!("{name}.xml"));
        std::fs::write(&file, kopa_tests::run_peer("saml_sp.py", args).await).unwrap();
        let config = kopa_config::SamlSpConfig {
            name,
            attributes: super::attributes(),
            ..kopa_config::SamlSpConfig::new(file)
        };
        Self {
            config,
            lib,
            entity,
            port,
            cert,
            key,
        }
    }

    fn peer_json(&self, answer: &str) -> String {
        let base = format!("http://127.0.0.1:{}", self.port);
        serde_json::json!({
            "lib": self.lib,
            "entity_id": self.entity,
            "acs": format!("{base}/acs"),
            "sls": format!("{base}/sls"),
            "cert": self.cert,
            "key": self.key,
            "port": self.port,
            "answer": answer,
            "want_assertions_signed": true,
        })
        .to_string()
    }
}

/// Chromium signs in at two SPs (the form once) and out at the IdP; the logout page's
/// script goes on as soon as both frames reported, or after the wait when one SP never
/// answers, and the signed-out page then warns that the logout was partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_the_logout_page_goes_on_when_all_answered_or_after_the_wait() {
    const WAIT_SECS: u64 = 6;
    let sp_dir = tempfile::tempdir().unwrap();
    let sps = [
        BrowserSp::new(sp_dir.path(), "pysaml2", 0).await,
        BrowserSp::new(sp_dir.path(), "onelogin", 1).await,
    ];
    let configs: Vec<_> = sps.iter().map(|s| s.config.clone()).collect();
    let setup = Setup::start_with(&[], |config, _| {
        config.saml.logout_wait_secs = WAIT_SECS;
        config.saml_sps.extend(configs);
    })
    .await;
    let marta = user("marta.ozola");
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("slo-screenshots");
    let run = |answers: [&'static str; 2], round: &'static str| {
        let dir = shots.join(round);
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = [
            "--lib",
            "pysaml2",
            "browser-logout",
            "--entity-id",
            "https://unused.sp.test",
            "--acs",
            "https://unused.sp.test/acs",
            "--sls",
            "https://unused.sp.test/sls",
            "--cert",
            sps[0].cert.to_str().unwrap(),
            "--key",
            sps[0].key.to_str().unwrap(),
            "--idp-metadata",
            setup.idp_metadata.to_str().unwrap(),
            "--url",
            &format!("https://127.0.0.1:{}", setup.kopa.addr.port()),
            "--username",
            &marta.login(),
            "--password",
            marta.password,
            "--screenshots",
            dir.to_str().unwrap(),
            "--ca",
            &setup.ca(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for (sp, answer) in sps.iter().zip(answers) {
            args.push("--peer".into());
            args.push(sp.peer_json(answer));
        }
        async move {
            let out = kopa_tests::run_peer("saml_sp.py", args).await;
            serde_json::from_str::<Value>(&out)
                .unwrap_or_else(|e| panic!("saml_sp.py printed no JSON ({e}):\n{out}"))
        }
    };

    // Both answer: the page goes on well before its wait, and the logout is complete.
    let out = run(["success", "success"], "all-answer").await;
    for signed_in in out["signed_in"].as_array().unwrap() {
        assert_eq!(signed_in["ok"], true, "{out:#}");
    }
    for told in out["told"].as_array().unwrap() {
        assert_eq!(told[0]["ok"], true, "{out:#}");
    }
    let elapsed = out["elapsed_secs"].as_f64().unwrap();
    assert!(elapsed < (WAIT_SECS - 2) as f64, "{out:#}");
    assert_eq!(out["partial_warning"], false, "{out:#}");

    // The second never answers: the page goes on after the wait, and says so.
    let out = run(["success", "stall"], "one-silent").await;
    assert_eq!(out["told"][0][0]["ok"], true, "{out:#}");
    assert_eq!(out["told"][1][0]["stalled"], true, "{out:#}");
    let elapsed = out["elapsed_secs"].as_f64().unwrap();
    assert!(elapsed >= (WAIT_SECS - 1) as f64, "{out:#}");
    assert_eq!(out["partial_warning"], true, "{out:#}");

    let records = kopa_tests::audit_records(&setup.kopa.data_dir);
    let hops = fields(
        &records,
        "saml-logout-propagated",
        ["event.outcome", "event.reason"],
    );
    assert_eq!(hops.len(), 4, "{hops:?}");
    assert_eq!(
        hops.iter().filter(|h| h[1] == "no_answer").count(),
        1,
        "{hops:?}"
    );
}
