//! Certificates, through x509-parser: Kopa's own (TLS, IdP signing), the LDAP CAs, files
//! and remote TLS endpoints named in the configuration.

use crate::series::Sample;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Where a certificate was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// PEM text held by Kopa (its TLS certificate, its signing certificates).
    Pem { name: String, pem: String },
    /// A PEM file; every certificate in it is read.
    File {
        name: String,
        path: std::path::PathBuf,
        tenant: Option<String>,
    },
    /// A TLS endpoint (`host:port`); the chain it presents is read, trusted or not.
    Endpoint { name: String, address: String },
}

/// What the dashboards and controls need of one certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertInfo {
    /// The `cert` label: the source's name, with `#2`, `#3`… for further certificates.
    pub name: String,
    /// The tenant it belongs to (an LDAP directory's CA), if any.
    pub tenant: Option<String>,
    pub subject: String,
    pub issuer: String,
    pub not_after_ms: i64,
    pub days_left: f64,
    /// `RSA`, `EC`, `Ed25519`, `DSA` or `unknown`.
    pub key_type: String,
    pub key_bits: u32,
    pub signature_algorithm: String,
    pub sha256: String,
    pub weak_key: bool,
    pub weak_signature: bool,
}

/// A source that could not be read, with a short reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertProblem {
    pub name: String,
    pub reason: String,
}

fn signature_name(oid: &str) -> (&'static str, bool) {
    match oid {
        "1.2.840.113549.1.1.11" => ("sha256WithRSAEncryption", false),
        "1.2.840.113549.1.1.12" => ("sha384WithRSAEncryption", false),
        "1.2.840.113549.1.1.13" => ("sha512WithRSAEncryption", false),
        "1.2.840.113549.1.1.10" => ("RSASSA-PSS", false),
        "1.2.840.113549.1.1.5" => ("sha1WithRSAEncryption", true),
        "1.2.840.113549.1.1.4" => ("md5WithRSAEncryption", true),
        "1.2.840.10045.4.3.2" => ("ecdsa-with-SHA256", false),
        "1.2.840.10045.4.3.3" => ("ecdsa-with-SHA384", false),
        "1.2.840.10045.4.3.4" => ("ecdsa-with-SHA512", false),
        "1.2.840.10045.4.1" => ("ecdsa-with-SHA1", true),
        "1.3.101.112" => ("Ed25519", false),
        _ => ("unknown", false),
    }
}

/// Reads one DER certificate.
pub fn inspect(
    name: &str,
    tenant: Option<&str>,
    der: &[u8],
    now_ms: u64,
) -> Result<CertInfo, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
    let not_after_ms = cert.validity().not_after.timestamp() * 1000;
    let key_oid = cert.public_key().algorithm.algorithm.to_id_string();
    let (key_type, key_bits) = match (key_oid.as_str(), cert.public_key().parsed()) {
        ("1.3.101.112", _) => ("Ed25519", 256),
        (_, Ok(PublicKey::RSA(k))) => ("RSA", k.key_size()),
        (_, Ok(PublicKey::EC(k))) => ("EC", k.key_size()),
        (_, Ok(PublicKey::DSA(y))) => ("DSA", y.len() * 8),
        _ => ("unknown", 0),
    };
    let weak_key = match key_type {
        "RSA" | "DSA" => key_bits < 2048,
        "EC" => key_bits < 256,
        _ => false,
    };
    let (signature_algorithm, weak_signature) =
        signature_name(&cert.signature_algorithm.algorithm.to_id_string());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    Ok(CertInfo {
        name: name.to_owned(),
        tenant: tenant.map(str::to_owned),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after_ms,
        days_left: (not_after_ms as f64 - now_ms as f64) / 86_400_000.0,
        key_type: key_type.to_owned(),
        key_bits: u32::try_from(key_bits).unwrap_or(u32::MAX),
        signature_algorithm: signature_algorithm.to_owned(),
        sha256: hex::encode(digest.as_ref()),
        weak_key,
        weak_signature,
    })
}

fn from_pem(
    name: &str,
    tenant: Option<&str>,
    pem: &[u8],
    now: u64,
) -> Result<Vec<CertInfo>, String> {
    let mut out = Vec::new();
    for (i, block) in x509_parser::pem::Pem::iter_from_buffer(pem).enumerate() {
        let block = block.map_err(|e| format!("not PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let label = if i == 0 {
            name.to_owned()
        } else {
            format!("{name}#{}", i + 1)
        };
        out.push(inspect(&label, tenant, &block.contents, now)?);
    }
    if out.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(out)
}

/// Accepts any chain and keeps it: the point is to read what the endpoint presents,
/// not to trust it.
#[derive(Debug)]
struct Recorder(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn from_endpoint(name: &str, address: &str, now: u64) -> Result<Vec<CertInfo>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder(provider)))
        .with_no_client_auth();
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let server_name =
        rustls::pki_types::ServerName::try_from(host).map_err(|_| "bad host name".to_owned())?;
    let timeout = Duration::from_secs(10);
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect failed: {}", e.kind()))?;
    let tls = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_owned())?
    .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no certificate presented")?;
    // The leaf is what expires under the endpoint's name; the rest are its issuers.
    chain
        .iter()
        .take(1)
        .map(|der| inspect(name, None, der.as_ref(), now))
        .collect()
}

/// Reads every source; unreadable ones come back as problems.
pub async fn read_all(sources: &[CertSource], now: u64) -> (Vec<CertInfo>, Vec<CertProblem>) {
    let mut certs = Vec::new();
    let mut problems = Vec::new();
    for source in sources {
        let (name, got) = match source {
            CertSource::Pem { name, pem } => (name, from_pem(name, None, pem.as_bytes(), now)),
            CertSource::File { name, path, tenant } => (
                name,
                match tokio::fs::read(path).await {
                    Ok(bytes) => from_pem(name, tenant.as_deref(), &bytes, now),
                    Err(e) => Err(format!("cannot read {}: {}", path.display(), e.kind())),
                },
            ),
            CertSource::Endpoint { name, address } => {
                (name, from_endpoint(name, address, now).await)
            }
        };
        match got {
            Ok(mut list) => certs.append(&mut list),
            Err(reason) => problems.push(CertProblem {
                name: name.clone(),
                reason,
            }),
        }
    }
    (certs, problems)
}

/// The samples of the certificates read.
pub fn samples(certs: &[CertInfo], now: u64) -> Vec<Sample> {
    let mut out = Vec::new();
    for c in certs {
        let mut labels = vec![("cert", c.name.as_str())];
        if let Some(t) = &c.tenant {
            labels.push(("tenant", t.as_str()));
        }
        out.push(Sample::new("cert.days_left", &labels, c.days_left, now));
        out.push(Sample::new(
            "cert.weak_key",
            &labels,
            f64::from(u8::from(c.weak_key)),
            now,
        ));
        out.push(Sample::new(
            "cert.weak_signature",
            &labels,
            f64::from(u8::from(c.weak_signature)),
            now,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_pem(days: i64, rsa: bool) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["kopa.test".into()]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after =
            time::OffsetDateTime::from_unix_timestamp(now + days * 86_400 + 3600).unwrap();
        let key = if rsa {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
        } else {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
        };
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn days_left_key_and_signature_are_read() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let pem = cert_pem(10, false);
        let got = from_pem("kopa-tls", None, pem.as_bytes(), now).unwrap();
        assert_eq!(got.len(), 1);
        let c = &got[0];
        assert!((10.0..10.1).contains(&c.days_left), "{}", c.days_left);
        assert_eq!((c.key_type.as_str(), c.key_bits), ("EC", 256));
        assert_eq!(c.signature_algorithm, "ecdsa-with-SHA256");
        assert!(!c.weak_key && !c.weak_signature);
        assert!(from_pem("x", None, b"nothing", now).is_err());
    }
}
