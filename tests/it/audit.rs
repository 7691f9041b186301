//! The audit log through the real `kopa` binary: administrative actions show up in
//! `kopa audit export`, online and offline, and `kopa audit verify` names a record edited
//! in the stopped appliance's `audit.redb`.

use kopa_core::Clock;
use kopa_store::Store;
use kopa_store::audit::{self, AUDIT_SCHEMA, CSV_COLUMNS, Outcome};
use kopa_tests::{KopaProcess, kopa_ok, run_kopa};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn dir_arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Creates an account, resets its password and takes a backup, as an operator would.
fn admin_actions(data: &Path, snapshot: &Path) {
    let d = dir_arg(data);
    kopa_ok(&[
        "admin",
        "--data-dir",
        d,
        "local-account",
        "add",
        "liga",
        "--role",
        "auditor",
        "--tenant",
        "ventspils",
        "--display-name",
        "Līga Bērziņa",
    ]);
    kopa_ok(&[
        "admin",
        "--data-dir",
        d,
        "local-account",
        "reset-password",
        "liga",
    ]);
    kopa_ok(&["backup", dir_arg(snapshot), "--data-dir", d]);
}

fn export_jsonl(data: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["audit", "export", "--data-dir", dir_arg(data)];
    args.extend_from_slice(extra);
    let out = kopa_ok(&args);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn actions(lines: &[serde_json::Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["event.action"].as_str().unwrap())
        .collect()
}

#[test]
fn admin_actions_are_exported_online_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let since = audit::format_rfc3339_ms(kopa_core::SystemClock.now_millis() - 60_000);
    let mut kopa = KopaProcess::serve(&data, &[]);
    kopa.wait_listening();
    admin_actions(&data, &dir.path().join("snapshot"));

    let lines = export_jsonl(&data, &["--since", &since, "--format", "jsonl"]);
    // The first start's administrator comes first; the export records itself before the
    // first record leaves.
    assert_eq!(lines[0]["user.id"], "bootstrap");
    assert_eq!(lines[0]["kopa.details"]["target_user"], "admin");
    let lines = lines[1..].to_vec();
    assert_eq!(
        actions(&lines),
        [
            "local-account-created",
            "password-reset",
            "backup-taken",
            "audit-exported"
        ],
        "{lines:?}"
    );
    let created = &lines[0];
    assert_eq!(created["event.category"], serde_json::json!(["iam"]));
    assert_eq!(created["event.outcome"], "success");
    assert_eq!(created["organization.id"], "ventspils");
    assert_eq!(created["user.id"], "control-socket");
    assert_eq!(created["kopa.details"]["target_user"], "liga");
    assert_eq!(lines[1]["kopa.details"]["target_user"], "liga");
    assert_eq!(lines[1]["kopa.prev_hash"], created["kopa.hash"]);
    assert!(
        !serde_json::to_string(&lines)
            .unwrap()
            .contains("password\":"),
        "no password in any record"
    );

    let csv = dir.path().join("audit.csv");
    kopa_ok(&[
        "audit",
        "export",
        "--data-dir",
        dir_arg(&data),
        "--format",
        "csv",
        "--output",
        dir_arg(&csv),
    ]);
    let mode = std::fs::metadata(&csv).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut rows = text.split("\r\n");
    assert_eq!(rows.next().unwrap(), CSV_COLUMNS.join(","));
    assert!(
        text.contains(",local-account-created,success,,ventspils,"),
        "{text}"
    );

    let out = kopa_ok(&["audit", "verify", "--data-dir", dir_arg(&data)]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Audit log intact"),
        "{out:?}"
    );

    kopa.signal("TERM");
    kopa.wait_exit(Duration::from_secs(15));

    // Offline, the CLI reads the files itself and sees the same chain, including the
    // record of every export made so far.
    let lines = export_jsonl(&data, &["--since", &since]);
    let seen = actions(&lines);
    assert_eq!(
        seen[..4],
        [
            "local-account-created",
            "local-account-created",
            "password-reset",
            "backup-taken"
        ]
    );
    assert_eq!(
        seen.iter().filter(|a| **a == "audit-exported").count(),
        3,
        "{seen:?}"
    );
    assert!(seen.contains(&"audit-verified"), "{seen:?}");
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["event.sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn verify_names_a_record_edited_in_the_stopped_appliance() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut kopa = KopaProcess::serve(&data, &[]);
    kopa.wait_listening();
    admin_actions(&data, &dir.path().join("snapshot"));
    kopa.signal("TERM");
    kopa.wait_exit(Duration::from_secs(15));
    kopa_ok(&["audit", "verify", "--data-dir", dir_arg(&data)]);

    // Rewrite record 3 behind the log's back: "the reset failed". (Record 1 is the first
    // start's administrator, record 2 the account the control socket created.)
    {
        let store = Store::open(&data, &AUDIT_SCHEMA).unwrap();
        let mut record = audit::record(&store, 3).unwrap().unwrap();
        assert_eq!(record.event.action, "password-reset");
        record.event.outcome = Outcome::Failure;
        store
            .write_blocking(|t| t.insert(&audit::RECORDS, &3, &record).map(drop))
            .unwrap();
    }
    let out = run_kopa(&["audit", "verify", "--data-dir", dir_arg(&data)], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("record 3: altered"), "{stderr}");

    // Remove record 2 as well: the earlier break is named.
    {
        let store = Store::open(&data, &AUDIT_SCHEMA).unwrap();
        store
            .write_blocking(|t| t.remove(&audit::RECORDS, &2).map(drop))
            .unwrap();
    }
    let out = run_kopa(&["audit", "verify", "--data-dir", dir_arg(&data)], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("record 2: missing"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let handle = kopa_tests::start_in(dir.path()).await;
    let mut client = kopa::control::ControlClient::connect(dir.path())
        .await
        .unwrap()
        .unwrap();
    let reply = client
        .call(&kopa::control::Request::AuditVerify)
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    drop(client);
    handle.shutdown().await;
    // The writer has stopped; the file closes once the control connection's task, which
    // ends with the connection, lets go of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let store = loop {
        match Store::open(dir.path(), &AUDIT_SCHEMA) {
            Ok(s) => break s,
            Err(kopa_store::StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("audit.redb stays open after shutdown: {e}"),
        }
    };
    let report = audit::verify(&store, None).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        report.records, 2,
        "the first administrator and the verification itself"
    );
}
