//! Testkit: start an appliance in-process or as the real `kopa` process on ephemeral ports
//! with a temporary data directory, and talk to it over real TLS with HTTP/1.1 or HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod client;
pub mod process;
pub mod slapd;

use std::path::Path;

pub use client::{Client, Conn, Proto, Resp};
pub use process::{KopaProcess, kopa_bin, kopa_ok, run_kopa};

/// A default configuration on an ephemeral loopback port with its data in `dir`.
pub fn config_in(dir: &Path) -> kopa_config::Config {
    let mut config = kopa_config::Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.server.data_dir = dir.to_owned();
    config
}

/// Starts an in-process appliance in `dir`.
pub async fn start_in(dir: &Path) -> kopa::Handle {
    kopa::start(config_in(dir)).await.expect("appliance starts")
}

/// Every audit record of the appliance with data in `data_dir`, through
/// `kopa audit export --format jsonl` (a running appliance answers over its control socket).
pub fn audit_records(data_dir: &Path) -> Vec<serde_json::Value> {
    let out = kopa_ok(&[
        "audit",
        "export",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--format",
        "jsonl",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The test peers' venv (`$KOPA_PYENV`, default `/opt/kopa-pyenv`), which also holds
/// axe-core under `node_modules`.
pub fn pyenv() -> std::path::PathBuf {
    std::env::var_os("KOPA_PYENV").map_or_else(
        || std::path::PathBuf::from("/opt/kopa-pyenv"),
        std::path::PathBuf::from,
    )
}

/// Runs the test peer `tests/peers/<script>` with `args` in the peers' venv
/// (`$KOPA_PYENV`, default `/opt/kopa-pyenv`, set up by `scripts/install-deps.sh test`),
/// off the async runtime so an in-process appliance keeps serving. Returns stdout;
/// panics with stderr when the peer exits non-zero.
pub async fn run_peer(script: &str, args: Vec<String>) -> String {
    let venv = pyenv();
    let python = venv.join("bin/python3");
    assert!(
        python.exists(),
        "{} is missing: the peer tests need the venv of `scripts/install-deps.sh test` \
         (which `make test` runs), or set KOPA_PYENV",
        python.display()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(script);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(path)
            .args(args)
            .env("PYTHONUTF8", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stderr}",
        out.status
    );
    String::from_utf8(out.stdout).unwrap()
}

/// SHA-256 fingerprint of the first certificate in a PEM file, as Kopa prints it.
pub fn pem_fingerprint(path: &Path) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    kopa_web::tls::fingerprint(der.as_ref())
}

/// A `[server]` section naming a TLS certificate and key file.
pub fn tls_files_toml(cert: &Path, key: &Path) -> String {
    format!(
        "[server]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        cert.to_str().unwrap(),
        key.to_str().unwrap()
    )
}
