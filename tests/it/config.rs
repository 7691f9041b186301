//! Configuration as the operator meets it: `kopa check-config` on every shipped example,
//! and the layering of file, environment and command line in the real process.

use kopa_tests::{KopaProcess, run_kopa};

#[test]
fn every_example_passes_check_config() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // Referenced files (certificates, secrets) live on the appliance, not here.
            let out = run_kopa(&["check-config", "--no-files", path.to_str().unwrap()], &[]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the shipped examples in {}",
        examples.display()
    );
}

#[test]
fn missing_referenced_file_fails_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kopa.toml");
    std::fs::write(
        &file,
        "[bootstrap]\nadmin_password_file = \"/nonexistent/kopa-secret\"\n",
    )
    .unwrap();
    let out = run_kopa(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrap.admin_password_file"));
}

#[test]
fn cli_beats_environment_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kopa.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\ndata_dir = {:?}\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    // The environment moves the listener off the file's port; the CLI moves it again.
    let mut kopa = KopaProcess::spawn(
        &[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("KOPA__SERVER__LISTEN", "127.0.0.1:2")],
    );
    let addr = kopa.wait_listening();
    assert_ne!(addr.port(), 0);
    assert!(addr.port() != 1 && addr.port() != 2);
    assert!(
        data.join("idp.redb").exists(),
        "data_dir from the file was not used"
    );
    kopa.signal("TERM");
    kopa.wait_exit(std::time::Duration::from_secs(15));

    // Without the CLI flag the environment wins over the file.
    let out = run_kopa(
        &["serve", "--config", file.to_str().unwrap()],
        &[("KOPA__SERVER__LISTEN", "not-an-address")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KOPA__SERVER__LISTEN"));
}

#[test]
fn secret_file_sets_the_first_admin_password() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("admin.secret");
    std::fs::write(&secret, "Ventspils-Kopa-2026\n").unwrap();
    let data = dir.path().join("data");
    let mut kopa = KopaProcess::spawn(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[(
            "KOPA__BOOTSTRAP__ADMIN_PASSWORD_FILE",
            secret.to_str().unwrap(),
        )],
    );
    kopa.wait_listening();
    kopa.wait_line(false, std::time::Duration::from_secs(10), |l| {
        l.contains("bootstrap.admin_password_file")
    });
    assert!(!kopa.stdout().contains("Ventspils-Kopa-2026"));
    kopa.signal("TERM");
    kopa.wait_exit(std::time::Duration::from_secs(15));
    assert!(!kopa.stderr().contains("Ventspils-Kopa-2026"));

    // The stored hash is of the file's password (without its trailing newline).
    let store = kopa_store::Store::open(&data, &kopa_idp::SCHEMA).unwrap();
    let accounts = kopa_idp::LocalAccounts::new(store, std::sync::Arc::new(kopa_core::SystemClock));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = |pw: &str| {
        rt.block_on(accounts.verify_password("admin", kopa_config::Secret::new(pw.into())))
            .unwrap()
    };
    assert!(ok("Ventspils-Kopa-2026"));
    assert!(!ok("Ventspils-Kopa-2026\n"));
}
