//! The portal's API and UI against real peers: staff of two municipal slapd directories
//! sign in through the appliance's own OpenID Connect provider, and then work cases over
//! HTTPS — scoped by centre and institution, personal codes masked and their disclosure
//! audited, writes guarded against other origins. The browser test drives the Yew app in
//! headless Chromium (Playwright) and checks it with axe-core.

use crate::apps::{body, follow};
use kopa_core::Role;
use kopa_portal_server::case::Channel;
use kopa_portal_server::catalogue::{Bilingual, Service};
use kopa_portal_server::org::{Assignment, Centre, Institution, InstitutionKind};
use kopa_portal_server::work::{CaseWork, Viewer};
use kopa_tests::browser::{Browser, hidden};
use kopa_tests::slapd::{Municipality, Slapd, TestUser, user};
use kopa_tests::{Client, Resp};
use serde_json::{Value, json};

fn both(lv: &str, en: &str) -> Bilingual {
    Bilingual {
        lv: lv.into(),
        en: en.into(),
    }
}

/// Ventspils and Talsi; one centre in Ventspils that also delivers Talsi's services.
async fn organisation(work: &CaseWork) {
    let admin = Viewer {
        subject: "test-admin".into(),
        roles: vec![Role::PlatformAdmin],
        ..Viewer::default()
    };
    for id in ["ventspils", "talsi"] {
        let i = Institution {
            id: id.into(),
            name: both(id, id),
            kind: InstitutionKind::Municipal,
        };
        work.put_institution(&admin, i).await.unwrap();
    }
    let c = Centre {
        id: "ventspils-kac".into(),
        name: both("Ventspils VPVKAC", "Ventspils one-stop centre"),
        institution: "ventspils".into(),
        serves: vec!["ventspils".into(), "talsi".into()],
    };
    work.put_centre(&admin, c).await.unwrap();
    for (code, owner, lv, en) in [
        (
            "TAL-NIN",
            "talsi",
            "Nekustamā īpašuma nodokļa atvieglojums",
            "Real estate tax relief",
        ),
        (
            "VEN-PAR",
            "ventspils",
            "Stāvvietas atļauja",
            "Parking permit",
        ),
    ] {
        let s = Service {
            code: code.into(),
            name: both(lv, en),
            owner: owner.into(),
            channels: vec![Channel::InPerson, Channel::Email],
            deadline_days: Some(30),
            required_documents: vec![],
            instructions: None,
        };
        work.put_service(&admin, s).await.unwrap();
    }
}

/// Opens the portal as `who`: the provider's login form once, then back to the portal.
async fn sign_in(kopa: &kopa::Handle, who: &TestUser) -> Browser {
    sign_in_as(kopa, &who.login(), who.password).await
}

/// Opens the portal as the user `login`, through the provider's login form.
pub(crate) async fn sign_in_as(kopa: &kopa::Handle, login: &str, password: &str) -> Browser {
    let mut b = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let issuer = format!("https://{}", kopa.addr);
    let (form, _) = follow(&mut b, &issuer, "/").await;
    let html = body(&form);
    let (csrf, return_to) = (
        hidden(&html, "csrf").expect("a login form"),
        hidden(&html, "return_to").unwrap(),
    );
    let fields = [
        ("csrf", csrf.as_str()),
        ("username", login),
        ("password", password),
        ("return_to", return_to.as_str()),
    ];
    let resp = b.post_form("/login", &fields).await;
    assert_eq!(resp.status, 303, "{}", body(&resp));
    let (page, at) = follow(&mut b, &issuer, resp.header("location")).await;
    assert_eq!(page.status, 200, "{at}: {}", body(&page));
    assert!(
        body(&page).contains("data-app=\"portal\""),
        "{at}: {}",
        body(&page)
    );
    b
}

/// Hex SHA-256 of `bytes` by coreutils' `sha256sum` (not Kopa's own code).
fn sha256sum(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

pub(crate) fn json_of(resp: &Resp) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or(Value::Null)
}

/// Gives `b`'s signed-in user the centres `centres` (as an administrator would).
async fn assign(kopa: &kopa::Handle, b: &mut Browser, centres: &[&str]) -> String {
    let me = json_of(&b.get("/api/portal/me").await);
    let subject = me["subject"].as_str().unwrap().to_owned();
    let admin = Viewer {
        subject: "test-admin".into(),
        roles: vec![Role::PlatformAdmin],
        ..Viewer::default()
    };
    let a = Assignment {
        subject: subject.clone(),
        centres: centres.iter().map(|c| (*c).to_owned()).collect(),
    };
    kopa.portal().put_assignment(&admin, a).await.unwrap();
    subject
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_work_cases_over_the_api_within_their_centre_and_institution() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.directories = vec![
        slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]),
        slapd.directory(Municipality::Talsi, vec![slapd.ldap_url()]),
    ];
    config.portal.attachment_max_bytes = 64 * 1024;
    let kopa = kopa::start(config).await.unwrap();
    organisation(&kopa.portal()).await;
    let origin = format!("https://{}", kopa.addr);
    let me = Some(origin.as_str());

    // Without a portal session: 401, not a redirect.
    let mut stranger = Browser::new(
        Client::trusting(&kopa.data_dir.join("tls/cert.pem")),
        kopa.addr,
    );
    let resp = stranger.get("/api/portal/cases").await;
    assert_eq!(resp.status, 401);
    assert_eq!(json_of(&resp)["code"], "unauthenticated");

    // Anna (Ventspils, specialist) works at the Ventspils centre.
    let mut anna = sign_in(&kopa, user("anna.berzina")).await;
    let anna_subject = assign(&kopa, &mut anna, &["ventspils-kac"]).await;
    let profile = json_of(&anna.get("/api/portal/me").await);
    assert_eq!(profile["centres"], json!(["ventspils-kac"]));
    assert_eq!(profile["roles"], json!(["specialist"]));
    assert_eq!(profile["name"], "Anna Bērziņa");

    let client = json!({"kind": "natural", "name": "Jānis Bērziņš", "code": "321234-56789", "centre": "ventspils-kac"});
    let resp = anna.json("POST", "/api/portal/clients", &client, me).await;
    assert_eq!(resp.status, 201, "{}", body(&resp));
    let client_id = json_of(&resp)["id"].as_u64().unwrap();
    assert_eq!(json_of(&resp)["code"], "******-***89");
    let again = anna.json("POST", "/api/portal/clients", &client, me).await;
    assert_eq!(again.status, 409);

    let new_case = json!({"service": "TAL-NIN", "centre": "ventspils-kac", "channel": "in_person", "client": client_id});
    let resp = anna.json("POST", "/api/portal/cases", &new_case, me).await;
    assert_eq!(resp.status, 201, "{}", body(&resp));
    let case = json_of(&resp);
    let id = case["id"].as_u64().unwrap();
    assert_eq!(case["state"], "registered");
    assert_eq!(case["assignee"], anna_subject.as_str());

    // Writes are refused from another origin, in another media type, or malformed.
    let evil = anna
        .json(
            "POST",
            "/api/portal/cases",
            &new_case,
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(evil.status, 403);
    let form = anna
        .post_form("/api/portal/cases", &[("service", "TAL-NIN")])
        .await;
    assert_eq!(form.status, 415);
    let wrong = json!({"service": "TAL-NIN", "centre": "ventspils-kac", "channel": "pigeon"});
    let resp = anna.json("POST", "/api/portal/cases", &wrong, me).await;
    assert_eq!(resp.status, 400);
    assert!(
        json_of(&resp)["message"]
            .as_str()
            .unwrap()
            .contains("pigeon")
    );

    for to in ["in_progress", "forwarded_to_institution"] {
        let path = format!("/api/portal/cases/{id}/moves");
        let resp = anna.json("POST", &path, &json!({"to": to}), me).await;
        assert_eq!(resp.status, 200, "{to}: {}", body(&resp));
    }

    // Edgars (Talsi: supervisor and service owner) decides for his institution;
    // Mārta (a Talsi specialist, not at this centre) sees nothing, as if there were no case.
    let mut edgars = sign_in(&kopa, user("edgars.liepins")).await;
    let seen = edgars.get(&format!("/api/portal/cases/{id}")).await;
    assert_eq!(seen.status, 200, "{}", body(&seen));
    let path = format!("/api/portal/cases/{id}/moves");
    let resp = edgars
        .json(
            "POST",
            &path,
            &json!({"to": "decided", "note": "Piešķirts"}),
            me,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", body(&resp));
    let mut marta = sign_in(&kopa, user("marta.ozola")).await;
    let refused = marta.get(&format!("/api/portal/cases/{id}")).await;
    let missing = marta.get("/api/portal/cases/999999").await;
    assert_eq!((refused.status, missing.status), (403, 403));
    let (a, b) = (json_of(&refused), json_of(&missing));
    assert_eq!((&a["code"], &a["message"]), (&b["code"], &b["message"]));
    let marta_list = json_of(&marta.get("/api/portal/cases?q=berzins").await);
    assert_eq!(marta_list["cases"], json!([]));

    // Attachments: checked by their content, kept with a SHA-256, served as downloads.
    let pdf = b"%PDF-1.4\n% Kopa test: Ing\xc4\xa3enes pieteikums\n%%EOF\n".to_vec();
    let upload = format!("/api/portal/cases/{id}/attachments?name=Ing%C4%A3enes%20pieteikums.pdf");
    let resp = anna
        .send_body("POST", &upload, "application/pdf", pdf.clone(), me)
        .await;
    assert_eq!(resp.status, 201, "{}", body(&resp));
    let stored = json_of(&resp);
    assert_eq!(stored["name"], "Ingģenes pieteikums.pdf");
    assert_eq!(stored["size"], pdf.len());
    assert_eq!(stored["sha256"], sha256sum(&pdf));
    let file = format!("/api/portal/cases/{id}/attachments/1");
    let got = edgars.get(&file).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.as_ref(), pdf.as_slice());
    assert_eq!(got.header("content-type"), "application/pdf");
    assert_eq!(
        got.header("content-disposition"),
        "attachment; filename=\"Ing_enes pieteikums.pdf\"; filename*=UTF-8''Ing%C4%A3enes%20pieteikums.pdf"
    );
    assert!(got.header("repr-digest").starts_with("sha-256=:"));
    assert_eq!(marta.get(&file).await.status, 403);
    let disguised = anna
        .send_body(
            "POST",
            &upload,
            "application/pdf",
            b"MZ\x90\x00 not a pdf".to_vec(),
            me,
        )
        .await;
    assert_eq!(disguised.status, 400, "{}", body(&disguised));
    let program = anna
        .send_body(
            "POST",
            &upload,
            "application/x-msdownload",
            b"MZ\x90\x00".to_vec(),
            me,
        )
        .await;
    assert_eq!(program.status, 415);
    let big = anna
        .send_body("POST", &upload, "text/plain", vec![b'a'; 80 * 1024], me)
        .await;
    assert_eq!(big.status, 413, "{}", body(&big));
    let elsewhere = anna
        .send_body(
            "POST",
            &upload,
            "application/pdf",
            pdf.clone(),
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(elsewhere.status, 403);

    // Search without diacritics; the history; the report and its CSV.
    let found = json_of(&anna.get("/api/portal/cases?q=berzins&view=all").await);
    assert_eq!(found["cases"][0]["id"], id);
    assert_eq!(found["cases"][0]["client"]["code"], "******-***89");
    let detail = json_of(&anna.get(&format!("/api/portal/cases/{id}")).await);
    assert_eq!(detail["history"].as_array().unwrap().len(), 5);
    assert_eq!(detail["history"][3]["note"], "Piešķirts");
    assert_eq!(detail["history"][4]["type"], "attached");
    assert_eq!(detail["attachments"][0]["n"], 1);
    assert_eq!(detail["next_states"], json!(["result_delivered"]));
    let csv = anna
        .get("/api/portal/reports?by=service&from=2000-01-01&to=2100-01-01&format=csv")
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").starts_with("text/csv"));
    assert!(body(&csv).contains("\r\nTAL-NIN,1,"), "{}", body(&csv));
    let bad = anna
        .get("/api/portal/reports?by=planet&from=2026-01-01&to=2027-01-01")
        .await;
    assert_eq!(bad.status, 400);

    // The whole code: to those who serve the client, audited before it is shown.
    let path = format!("/api/portal/clients/{client_id}/unmask");
    let resp = anna.json("POST", &path, &json!(null), me).await;
    assert_eq!(json_of(&resp)["code"], "321234-56789", "{}", body(&resp));
    let resp = marta.json("POST", &path, &json!(null), me).await;
    assert_eq!(resp.status, 403);
    let records = kopa_tests::audit_records(&kopa.data_dir);
    let unmasks: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["event.action"] == "personal-code-unmask")
        .map(|r| {
            (
                r["event.outcome"].as_str().unwrap_or(""),
                r["user.name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(unmasks.len(), 2, "{unmasks:?}");
    assert_eq!(unmasks[0].0, "success");
    assert_eq!(unmasks[1].0, "failure");
    assert!(
        records
            .iter()
            .all(|r| !r.to_string().contains("321234-56789"))
    );

    // The API describes itself.
    let doc = json_of(&stranger.get("/api/openapi.json").await);
    assert!(doc["paths"]["/api/portal/cases"]["get"].is_object());
    kopa.shutdown().await;
}

/// The built app (`scripts/build-ui.sh`, which `make test` runs) under the target dir.
pub(crate) fn ui_dir() -> std::path::PathBuf {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap().join("ui");
    assert!(
        dir.join("kopa_portal_ui_bg.wasm").exists(),
        "{} has no portal app: run scripts/build-ui.sh (make test does)",
        dir.display()
    );
    dir
}

/// The serious and critical findings of axe-core on each page.
pub(crate) fn serious(axe: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (page, violations) in axe.as_object().unwrap() {
        for v in violations.as_array().unwrap() {
            if matches!(v["impact"].as_str(), Some("serious" | "critical")) {
                out.push(format!("{page}: {v}"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_specialist_works_a_case_in_a_real_browser() {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = kopa_tests::config_in(dir.path());
    config.directories = vec![slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()])];
    config.portal.ui_dir = Some(ui_dir());
    let kopa = kopa::start(config).await.unwrap();
    organisation(&kopa.portal()).await;
    // Anna must work at the centre before the browser signs her in: learn her subject
    // through the API first.
    let anna = user("anna.berzina");
    let mut api = sign_in(&kopa, anna).await;
    assign(&kopa, &mut api, &["ventspils-kac"]).await;

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    let profile = tempfile::tempdir().unwrap();
    let axe_js = kopa_tests::pyenv().join("node_modules/axe-core/axe.min.js");
    let axe_js = axe_js.to_str().unwrap();
    let url = format!("https://{}", kopa.addr);
    let ca = kopa.data_dir.join("tls/cert.pem");
    let login = anna.login();
    let args: Vec<String> = [
        "--url",
        &url,
        "--ca",
        ca.to_str().unwrap(),
        "--username",
        &login,
        "--password",
        anna.password,
        "--service",
        "TAL-NIN",
        "--client-name",
        "Pēteris Ķeniņš",
        "--client-code",
        "320101-12345",
        "--search",
        "peteris kenins",
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
        serde_json::from_str(&kopa_tests::run_peer("portal_browser.py", args).await).unwrap();
    assert!(out["failed"].is_null(), "{out:#}");
    assert_eq!(out["page_errors"], json!([]), "{out:#}");
    assert_eq!(out["landed_on"], "/reports", "back to the page asked for");
    assert_eq!(
        out["states"],
        json!(["in_progress", "decided", "result_delivered"])
    );
    assert_eq!(out["attachments"], json!(["izziņa.pdf"]));
    assert_eq!(out["history"], 5);
    assert_eq!(out["search_found"], true);
    assert_eq!(out["saved_filter_found"], true, "{out:#}");
    assert_eq!(
        out["report_after"].as_u64().unwrap(),
        out["report_before"].as_u64().unwrap() + 1
    );
    assert!(out["chart_bars"].as_u64().unwrap() >= 1);
    assert_eq!(out["lang"], "en");
    assert_eq!(out["lang_after_reload"], "en");
    assert!(out["nav"].as_str().unwrap().contains("Reports"));
    assert_eq!(out["tablet_overflow"], false, "the case list fits a tablet");
    for page in ["reports", "cases", "new_case", "case", "clients"] {
        assert!(out["axe"][page].is_array(), "axe did not run on {page}");
    }
    let findings = serious(&out["axe"]);
    assert!(findings.is_empty(), "accessibility: {findings:#?}");

    // What the browser did is the record: the case is there, delivered.
    let list = json_of(&api.get("/api/portal/cases?q=kenins").await);
    assert_eq!(list["cases"][0]["state"], "result_delivered");
    kopa.shutdown().await;
}
