//! TLS for the one listener: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only,
//! ALPN h2 and http/1.1, and a certificate that can be swapped at runtime (SIGHUP) without
//! touching established connections: new handshakes simply pick up the new key.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("Cannot read TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file could not be read or holds no usable PEM private key.
    #[error("Cannot read TLS private key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never the key material).
        reason: String,
    },
    /// Certificate and key do not belong together, or rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(String),
    /// A self-signed certificate could not be generated.
    #[error("Cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// What operators need to recognise a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the leaf certificate's DER, as colon-separated upper-case hex.
    pub sha256_fingerprint: String,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The SHA-256 fingerprint of a DER certificate, formatted as browsers show it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn load(cert_path: &Path, key_path: &Path) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let cert_err = |reason: String| TlsError::Certificate {
        path: cert_path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| cert_err("no PEM certificate in the file".into()))?;
    let info = CertInfo {
        sha256_fingerprint: fingerprint(leaf.as_ref()),
    };
    // The PEM parser's error names only the section kind, never key bytes.
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: key_path.to_owned(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| {
        TlsError::Config(format!(
            "the key in {} does not belong to the certificate in {}",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    Ok((certified, info))
}

/// The server certificate, reloadable from its files.
#[derive(Debug)]
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, CertInfo)>,
}

impl ReloadableCert {
    /// Loads the certificate chain and key from PEM files.
    pub fn open(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let (key, info) = load(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new((Arc::new(key), info)),
        }))
    }

    /// Re-reads the files; on any problem the certificate in use stays.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        let (key, info) = load(&self.cert_path, &self.key_path)?;
        let mut guard = self
            .current
            .write()
            .map_err(|_| TlsError::Config("certificate lock poisoned".into()))?;
        *guard = (Arc::new(key), info.clone());
        Ok(info)
    }

    /// The certificate currently served.
    /// The certificate file it serves.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn info(&self) -> Option<CertInfo> {
        self.current.read().ok().map(|g| g.1.clone())
    }

    /// A rustls server configuration that serves this certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|g| g.0.clone())
    }
}

/// A self-signed certificate (ECDSA P-256) and its PKCS#8 key, both PEM.
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate.
    pub cert_pem: String,
    /// The private key; write it with mode 0600.
    pub key_pem: String,
}

/// Makes a self-signed certificate for `names` (DNS names or IP addresses), valid from a day
/// ago for `days` days.
pub fn self_signed(names: &[String], days: i64) -> Result<SelfSigned, TlsError> {
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(gen_err)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kopa appliance (self-signed)");
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let s = self_signed(&["localhost".into(), "127.0.0.1".into()], 30).unwrap();
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, s.cert_pem).unwrap();
        std::fs::write(&k, s.key_pem).unwrap();
        (c, k)
    }

    #[test]
    fn reload_swaps_and_keeps_old_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        let cert = ReloadableCert::open(&c, &k).unwrap();
        let first = cert.info().unwrap();
        assert_eq!(first.sha256_fingerprint.len(), 32 * 3 - 1);

        let (c2, k2) = write_pair(dir.path(), "b");
        std::fs::copy(&c2, &c).unwrap();
        std::fs::copy(&k2, &k).unwrap();
        let second = cert.reload().unwrap();
        assert_ne!(first, second);

        std::fs::write(&k, "not a key").unwrap();
        assert!(matches!(cert.reload(), Err(TlsError::Key { .. })));
        assert_eq!(cert.info().unwrap(), second);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = write_pair(dir.path(), "a");
        let (_, k) = write_pair(dir.path(), "b");
        assert!(matches!(
            ReloadableCert::open(&c, &k),
            Err(TlsError::Config(_))
        ));
    }

    #[test]
    fn key_errors_never_show_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        let pem = std::fs::read_to_string(&k).unwrap();
        std::fs::write(&k, pem.replace("PRIVATE KEY", "PRIVATE KAY")).unwrap();
        let err = ReloadableCert::open(&c, &k).unwrap_err().to_string();
        let body_line = pem.lines().nth(1).unwrap();
        assert!(!err.contains(body_line), "{err}");
    }
}
