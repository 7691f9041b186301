//! SAML 2.0 against independent service providers: pysaml2 and python3-saml (driven as
//! `tests/peers/saml_sp.py`) build and sign their AuthnRequests, the user signs in through
//! the real login form against real OpenLDAP, and the libraries validate Kopa's responses
//! in strict mode; `xmlsec1 --verify` checks the responses and the metadata. Hostile and
//! malformed requests are sent as raw bindings and must each get a clear error while the
//! appliance keeps serving.

mod logout;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::Full;
use kopa_config::{NameIdFormat, SamlAttribute, SamlSigning, SamlSpConfig};
use kopa_tests::browser::hidden;
use kopa_tests::client::{Client, Proto};
use kopa_tests::slapd::{Municipality, Slapd, TestUser, user};
use serde_json::Value;
use std::path::{Path, PathBuf};

const P: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const A: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

/// One service provider: which library plays it and how Kopa is configured for it.
pub(crate) struct Sp {
    pub(crate) lib: &'static str,
    pub(crate) entity: String,
    pub(crate) sign: SamlSigning,
    pub(crate) format: NameIdFormat,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Sp {
    pub(crate) fn acs(&self) -> String {
        format!("{}/acs", self.entity)
    }

    pub(crate) fn args(&self, command: &str, idp_metadata: Option<&Path>) -> Vec<String> {
        let mut a: Vec<String> = [
            "--lib",
            self.lib,
            command,
            "--entity-id",
            &self.entity,
            "--acs",
            &self.acs(),
            "--sls",
            &format!("{}/sls", self.entity),
            "--cert",
            self.cert.to_str().unwrap(),
            "--key",
            self.key.to_str().unwrap(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(m) = idp_metadata {
            a.push("--idp-metadata".into());
            a.push(m.to_str().unwrap().into());
        }
        a
    }
}

/// A self-signed RSA-2048 certificate and key for a service provider.
pub(crate) fn sp_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![format!("{name}.sp.test")])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn attributes() -> Vec<SamlAttribute> {
    [
        (
            "urn:oid:2.16.840.1.113730.3.1.241",
            "displayName",
            "display_name",
        ),
        ("urn:oid:0.9.2342.19200300.100.1.3", "mail", "email"),
        ("urn:oid:2.5.4.42", "givenName", "given_name"),
        ("urn:oid:2.5.4.4", "sn", "family_name"),
        (
            "urn:oid:1.3.6.1.4.1.5923.1.1.1.7",
            "eduPersonEntitlement",
            "roles",
        ),
    ]
    .into_iter()
    .map(|(name, friendly, source)| SamlAttribute {
        name: name.into(),
        source: source.into(),
        friendly_name: Some(friendly.into()),
        name_format: None,
    })
    .collect()
}

pub(crate) struct Setup {
    kopa: kopa::Handle,
    sps: Vec<Sp>,
    idp_metadata: PathBuf,
    dir: tempfile::TempDir,
    _slapd: Slapd,
}

impl Setup {
    /// `sps`: (library, signing, NameID format, signed requests required, IdP-initiated).
    async fn start(sps: &[(&'static str, SamlSigning, NameIdFormat, bool, bool)]) -> Self {
        Self::start_with(sps, |_, _| {}).await
    }

    /// As [`Setup::start`], with `more` adding to the configuration (given the test's
    /// directory).
    pub(crate) async fn start_with(
        sps: &[(&'static str, SamlSigning, NameIdFormat, bool, bool)],
        more: impl FnOnce(&mut kopa_config::Config, &Path),
    ) -> Self {
        let slapd = Slapd::start();
        let dir = tempfile::tempdir().unwrap();
        let mut config = kopa_tests::config_in(&dir.path().join("data"));
        config.directories = vec![
            slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]),
            slapd.directory(Municipality::Talsi, vec![slapd.ldaps_url()]),
        ];
        let mut list = Vec::new();
        for (i, (lib, sign, format, signed, idp_init)) in sps.iter().enumerate() {
            let name = format!("sp{i}-{lib}");
            let (cert, key) = sp_keys(dir.path(), &name);
            let sp = Sp {
                lib,
                entity: format!("https://{name}.sp.test"),
                sign: *sign,
                format: *format,
                cert,
                key,
            };
            let mut args = sp.args("metadata", None);
            if *signed {
                args.push("--authn-requests-signed".into());
            }
            let xml = kopa_tests::run_peer("saml_sp.py", args).await;
            let file = dir.path().join(format!("{name}.xml"));
            std::fs::write(&file, xml).unwrap();
            config.saml_sps.push(SamlSpConfig {
                name: name.clone(),
                sign: *sign,
                name_id_format: *format,
                attributes: attributes(),
                require_signed_requests: *signed,
                allow_idp_initiated: *idp_init,
                ..SamlSpConfig::new(file)
            });
            list.push(sp);
        }
        more(&mut config, dir.path());
        let kopa = kopa::start(config).await.expect("appliance starts");
        let setup = Self {
            kopa,
            sps: list,
            idp_metadata: dir.path().join("idp.xml"),
            dir,
            _slapd: slapd,
        };
        let meta = setup.get("/saml/metadata").await;
        assert_eq!(meta.status, 200);
        std::fs::write(&setup.idp_metadata, &meta.body).unwrap();
        setup
    }

    fn client(&self) -> Client {
        Client::trusting(&self.kopa.data_dir.join("tls/cert.pem"))
    }

    async fn get(&self, path: &str) -> kopa_tests::Resp {
        self.client().get(self.kopa.addr, Proto::H1, path).await
    }

    async fn post_form(&self, path: &str, body: String) -> kopa_tests::Resp {
        let req = http::Request::post(format!("https://127.0.0.1{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.client().send(self.kopa.addr, Proto::H1, req).await
    }

    /// Sends `xml` to `/saml/sso` by the Redirect binding, unsigned.
    async fn sso_redirect(&self, xml: &str) -> kopa_tests::Resp {
        self.get(&format!("/saml/sso?{}", redirect_query(xml)))
            .await
    }

    fn ca(&self) -> String {
        self.kopa
            .data_dir
            .join("tls/cert.pem")
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn sso(&self) -> String {
        format!("https://127.0.0.1:{}/saml/sso", self.kopa.addr.port())
    }

    /// Runs `command` of the peer for `sp`; its JSON.
    async fn peer(&self, sp: &Sp, command: &str, extra: &[&str]) -> Value {
        let mut args = sp.args(command, Some(&self.idp_metadata));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let out = kopa_tests::run_peer("saml_sp.py", args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}):\n{out}"))
    }

    /// SP-initiated sign-in of `who` at `sp` over `binding`, with the browser's cookies in
    /// `jar`.
    async fn login(&self, sp: &Sp, binding: &str, who: &TestUser, jar: &str) -> Value {
        let login = who.login();
        let jar = self.dir.path().join(jar);
        let ca = self.ca();
        let mut extra = vec![
            "--ca",
            &ca,
            "--binding",
            binding,
            "--username",
            &login,
            "--password",
            who.password,
            "--cookie-jar",
            jar.to_str().unwrap(),
            "--relay-state",
            "/dok?id=7&x=~*",
            "--nameid-format",
            sp.format.urn(),
        ];
        if matches!(sp.sign, SamlSigning::Assertion | SamlSigning::Both) {
            extra.push("--want-assertions-signed");
        }
        if matches!(sp.sign, SamlSigning::Response | SamlSigning::Both) {
            extra.push("--want-response-signed");
        }
        self.peer(sp, "login", &extra).await
    }
}

/// `xmlsec1 --verify` of `xml` with the IdP's SAML certificate.
fn xmlsec_verify(setup: &Setup, xml: &str, id_attrs: &[&str]) -> bool {
    let file = setup.dir.path().join("verify.xml");
    std::fs::write(&file, xml).unwrap();
    let cert = setup.kopa.data_dir.join("keys/saml-signing.crt");
    let mut cmd = std::process::Command::new("xmlsec1");
    cmd.arg("--verify");
    for a in id_attrs {
        cmd.arg("--id-attr:ID").arg(a);
    }
    let out = cmd
        .arg("--pubkey-cert-pem")
        .arg(&cert)
        .arg(&file)
        .output()
        .expect("xmlsec1 runs (scripts/install-deps.sh test installs it)");
    if !out.status.success() {
        eprintln!("xmlsec1: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn attr<'a>(r: &'a Value, name: &str) -> &'a Value {
    &r["xml_attributes"][name]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_sps_sign_users_in_over_both_bindings_in_every_signing_mode() {
    let setup = Setup::start(&[
        (
            "pysaml2",
            SamlSigning::Assertion,
            NameIdFormat::Persistent,
            true,
            false,
        ),
        (
            "pysaml2",
            SamlSigning::Both,
            NameIdFormat::EmailAddress,
            true,
            false,
        ),
        (
            "onelogin",
            SamlSigning::Response,
            NameIdFormat::Transient,
            true,
            false,
        ),
        (
            "onelogin",
            SamlSigning::Both,
            NameIdFormat::Unspecified,
            true,
            true,
        ),
    ])
    .await;
    // The metadata verifies with the published certificate.
    let meta = std::fs::read_to_string(&setup.idp_metadata).unwrap();
    assert!(xmlsec_verify(
        &setup,
        &meta,
        &["urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"]
    ));

    let marta = user("marta.ozola");
    let mut persistent = Vec::new();
    let mut signed_in = std::collections::HashMap::new();
    for (i, sp) in setup.sps.iter().enumerate() {
        for binding in ["redirect", "post"] {
            let jar = format!("jar-{i}-{binding}");
            let r = setup.login(sp, binding, marta, &jar).await;
            assert_eq!(r["ok"], true, "{} {binding}: {r:#}", sp.lib);
            assert_eq!(r["form_shown"], true);
            assert_eq!(r["relay_state"], "/dok?id=7&x=~*", "{r:#}");
            assert_eq!(r["acs_action"], sp.acs());
            let expected_format = setup.kopa_format(i);
            assert_eq!(r["name_id_format"], expected_format, "{r:#}");
            // Latvian letters and XML-special characters arrive intact.
            assert_eq!(attr(&r, "urn:oid:2.5.4.42")[0], marta.given_name, "{r:#}");
            assert_eq!(attr(&r, "urn:oid:2.5.4.4")[0], marta.surname, "{r:#}");
            assert_eq!(attr(&r, "urn:oid:2.16.840.1.113730.3.1.241")[0], marta.cn());
            assert_eq!(
                attr(&r, "urn:oid:1.3.6.1.4.1.5923.1.1.1.7")[0],
                "specialist",
                "{r:#}"
            );
            let xml = r["response_xml"].as_str().unwrap();
            assert!(xml.contains("PasswordProtectedTransport"));
            signed_in.insert(jar.clone(), r.clone());
            assert!(xmlsec_verify(
                &setup,
                xml,
                &[&format!("{P}:Response"), &format!("{A}:Assertion")]
            ));
            match expected_format {
                "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" => {
                    persistent.push(r["name_id"].as_str().unwrap().to_owned());
                }
                "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" => {
                    assert_eq!(r["name_id"], marta.mail());
                }
                "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified" => {
                    // The directory's stable identifier (entryUUID), qualified.
                    assert!(
                        r["name_id"].as_str().unwrap().starts_with("talsi:"),
                        "{r:#}"
                    );
                }
                _ => {}
            }
        }
    }
    // The pairwise identifier is stable for one provider and reveals nothing.
    assert_eq!(persistent.len(), 2);
    assert_eq!(persistent[0], persistent[1]);
    assert!(!persistent[0].contains("marta"));

    // Single sign-on: with the first browser's cookies, another provider needs no form.
    let r = setup
        .login(&setup.sps[2], "redirect", marta, "jar-0-redirect")
        .await;
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["form_shown"], false, "{r:#}");
    let sso_at_2 = r;
    // The same for the second browser at the first provider (for a partial logout).
    let r = setup
        .login(&setup.sps[0], "redirect", marta, "jar-1-post")
        .await;
    assert_eq!(r["form_shown"], false, "{r:#}");

    // IdP-initiated sign-in where allowed, refused elsewhere.
    let ca = setup.ca();
    let jar = setup.dir.path().join("jar-idp");
    let url = |sp: &Sp| {
        format!(
            "https://127.0.0.1:{}/saml/init?sp={}",
            setup.kopa.addr.port(),
            url::form_urlencoded::byte_serialize(sp.entity.as_bytes()).collect::<String>()
        )
    };
    let login = marta.login();
    let r = setup
        .peer(
            &setup.sps[3],
            "idp-initiated",
            &[
                "--ca",
                &ca,
                "--url",
                &url(&setup.sps[3]),
                "--username",
                &login,
                "--password",
                marta.password,
                "--cookie-jar",
                jar.to_str().unwrap(),
                "--want-assertions-signed",
                "--want-response-signed",
            ],
        )
        .await;
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(r["in_response_to"].is_null(), "{r:#}");
    let r = setup.login(&setup.sps[0], "post", marta, "jar-idp").await;
    assert_eq!(r["form_shown"], false, "{r:#}");
    let refused = setup
        .get(&format!(
            "/saml/init?sp={}",
            url::form_urlencoded::byte_serialize(setup.sps[0].entity.as_bytes())
                .collect::<String>()
        ))
        .await;
    assert_eq!(refused.status, 403);

    // Single Logout from pysaml2 (Redirect binding). The session's other provider
    // (python3-saml) is sent a signed LogoutRequest through the browser, checks it with
    // its library and answers; then the initiator hears Success, and the session is gone.
    let out = setup
        .sp_logout(
            0,
            "jar-0-redirect",
            "redirect",
            &signed_in["jar-0-redirect"],
            vec![setup.peer_json(2, "success")],
        )
        .await;
    assert_eq!(out["ok"], true, "{out:#}");
    assert_eq!(
        out["status_code"],
        "urn:oasis:names:tc:SAML:2.0:status:Success"
    );
    assert!(out["sub_status_code"].is_null(), "{out:#}");
    assert_eq!(out["in_response_to"], out["request_id"]);
    let told = &out["peers"][0];
    assert_eq!(told["ok"], true, "{out:#}");
    assert_eq!(told["entity_id"], setup.sps[2].entity);
    // The NameID and session that provider was given at sign-in.
    assert_eq!(told["name_id"], sso_at_2["name_id"], "{out:#}");
    assert_eq!(told["session_index"][0], sso_at_2["session_index"]);
    assert_eq!(told["binding"], "redirect");
    // It was told in a frame of the logout page, whose step page then showed its answer.
    assert_eq!(out["logout_page_frames"], 1, "{out:#}");
    assert_eq!(
        out["stranger_statuses"],
        serde_json::json!([403, 403]),
        "{out:#}"
    );
    // An unsigned answer in its name was refused and did not settle its part.
    assert_eq!(told["forged_answer_status"], 400, "{out:#}");
    let step = told["step"].as_str().unwrap();
    assert!(
        step.starts_with('✓') && step.contains(&setup.sps[2].entity),
        "{out:#}"
    );
    let r = setup
        .login(&setup.sps[2], "redirect", marta, "jar-0-redirect")
        .await;
    assert_eq!(r["form_shown"], true, "the session ended: {r:#}");
    // From pysaml2 over the POST binding; the other provider (pysaml2 too) answers that it
    // could not log the user out, so the initiator hears PartialLogout.
    let out = setup
        .sp_logout(
            1,
            "jar-1-post",
            "post",
            &signed_in["jar-1-post"],
            vec![setup.peer_json(0, "fail")],
        )
        .await;
    assert_eq!(out["ok"], true, "{out:#}");
    assert_eq!(out["peers"][0]["ok"], true, "{out:#}");
    assert!(
        out["peers"][0]["step"].as_str().unwrap().starts_with('✗'),
        "{out:#}"
    );
    assert_eq!(
        out["sub_status_code"], "urn:oasis:names:tc:SAML:2.0:status:PartialLogout",
        "{out:#}"
    );
    assert_eq!(out["in_response_to"], out["request_id"]);

    // Signing out at the IdP itself tells both providers of that session, then shows the
    // signed-out page; the session is gone.
    let jar = setup.dir.path().join("jar-idp");
    let base = format!("https://127.0.0.1:{}", setup.kopa.addr.port());
    let out = setup
        .peer(
            &setup.sps[0],
            "idp-logout",
            &[
                "--ca",
                &ca,
                "--cookie-jar",
                jar.to_str().unwrap(),
                "--url",
                &base,
                "--peer",
                &setup.peer_json(3, "success"),
                "--peer",
                &setup.peer_json(0, "success"),
            ],
        )
        .await;
    assert_eq!(out["ok"], true, "{out:#}");
    assert!(
        out["final_body"]
            .as_str()
            .unwrap()
            .contains("You are signed out")
            || out["final_body"].as_str().unwrap().contains("izgājis"),
        "{out:#}"
    );
    let told: Vec<&str> = out["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["ok"], true, "{out:#}");
            p["entity_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(told, [&setup.sps[3].entity, &setup.sps[0].entity]);
    let r = setup
        .login(&setup.sps[3], "redirect", marta, "jar-idp")
        .await;
    assert_eq!(r["form_shown"], true, "the session ended: {r:#}");

    let records = kopa_tests::audit_records(&setup.kopa.data_dir);
    assert!(records.iter().any(|r| r["event.action"] == "saml-logout"));
    let hops: Vec<&Value> = records
        .iter()
        .filter(|r| r["event.action"] == "saml-logout-propagated")
        .collect();
    assert_eq!(hops.len(), 4, "{hops:#?}");
    assert_eq!(
        hops.iter()
            .filter(|r| r["event.outcome"] == "failure")
            .count(),
        1
    );
    let issued = records
        .iter()
        .filter(|r| r["event.action"] == "saml-assertion-issued")
        .count();
    assert!(issued >= 10, "{issued} assertions recorded");
}

impl Setup {
    /// SP-initiated Single Logout at provider `i` over `binding`, for the sign-in
    /// `signed_in` (the peer's observations: NameID, its format, SessionIndex) made with
    /// the browser's cookies in `jar`; `peers` are the session's other providers (see
    /// [`Setup::peer_json`]).
    async fn sp_logout(
        &self,
        i: usize,
        jar: &str,
        binding: &str,
        signed_in: &Value,
        peers: Vec<String>,
    ) -> Value {
        let (ca, jar) = (self.ca(), self.dir.path().join(jar));
        // `--opt=value`: a random identifier may begin with '-', which argparse would
        // take for an option.
        let name_id = format!("--name-id={}", signed_in["name_id"].as_str().unwrap());
        let index = format!(
            "--session-index={}",
            signed_in["session_index"].as_str().unwrap()
        );
        let mut args: Vec<&str> = vec![
            "--ca",
            &ca,
            "--cookie-jar",
            jar.to_str().unwrap(),
            "--binding",
            binding,
            &name_id,
            "--name-id-format",
            signed_in["name_id_format"].as_str().unwrap(),
            &index,
        ];
        for p in &peers {
            args.extend(["--peer", p.as_str()]);
        }
        self.peer(&self.sps[i], "logout", &args).await
    }

    /// `--peer` for the logout commands: provider `i`, answering as `answer` says.
    fn peer_json(&self, i: usize, answer: &str) -> String {
        let sp = &self.sps[i];
        serde_json::json!({
            "lib": sp.lib,
            "entity_id": sp.entity,
            "acs": sp.acs(),
            "sls": format!("{}/sls", sp.entity),
            "cert": sp.cert,
            "key": sp.key,
            "answer": answer,
        })
        .to_string()
    }

    fn kopa_format(&self, i: usize) -> &'static str {
        [
            "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        ][i]
    }
}

/// An AuthnRequest as a hostile or broken SP might send it.
fn authn_xml(issuer: &str, id: &str, instant: &str, destination: &str, acs: &str) -> String {
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"{P}\" xmlns:saml=\"{A}\" ID=\"{id}\" Version=\"2.0\" \
         IssueInstant=\"{instant}\" Destination=\"{destination}\" \
         AssertionConsumerServiceURL=\"{acs}\"><saml:Issuer>{issuer}</saml:Issuer>\
         </samlp:AuthnRequest>"
    )
}

fn redirect_query(xml: &str) -> String {
    let deflated = miniz_oxide::deflate::compress_to_vec(xml.as_bytes(), 6);
    let b64 = B64.encode(deflated);
    format!(
        "SAMLRequest={}",
        url::form_urlencoded::byte_serialize(b64.as_bytes()).collect::<String>()
    )
}

fn now_instant() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    kopa_idp::saml::response::instant(i64::try_from(now).unwrap())
}

/// The status code inside the SAMLResponse an answer page carries.
fn posted_status(body: &[u8]) -> String {
    let html = String::from_utf8_lossy(body);
    let b64 = hidden(&html, "SAMLResponse").expect("a SAMLResponse form");
    String::from_utf8(B64.decode(b64).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_malformed_requests_get_clear_errors_and_the_idp_keeps_serving() {
    let setup = Setup::start(&[
        (
            "pysaml2",
            SamlSigning::Assertion,
            NameIdFormat::Persistent,
            true,
            false,
        ),
        (
            "onelogin",
            SamlSigning::Assertion,
            NameIdFormat::Transient,
            false,
            false,
        ),
    ])
    .await;
    let (signed, open) = (&setup.sps[0], &setup.sps[1]);
    let sso = setup.sso();
    let page = |r: &kopa_tests::Resp| String::from_utf8_lossy(&r.body).into_owned();

    // Unknown service provider.
    let xml = authn_xml(
        "https://nobody.test",
        "_u1",
        &now_instant(),
        &sso,
        "https://nobody.test/acs",
    );
    let r = setup.sso_redirect(&xml).await;
    assert_eq!(r.status, 400);
    assert!(page(&r).contains("not registered"), "{}", page(&r));

    // An ACS that the metadata does not list.
    let xml = authn_xml(
        &open.entity,
        "_u2",
        &now_instant(),
        &sso,
        "https://evil.test/acs",
    );
    let r = setup.sso_redirect(&xml).await;
    assert_eq!(r.status, 400);
    assert!(
        page(&r).contains("AssertionConsumerServiceURL"),
        "{}",
        page(&r)
    );

    // Wrong Destination.
    let xml = authn_xml(
        &open.entity,
        "_u3",
        &now_instant(),
        "https://other.test/sso",
        &open.acs(),
    );
    let r = setup.sso_redirect(&xml).await;
    assert_eq!(r.status, 400);
    assert!(page(&r).contains("addressed to"), "{}", page(&r));

    // Expired: answered to the (trusted) ACS with a Requester status.
    let xml = authn_xml(
        &open.entity,
        "_u4",
        "2020-01-01T00:00:00Z",
        &sso,
        &open.acs(),
    );
    let r = setup.sso_redirect(&xml).await;
    assert_eq!(r.status, 200);
    let status = posted_status(&r.body);
    assert!(
        status.contains("status:Requester") && status.contains("RequestDenied"),
        "{status}"
    );

    // Unsigned where signatures are required.
    let req = setup
        .peer(
            signed,
            "request",
            &["--binding", "redirect", "--no-sign-request"],
        )
        .await;
    let url = req["url"].as_str().unwrap();
    let query = url.split_once('?').unwrap().1;
    let r = setup.get(&format!("/saml/sso?{query}")).await;
    assert_eq!(r.status, 400);
    assert!(page(&r).contains("must be signed"), "{}", page(&r));

    // A signed Redirect request: tampered signature refused; the genuine one accepted
    // once, its replay refused.
    let req = setup
        .peer(
            signed,
            "request",
            &["--binding", "redirect", "--sign-request"],
        )
        .await;
    let query = req["url"]
        .as_str()
        .unwrap()
        .split_once('?')
        .unwrap()
        .1
        .to_owned();
    let tampered = query.replacen("Signature=", "Signature=AAAA", 1);
    let r = setup.get(&format!("/saml/sso?{tampered}")).await;
    assert_eq!(r.status, 400, "{}", page(&r));
    let r = setup.get(&format!("/saml/sso?{query}")).await;
    assert_eq!(r.status, 303, "{}", page(&r));
    assert!(r.header("location").starts_with("/login?"));
    let r = setup.get(&format!("/saml/sso?{query}")).await;
    assert_eq!(r.status, 200);
    let status = posted_status(&r.body);
    assert!(status.contains("RequestDenied"), "{status}");

    // A signed POST request whose content was changed after signing.
    let req = setup
        .peer(signed, "request", &["--binding", "post", "--sign-request"])
        .await;
    let fields = &req["fields"];
    let original =
        String::from_utf8(B64.decode(fields["SAMLRequest"].as_str().unwrap()).unwrap()).unwrap();
    let changed = original.replacen("IssueInstant=\"", "ForceAuthn=\"false\" IssueInstant=\"", 1);
    assert_ne!(changed, original);
    let body = format!(
        "SAMLRequest={}",
        url::form_urlencoded::byte_serialize(B64.encode(&changed).as_bytes()).collect::<String>()
    );
    let r = setup.post_form("/saml/sso", body).await;
    assert_eq!(r.status, 400);
    assert!(page(&r).contains("digest"), "{}", page(&r));
    // The genuine POST request is accepted.
    let body = format!(
        "SAMLRequest={}",
        url::form_urlencoded::byte_serialize(fields["SAMLRequest"].as_str().unwrap().as_bytes())
            .collect::<String>()
    );
    let r = setup.post_form("/saml/sso", body).await;
    assert_eq!(r.status, 303, "{}", page(&r));

    // DOCTYPE, external entities and billion laughs: refused without expansion.
    for hostile in [
        format!(
            "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
            authn_xml(&open.entity, "_x1", &now_instant(), &sso, &open.acs())
                .replace("<saml:Issuer>", "<saml:Issuer>&x;")
        ),
        "<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">]><l>&d;&d;&d;&d;</l>".to_owned(),
    ] {
        let r = setup.sso_redirect(&hostile).await;
        assert_eq!(r.status, 400);
        assert!(page(&r).contains("DOCTYPE"), "{}", page(&r));
    }
    // Malformed XML, not base64, oversized.
    let r = setup.sso_redirect("<samlp:AuthnRequest").await;
    assert_eq!(r.status, 400);
    assert!(page(&r).contains("malformed"), "{}", page(&r));
    let r = setup.get("/saml/sso?SAMLRequest=%25%25%25").await;
    assert_eq!(r.status, 400);
    let big = "A".repeat(70 * 1024);
    let r = setup
        .post_form("/saml/sso", format!("SAMLRequest={big}"))
        .await;
    assert_eq!(r.status, 400);
    assert!(page(&r).contains("too large"), "{}", page(&r));

    // A LogoutResponse that answers no logout in progress.
    let answer = format!(
        "<samlp:LogoutResponse xmlns:samlp=\"{P}\" xmlns:saml=\"{A}\" ID=\"_lr1\" \
         Version=\"2.0\" IssueInstant=\"{}\" InResponseTo=\"_nothing\">\
         <saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode \
         Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>\
         </samlp:LogoutResponse>",
        now_instant(),
        open.entity
    );
    let query = redirect_query(&answer).replacen("SAMLRequest=", "SAMLResponse=", 1);
    let r = setup
        .get(&format!("/saml/slo?{query}&RelayState=_made_up"))
        .await;
    assert_eq!(r.status, 400);
    assert!(page(&r).contains("no logout in progress"), "{}", page(&r));

    // Still serving: a real sign-in works.
    let r = setup
        .login(open, "redirect", user("anna.berzina"), "jar-after")
        .await;
    assert_eq!(r["ok"], true, "{r:#}");
    let records = kopa_tests::audit_records(&setup.kopa.data_dir);
    let refused = records
        .iter()
        .filter(|r| r["event.action"] == "saml-request" && r["event.outcome"] == "failure")
        .count();
    assert!(refused >= 10, "{refused} refusals recorded");
}
