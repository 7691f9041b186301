//! Where SAML service providers come from: metadata published at a URL (served here by
//! Python's `http.server`), signed by a federation's key with python3-saml's signer,
//! refreshed on the schedule its `cacheDuration` sets and refused — keeping the last good
//! document — when a new one is tampered with, unsigned or expired; and registrations
//! through the admin API, which survive a restart and can be removed.

use super::saml::{Sp, sp_keys};
use kopa_config::{NameIdFormat, SamlSigning, SamlSpConfig};
use kopa_tests::Resp;
use kopa_tests::browser::{Browser, sign_in_with_new_totp};
use kopa_tests::slapd::{Municipality, Slapd, user};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `python3 -m http.server` on a loopback port, serving `dir`; killed when dropped.
struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        // Dropped (so killed and waited for) if it never starts listening.
        let server = Self { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("http.server did not start");
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn body(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn instant(offset_secs: i64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    kopa_idp::saml::response::instant(i64::try_from(t).unwrap() + offset_secs)
}

/// The SP's metadata as its library writes it, plus `extra` metadata options.
async fn metadata(sp: &Sp, extra: &[&str]) -> String {
    let mut args = sp.args("metadata", None);
    args.push("--authn-requests-signed".into());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    kopa_tests::run_peer("saml_sp.py", args).await
}

/// An admin API call as the administrator's browser makes it.
async fn api(
    admin: &mut Browser,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    json: &str,
) -> Resp {
    let csrf = admin.cookies["__Host-kopa-csrf"].clone();
    let req = http::Request::builder()
        .method(method)
        .uri(format!("https://{addr}{path}"))
        .header("content-type", "application/json")
        .header("origin", format!("https://{addr}"))
        .header("x-csrf-token", csrf)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            json.to_owned(),
        )))
        .unwrap();
    admin.send(req).await
}

fn listed<'a>(list: &'a Value, entity: &str) -> &'a Value {
    list["service_providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["entity_id"] == entity)
        .unwrap_or_else(|| panic!("{entity} not listed: {list:#}"))
}

/// SP-initiated sign-in at `sp` through the real form; the library's verdict.
async fn sign_in(kopa: &kopa::Handle, sp: &Sp, idp_metadata: &Path) -> Value {
    let ca = kopa.data_dir.join("tls/cert.pem");
    let who = user("anna.berzina");
    let mut args = sp.args("login", Some(idp_metadata));
    for a in [
        "--ca",
        ca.to_str().unwrap(),
        "--binding",
        "redirect",
        "--username",
        &who.login(),
        "--password",
        who.password,
        "--want-assertions-signed",
    ] {
        args.push(a.to_owned());
    }
    let out = kopa_tests::run_peer("saml_sp.py", args).await;
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_urls_are_refreshed_and_checked_and_admins_register_providers() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("www");
    std::fs::create_dir(&served).unwrap();
    let (fed_cert, fed_key) = sp_keys(dir.path(), "federation");
    let sp_of = |lib: &'static str, name: &str| {
        let (cert, key) = sp_keys(dir.path(), name);
        Sp {
            lib,
            entity: format!("https://{name}.sp.test"),
            sign: SamlSigning::Assertion,
            format: NameIdFormat::Persistent,
            cert,
            key,
        }
    };
    let published = sp_of("pysaml2", "published");
    let signed_by_fed = |extra: Vec<String>| {
        let mut all = vec![
            "--sign-metadata-key".to_owned(),
            fed_key.to_str().unwrap().to_owned(),
            "--sign-metadata-cert".to_owned(),
            fed_cert.to_str().unwrap().to_owned(),
        ];
        all.extend(extra);
        all
    };
    let publish = |xml: &str| std::fs::write(served.join("sp.xml"), xml).unwrap();
    let v1_args = signed_by_fed(vec![
        "--valid-until".into(),
        instant(86_400),
        "--cache-duration".into(),
        "PT2S".into(),
    ]);
    let v1 = metadata(
        &published,
        &v1_args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    publish(&v1);
    let server = FileServer::start(&served);

    let mut config = kopa_tests::config_in(&dir.path().join("data"));
    config.directories = vec![slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()])];
    config.saml.metadata_min_refresh_secs = 1;
    config.saml_sps = vec![SamlSpConfig {
        metadata_file: None,
        entity_id: Some(published.entity.clone()),
        metadata_url: Some(format!("http://127.0.0.1:{}/sp.xml", server.port)),
        metadata_signing_cert: Some(fed_cert.clone()),
        ..SamlSpConfig::new("".into())
    }];
    let kopa = kopa::start(config.clone()).await.expect("appliance starts");
    let client = kopa_tests::Client::trusting(&kopa.data_dir.join("tls/cert.pem"));
    let idp_md = dir.path().join("idp.xml");
    let meta = client
        .get(kopa.addr, kopa_tests::Proto::H1, "/saml/metadata")
        .await;
    std::fs::write(&idp_md, &meta.body).unwrap();

    // The fetched, signed metadata is in use.
    let r = sign_in(&kopa, &published, &idp_md).await;
    assert_eq!(r["ok"], true, "{r:#}");

    let first = kopa.first_admin.as_ref().unwrap();
    let password = first.password.as_ref().unwrap().expose().to_owned();
    let mut admin = sign_in_with_new_totp(&kopa, &first.username, &password).await;
    drop(password);
    let path = "/api/admin/saml/sps";

    // A new version (a second ACS) is picked up on the schedule its cacheDuration sets.
    let acs2 = format!("{}/acs2", published.entity);
    let mut v2_args = v1_args.clone();
    v2_args.extend(["--extra-acs".to_owned(), acs2.clone()]);
    let v2 = metadata(
        &published,
        &v2_args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    publish(&v2);
    let mut picked_up = false;
    for _ in 0..40 {
        let list = api(&mut admin, kopa.addr, "GET", path, "").await.json();
        let acs = &listed(&list, &published.entity)["acs"];
        if acs.as_array().unwrap().iter().any(|a| *a == acs2.as_str()) {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(picked_up, "the new metadata was not fetched on schedule");

    // Tampered, unsigned and expired documents are refused; the last good one stays.
    let refresh = format!(
        "{path}/refresh?entity_id={}",
        url::form_urlencoded::byte_serialize(published.entity.as_bytes()).collect::<String>()
    );
    let unsigned = metadata(&published, &["--valid-until", &instant(86_400)]).await;
    let expired_args = signed_by_fed(vec!["--valid-until".into(), instant(-60)]);
    let expired = metadata(
        &published,
        &expired_args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    for (doc, why) in [
        (v2.replace(&acs2, "https://evil.test/acs"), "signature"),
        (unsigned, "not signed"),
        (expired, "expired"),
    ] {
        publish(&doc);
        let r = api(&mut admin, kopa.addr, "POST", &refresh, "").await;
        assert_eq!(r.status, 502, "{}", body(&r));
        assert!(body(&r).contains(why), "{why}: {}", body(&r));
        let list = api(&mut admin, kopa.addr, "GET", path, "").await.json();
        let entry = listed(&list, &published.entity);
        assert!(
            entry["last_error"].as_str().unwrap().contains(why),
            "{entry:#}"
        );
        assert!(entry["acs"].to_string().contains("/acs2"), "{entry:#}");
    }
    let r = sign_in(&kopa, &published, &idp_md).await;
    assert_eq!(
        r["ok"], true,
        "still served from the last good metadata: {r:#}"
    );
    publish(&v2);

    // Registration through the API: inline metadata of a python3-saml provider.
    let inline = sp_of("onelogin", "registered");
    let xml = metadata(&inline, &[]).await;
    let r = sign_in(&kopa, &inline, &idp_md).await;
    assert_eq!(r["ok"], false, "not registered yet: {r:#}");
    let request = serde_json::json!({
        "name": "Reģistrēts caur API",
        "metadata_xml": xml,
        "sign": "both",
        "attributes": [{"name": "mail", "source": "email"}],
    })
    .to_string();
    let created = api(&mut admin, kopa.addr, "POST", path, &request).await;
    assert_eq!(created.status, 201, "{}", body(&created));
    assert_eq!(created.json()["entity_id"], inline.entity);
    assert_eq!(
        api(&mut admin, kopa.addr, "POST", path, &request)
            .await
            .status,
        409
    );
    let r = sign_in(&kopa, &inline, &idp_md).await;
    assert_eq!(r["ok"], true, "{r:#}");
    // A weak certificate, an http:// URL without a trust certificate, both kinds at once.
    let weak = dir.path().join("rsa1024");
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "30", "-subj", "/CN=weak",
        ])
        .arg("-keyout")
        .arg(weak.with_extension("key"))
        .arg("-out")
        .arg(weak.with_extension("crt"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let weak_sp = Sp {
        cert: weak.with_extension("crt"),
        key: weak.with_extension("key"),
        ..sp_of("onelogin", "weak")
    };
    let weak_xml = metadata(&weak_sp, &[]).await;
    for (json, why) in [
        (serde_json::json!({"metadata_xml": weak_xml}), "2048"),
        (
            serde_json::json!({"metadata_url": "http://127.0.0.1:1/x.xml"}),
            "metadata_signing_cert",
        ),
        (
            serde_json::json!({"metadata_url": "https://a.test/x", "metadata_xml": "<x/>"}),
            "exactly one",
        ),
    ] {
        let r = api(&mut admin, kopa.addr, "POST", path, &json.to_string()).await;
        assert_eq!(r.status, 400, "{}", body(&r));
        assert!(body(&r).contains(why), "{why}: {}", body(&r));
    }
    // Only platform administrators: a staff member is refused.
    let mut staff = Browser::new(
        kopa_tests::Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let anna = user("anna.berzina");
    staff.login(&anna.login(), anna.password, "").await;
    assert_eq!(
        api(&mut staff, kopa.addr, "GET", path, "").await.status,
        403
    );

    // The registration survives a restart; then it is removed, and refused again.
    kopa.shutdown().await;
    let kopa = kopa::start(config).await.expect("appliance restarts");
    // Sessions survive the restart: the same cookies, at the new address.
    let cookies = admin.cookies.clone();
    let mut admin = Browser::new(
        kopa_tests::Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    admin.cookies = cookies;
    // The new address is in the IdP's new metadata.
    let client = kopa_tests::Client::trusting(&kopa.data_dir.join("tls/cert.pem"));
    let meta = client
        .get(kopa.addr, kopa_tests::Proto::H1, "/saml/metadata")
        .await;
    std::fs::write(&idp_md, &meta.body).unwrap();
    let list = api(&mut admin, kopa.addr, "GET", path, "").await.json();
    assert_eq!(listed(&list, &inline.entity)["origin"], "api");
    assert_eq!(listed(&list, &published.entity)["origin"], "config");
    let encoded = |e: &str| url::form_urlencoded::byte_serialize(e.as_bytes()).collect::<String>();
    let gone = api(
        &mut admin,
        kopa.addr,
        "DELETE",
        &format!("{path}?entity_id={}", encoded(&published.entity)),
        "",
    )
    .await;
    assert_eq!(
        gone.status,
        404,
        "configured providers stay: {}",
        body(&gone)
    );
    let gone = api(
        &mut admin,
        kopa.addr,
        "DELETE",
        &format!("{path}?entity_id={}", encoded(&inline.entity)),
        "",
    )
    .await;
    assert_eq!(gone.status, 204, "{}", body(&gone));
    let r = sign_in(&kopa, &inline, &idp_md).await;
    assert_eq!(r["ok"], false, "{r:#}");
    let records = kopa_tests::audit_records(&kopa.data_dir);
    for action in ["saml-sp-created", "saml-sp-deleted"] {
        assert!(
            records.iter().any(|r| r["event.action"] == action),
            "{action}"
        );
    }
    kopa.shutdown().await;
    drop(server);
}

/// How many signing certificates the IdP metadata publishes.
fn published_certificates(metadata: &[u8]) -> usize {
    String::from_utf8_lossy(metadata)
        .matches("<md:KeyDescriptor ")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn saml_certificate_rollover_publishes_the_next_certificate_before_it_signs() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cert, key) = sp_keys(dir.path(), "rollover");
    let sp = Sp {
        lib: "pysaml2",
        entity: "https://rollover.sp.test".into(),
        sign: SamlSigning::Assertion,
        format: NameIdFormat::Persistent,
        cert,
        key,
    };
    let sp_file = dir.path().join("sp.xml");
    std::fs::write(&sp_file, metadata(&sp, &[]).await).unwrap();
    // The same address after each restart: it is part of the IdP's entityID.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = kopa_tests::config_in(&data);
    config.server.listen = format!("127.0.0.1:{port}");
    config.directories = vec![slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()])];
    config.saml_sps = vec![SamlSpConfig::new(sp_file)];
    // Starts Kopa and saves its metadata as `name`, as a provider would download it.
    let start = |name: &'static str| {
        let config = config.clone();
        let path = dir.path().join(name);
        async move {
            let kopa = kopa::start(config).await.expect("appliance starts");
            let client = kopa_tests::Client::trusting(&kopa.data_dir.join("tls/cert.pem"));
            let meta = client
                .get(kopa.addr, kopa_tests::Proto::H1, "/saml/metadata")
                .await;
            std::fs::write(&path, &meta.body).unwrap();
            (kopa, path, published_certificates(&meta.body))
        }
    };
    let data_dir = data.to_str().unwrap();

    let (kopa, before, n) = start("before.xml").await;
    assert_eq!(n, 1);
    assert_eq!(sign_in(&kopa, &sp, &before).await["ok"], true);
    kopa.shutdown().await;

    // Nothing to promote before a key is staged.
    let out = kopa_tests::run_kopa(
        &["keys", "saml-rollover", "promote", "--data-dir", data_dir],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stage"),
        "{out:?}"
    );
    kopa_tests::kopa_ok(&["keys", "saml-rollover", "stage", "--data-dir", data_dir]);

    // Staged: both certificates published, still signed with the old key, so providers
    // with the old metadata and with the new one both accept the responses.
    let (kopa, during, n) = start("during.xml").await;
    assert_eq!(n, 2);
    assert_eq!(sign_in(&kopa, &sp, &before).await["ok"], true);
    assert_eq!(sign_in(&kopa, &sp, &during).await["ok"], true);
    kopa.shutdown().await;

    kopa_tests::kopa_ok(&["keys", "saml-rollover", "promote", "--data-dir", data_dir]);
    // Promoted: the new key signs. A provider that refreshed during the overlap goes on
    // working; one still holding the first metadata no longer can.
    let (kopa, after, n) = start("after.xml").await;
    assert_eq!(n, 2, "the old certificate stays published for a while");
    assert_eq!(sign_in(&kopa, &sp, &during).await["ok"], true);
    let stale = sign_in(&kopa, &sp, &before).await;
    assert_eq!(stale["ok"], false, "{stale:#}");
    assert_eq!(sign_in(&kopa, &sp, &after).await["ok"], true);
    kopa.shutdown().await;
}
