//! The real `kopa` process: first start and restart, signals, crashes and bad input.

use kopa_config::Secret;
use kopa_core::SystemClock;
use kopa_idp::LocalAccounts;
use kopa_tests::{Client, KopaProcess, Proto, pem_fingerprint, run_kopa};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

const PASSWORD_LINE: &str = "Password (shown only now, store it safely): ";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_creates_secrets_once_and_a_restart_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let mut kopa = KopaProcess::serve(&data, &[]);
    let addr = kopa.wait_listening();
    let password_line = kopa.wait_line(false, Duration::from_secs(10), |l| {
        l.starts_with(PASSWORD_LINE)
    });
    let password = password_line.trim_start_matches(PASSWORD_LINE).to_owned();
    assert!(password.len() >= 20, "{password}");
    let out = kopa.stdout();
    let cert = data.join("tls/cert.pem");
    let fingerprint = pem_fingerprint(&cert);
    assert!(
        out.contains(&format!(
            "TLS certificate SHA-256 fingerprint: {fingerprint}"
        )),
        "{out}"
    );
    assert!(
        out.contains("Created platform administrator account: admin"),
        "{out}"
    );
    assert_eq!(out.matches("Generated IdP").count(), 3, "{out}");

    let client = Client::trusting(&cert);
    assert_eq!(client.get(addr, Proto::H2, "/readyz").await.status, 200);

    // Secrets on disk are private; the password exists nowhere but in that one line.
    for file in [
        "tls/key.pem",
        "keys/oidc-es256.pem",
        "keys/oidc-rs256.pem",
        "keys/saml-signing.pem",
        "idp.redb",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data), 0o700);
    kopa.signal("TERM");
    assert!(kopa.wait_exit(Duration::from_secs(15)).success());
    let log = kopa.stderr();
    assert!(!log.contains(&password), "password leaked into the log");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
    }
    assert!(log.contains("\"stopped\""), "{log}");
    let db = std::fs::read(data.join("idp.redb")).unwrap();
    assert!(!db.windows(password.len()).any(|w| w == password.as_bytes()));
    assert!(db.windows(10).any(|w| w == b"$argon2id$"));

    let key_files = || -> Vec<Vec<u8>> {
        [
            "oidc-es256.pem",
            "oidc-rs256.pem",
            "saml-signing.pem",
            "saml-signing.crt",
        ]
        .iter()
        .map(|f| std::fs::read(data.join("keys").join(f)).unwrap())
        .collect()
    };
    let keys_before = key_files();

    let mut again = KopaProcess::serve(&data, &[]);
    let addr = again.wait_listening();
    let (_, served) = client.connect(addr, Proto::H1).await;
    assert_eq!(served, fingerprint);
    let out = again.stdout();
    assert!(
        !out.contains("Password") && !out.contains("Generated"),
        "{out}"
    );
    assert!(out.contains(&fingerprint));
    again.signal("INT");
    assert!(again.wait_exit(Duration::from_secs(15)).success());
    let keys_after = key_files();
    assert_eq!(keys_before, keys_after);

    // The printed password is the stored one.
    let store = kopa_store::Store::open(&data, &kopa_idp::SCHEMA).unwrap();
    let accounts = LocalAccounts::new(store, Arc::new(SystemClock));
    assert!(
        accounts
            .verify_password("admin", Secret::new(password))
            .await
            .unwrap()
    );
    assert!(
        !accounts
            .verify_password("admin", Secret::new("not-the-password".into()))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let write_pair = || {
        let pair = kopa_web::tls::self_signed(&["127.0.0.1".into()], 5).unwrap();
        std::fs::write(dir.path().join("next.crt"), &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        std::fs::rename(dir.path().join("next.crt"), &cert).unwrap();
    };
    write_pair();
    let first = pem_fingerprint(&cert);
    let client_a = Client::trusting(&cert);
    let config = dir.path().join("kopa.toml");
    std::fs::write(
        &config,
        format!("version = 1\n{}", kopa_tests::tls_files_toml(&cert, &key)),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut kopa = KopaProcess::serve(&data, &["--config", config.to_str().unwrap()]);
    let addr = kopa.wait_listening();

    let (mut open_conn, seen) = client_a.connect(addr, Proto::H2).await;
    assert_eq!(seen, first);
    assert_eq!(
        open_conn
            .send(kopa_tests::client::get("/healthz"))
            .await
            .status,
        200
    );

    write_pair();
    let second = pem_fingerprint(&cert);
    assert_ne!(first, second);
    kopa.signal("HUP");
    kopa.wait_line(true, Duration::from_secs(10), |l| {
        l.contains("TLS certificate reloaded") && l.contains(&second)
    });

    // The connection made before the reload still works…
    assert_eq!(
        open_conn
            .send(kopa_tests::client::get("/healthz"))
            .await
            .status,
        200
    );
    // …and new handshakes get the new certificate.
    let (_, seen) = Client::trusting(&cert).connect(addr, Proto::H1).await;
    assert_eq!(seen, second);

    // A broken file on reload keeps the served certificate.
    // Well-formed armour around bytes that are no key: the error must not echo them.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nS29wYVNlY3JldEtleU1hdGVyaWFs\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    kopa.signal("HUP");
    kopa.wait_line(true, Duration::from_secs(10), |l| {
        l.contains("TLS reload failed")
    });
    let (_, seen) = Client::trusting(&cert).connect(addr, Proto::H1).await;
    assert_eq!(seen, second);
    assert!(!kopa.stderr().contains("S29wYVNlY3JldEtleU1hdGVyaWFs"));
}

async fn add_account(client: &mut kopa::control::ControlClient, name: &str) -> bool {
    let req = kopa::control::Request::AddLocalAccount {
        username: name.into(),
        display_name: String::new(),
        tenant: None,
        roles: vec![kopa_core::Role::Auditor],
    };
    matches!(client.call(&req).await, Ok(reply) if reply.ok)
}

async fn listed_accounts(data: &std::path::Path) -> Vec<String> {
    let mut client = kopa::control::ControlClient::connect(data)
        .await
        .unwrap()
        .expect("kopa listens");
    let reply = client
        .call(&kopa::control::Request::ListLocalAccounts)
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    reply
        .result
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut kopa = KopaProcess::serve(&data, &[]);
    kopa.wait_listening();

    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..2 {
        let data = data.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let mut client = kopa::control::ControlClient::connect(&data)
                .await
                .unwrap()
                .unwrap();
            for i in 0..10_000 {
                let name = format!("writer{w}-{i}");
                if !add_account(&mut client, &name).await {
                    break; // the process died mid-request: not acknowledged
                }
                acknowledged.lock().unwrap().push(name);
            }
        }));
    }
    // Kill only once a fair number of writes were acknowledged (argon2 makes each slow).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "writes are not being acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kopa.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 5,
        "too few writes to mean anything: {}",
        acknowledged.len()
    );

    let mut again = KopaProcess::serve(&data, &[]);
    let addr = again.wait_listening();
    let ready = Client::trusting(&data.join("tls/cert.pem"))
        .get(addr, Proto::H2, "/readyz")
        .await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    let present = listed_accounts(&data).await;
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|n| !present.contains(n))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

fn one_clear_line(out: &std::process::Output, needle: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("kopa: "))
        .unwrap_or_else(|| panic!("no 'kopa:' line in {err:?}"));
    assert!(
        line.contains(needle),
        "{line:?} does not mention {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn malformed_config_lists_every_problem_with_lines_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kopa.toml");
    std::fs::write(&file, "version = 1\n[server]\nlisten = 5\nmax_connections = \"many\"\nbogus = true\n[log]\nlevel = \"loud\"\n").unwrap();
    for args in [
        vec!["check-config", file.to_str().unwrap()],
        vec!["serve", "--config", file.to_str().unwrap()],
    ] {
        let out = run_kopa(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for expected in [
            "kopa.toml:3: server.listen",
            "kopa.toml:4: server.max_connections",
            "kopa.toml:5: server.bogus",
            "kopa.toml:7: log.level",
        ] {
            assert!(err.contains(expected), "{expected:?} missing in:\n{err}");
        }
    }
}

#[test]
fn unreadable_or_bad_key_file_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let pair = kopa_web::tls::self_signed(&["127.0.0.1".into()], 5).unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, pair.cert_pem).unwrap();
    let missing = dir.path().join("missing.key");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for (key, needle) in [(&missing, "missing.key"), (&garbage, "garbage.key")] {
        let config = dir.path().join("kopa.toml");
        std::fs::write(&config, kopa_tests::tls_files_toml(&cert, key)).unwrap();
        let data = dir.path().join("data");
        let out = run_kopa(
            &[
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            &[],
        );
        one_clear_line(&out, needle);
    }
}

#[test]
fn port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = run_kopa(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr,
        ],
        &[],
    );
    one_clear_line(&out, &format!("Cannot listen on {addr}"));
}

#[test]
fn read_only_data_directory_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&ro)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this test mounts a read-only tmpfs and must run as root (CI does)"
    );
    let data = ro.join("data");
    let out = run_kopa(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let _ = std::process::Command::new("umount").arg(&ro).status();
    one_clear_line(&out, "Read-only file system");
}
