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

fn rp_result(out: String) -> Value {
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("oidc_rp.py printed no JSON ({e}):\n{out}"))
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
            config.oidc_clients.push(relying_party(dir, "rp-ok", ok_port));
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
    let back_channel: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["event.action"] == "oidc-backchannel-logout")
        .map(|r| {
            (
                r["kopa.client"].as_str().unwrap_or_default(),
                r["event.outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        back_channel,
        [("rp-ok", "success"), ("rp-failing", "failure")],
        "{back_channel:?}"
    );
}
