//! Online backup while writes keep coming, verified restore into a fresh directory, and
//! refusals: a tampered snapshot, a running appliance.

use kopa_tests::{KopaProcess, kopa_ok, run_kopa};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Waits until at least `n` writes were acknowledged.
async fn wait_for(acked: &std::sync::Mutex<Vec<String>>, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "writes stalled below {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_during_writes_restores_to_an_identical_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let snapshot = dir.path().join("snapshot");
    let mut kopa = KopaProcess::serve(&data, &[]);
    kopa.wait_listening();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writer = {
        let (data, stop, acked) = (data.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut client = kopa::control::ControlClient::connect(&data)
                .await
                .unwrap()
                .unwrap();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let req = kopa::control::Request::AddLocalAccount {
                    username: format!("user-{i}"),
                    display_name: "Jānis Bērziņš".into(),
                    tenant: None,
                    roles: vec![kopa_core::Role::Specialist],
                };
                assert!(client.call(&req).await.unwrap().ok);
                acked.lock().unwrap().push(format!("user-{i}"));
                i += 1;
            }
        })
    };
    wait_for(&acked, 5).await;
    let before_backup = acked.lock().unwrap().len();
    let snap = snapshot.clone();
    let data_arg = data.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_kopa(
            &[
                "backup",
                snap.to_str().unwrap(),
                "--data-dir",
                data_arg.to_str().unwrap(),
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after_backup = acked.lock().unwrap().len();
    wait_for(&acked, after_backup + 3).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let all = acked.lock().unwrap().clone();
    assert!(
        all.len() > after_backup,
        "writes continued after the backup"
    );

    // Restoring into the running appliance's directory is refused.
    let out = run_kopa(
        &[
            "restore",
            snapshot.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop Kopa first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kopa.signal("TERM");
    kopa.wait_exit(Duration::from_secs(15));

    let restored = dir.path().join("restored");
    kopa_ok(&[
        "restore",
        snapshot.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);

    // Each restored database is exactly the snapshot's.
    let manifest = kopa_store::backup::verify(&snapshot).unwrap();
    for schema in kopa::SCHEMAS {
        let store = kopa_store::Store::open(&restored, schema).unwrap();
        let digest = kopa_store::backup::digest_store(&store).unwrap();
        let entry = manifest
            .databases
            .iter()
            .find(|d| d.service == schema.service)
            .unwrap();
        assert_eq!(digest, entry.tables, "{}", schema.service);
    }
    // The keys came along, byte for byte and private: without them the restored appliance
    // would sign with new keys and hand SAML providers new pairwise identifiers.
    let files = |root: &std::path::Path| {
        let mut out = Vec::new();
        for e in std::fs::read_dir(root.join("keys")).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                out.push((e.file_name(), std::fs::read(e.path()).unwrap()));
            }
        }
        out.sort();
        out
    };
    let original = files(&data);
    assert!(
        original
            .iter()
            .any(|(n, _)| n.to_str() == Some("saml-pairwise.secret"))
    );
    assert_eq!(files(&restored), original);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(restored.join("keys/saml-pairwise.secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");

    // And its accounts are a prefix of the acknowledged stream, cut during the backup.
    let mut kopa = KopaProcess::serve(&restored, &[]);
    kopa.wait_listening();
    let mut client = kopa::control::ControlClient::connect(&restored)
        .await
        .unwrap()
        .unwrap();
    let reply = client
        .call(&kopa::control::Request::ListLocalAccounts)
        .await
        .unwrap();
    let names: Vec<String> = reply
        .result
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap().to_owned())
        .filter(|n| n.starts_with("user-"))
        .collect();
    assert!(
        names.len() >= before_backup && names.len() <= after_backup,
        "{} not in {before_backup}..={after_backup}",
        names.len()
    );
    for name in &all[..names.len()] {
        assert!(
            names.contains(name),
            "{name} missing from the restored snapshot"
        );
    }
}

#[test]
fn a_tampered_snapshot_is_refused_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let snapshot = dir.path().join("snapshot");
    // An appliance that ran once, then stopped.
    let mut kopa = KopaProcess::serve(&data, &[]);
    kopa.wait_listening();
    kopa.signal("TERM");
    kopa.wait_exit(Duration::from_secs(15));
    // Offline administration and backup: the CLI opens the databases itself.
    kopa_ok(&[
        "admin",
        "--data-dir",
        data.to_str().unwrap(),
        "local-account",
        "add",
        "anna",
        "--role",
        "auditor",
    ]);
    kopa_ok(&[
        "backup",
        snapshot.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);

    let file = snapshot.join("idp.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();

    let before = std::fs::read(data.join("idp.redb")).unwrap();
    let out = run_kopa(
        &[
            "restore",
            snapshot.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("kopa: "));
    assert_eq!(std::fs::read(data.join("idp.redb")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restor"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A changed key file in a backup is caught the same way.
    let second = dir.path().join("second");
    kopa_ok(&[
        "backup",
        second.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    std::fs::write(second.join("keys/saml-pairwise.secret"), [7u8; 32]).unwrap();
    let out = run_kopa(&["restore", second.to_str().unwrap(), "--verify-only"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keys/saml-pairwise.secret"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
