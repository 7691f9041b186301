//! The Ed25519 key that signs the chain head and retention cuts, kept as a PKCS#8 PEM file
//! readable only by the `kopa` user. Verifying needs only the public key, which every
//! signature carries next to it.

use super::AuditError;
use super::record::ChainHash;
use crate::fsutil;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Domain separation: a head signature can never pass as a cut signature or vice versa.
const HEAD_CONTEXT: &[u8] = b"kopa-audit-head-v1\0";
const CUT_CONTEXT: &[u8] = b"kopa-audit-cut-v1\0";

/// An Ed25519 public key, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// An Ed25519 signature, written as 128 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

macro_rules! hex_newtype {
    ($ty:ident, $len:literal, $what:literal) => {
        impl $ty {
            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses lowercase or uppercase hex.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), self.to_hex())
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ty::from_hex(&s).ok_or_else(|| serde::de::Error::custom($what))
            }
        }
    };
}

hex_newtype!(PublicKey, 32, "not an Ed25519 public key in hex");
hex_newtype!(Signature, 64, "not an Ed25519 signature in hex");

impl PublicKey {
    /// Whether `sig` is this key's signature of `msg`.
    pub(crate) fn verifies(&self, msg: &[u8], sig: &Signature) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, &sig.0)
            .is_ok()
    }
}

/// The signing key of the audit chain.
pub struct AuditSigner {
    key: Ed25519KeyPair,
    public: PublicKey,
    generated: bool,
}

impl fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigner")
            .field("public", &self.public)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// Reads the PKCS#8 PEM key at `path`, or generates one there (mode 0600, written
    /// atomically) when the file does not exist. The parent directory must exist.
    pub fn load_or_generate(path: &Path) -> Result<Self, AuditError> {
        let key_err = |reason: String| AuditError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                tighten_mode(path);
                let der =
                    pem_decode(&pem).ok_or_else(|| key_err("not a PEM private key".into()))?;
                let key = Ed25519KeyPair::from_pkcs8(&der)
                    .map_err(|_| key_err("not an Ed25519 PKCS#8 key".into()))?;
                Ok(Self::from_key(key, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| key_err("key generation failed".into()))?;
                let key = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                    .map_err(|_| key_err("generated key does not parse".into()))?;
                fsutil::write_private_file_atomic(path, pem_encode(doc.as_ref()).as_bytes())
                    .map_err(|e| key_err(e.kind().to_string()))?;
                tracing::info!(path = %path.display(), "generated the audit signing key");
                Ok(Self::from_key(key, true))
            }
            Err(e) => Err(key_err(e.kind().to_string())),
        }
    }

    /// A key that lives only in memory, for tests and benchmarks.
    pub fn ephemeral() -> Result<Self, AuditError> {
        let fail = || AuditError::KeyFile {
            path: PathBuf::from("<memory>"),
            reason: "key generation failed".into(),
        };
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| fail())?;
        let key = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| fail())?;
        Ok(Self::from_key(key, true))
    }

    fn from_key(key: Ed25519KeyPair, generated: bool) -> Self {
        let mut public = [0u8; 32];
        public.copy_from_slice(key.public_key().as_ref());
        Self {
            key,
            public: PublicKey(public),
            generated,
        }
    }

    /// The key that verifies this signer's signatures.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Whether [`AuditSigner::load_or_generate`] created the key just now.
    pub fn generated(&self) -> bool {
        self.generated
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Signature, AuditError> {
        let sig = self.key.try_sign(msg).map_err(|_| AuditError::Signing)?;
        let mut out = [0u8; 64];
        if sig.as_ref().len() != out.len() {
            return Err(AuditError::Signing);
        }
        out.copy_from_slice(sig.as_ref());
        Ok(Signature(out))
    }
}

/// What a head signature covers.
pub(crate) fn head_message(seq: u64, hash: &ChainHash, time_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_CONTEXT.len() + 48);
    m.extend_from_slice(HEAD_CONTEXT);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&hash.0);
    m.extend_from_slice(&time_ms.to_be_bytes());
    m
}

/// What a cut signature covers: where the cut record sits and what it replaced.
pub(crate) fn cut_message(
    cut_seq: u64,
    time_ms: u64,
    dropped_from: u64,
    dropped_to: u64,
    last_dropped_hash: &ChainHash,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(CUT_CONTEXT.len() + 64);
    m.extend_from_slice(CUT_CONTEXT);
    for n in [cut_seq, time_ms, dropped_from, dropped_to] {
        m.extend_from_slice(&n.to_be_bytes());
    }
    m.extend_from_slice(&last_dropped_hash.0);
    m
}

fn tighten_mode(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "audit signing key was readable by others; setting mode 0600");
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::error!(path = %path.display(), error = %e, "cannot restrict the audit signing key");
        }
    }
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 80);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find(PEM_BEGIN)? + PEM_BEGIN.len();
    let end = pem[start..].find(PEM_END)? + start;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_reloads_to_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-ed25519.pem");
        let first = AuditSigner::load_or_generate(&path).unwrap();
        assert!(first.generated());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with(PEM_BEGIN)
        );
        let again = AuditSigner::load_or_generate(&path).unwrap();
        assert!(!again.generated());
        assert_eq!(first.public_key(), again.public_key());

        let msg = head_message(3, &ChainHash([1; 32]), 99);
        let sig = again.sign(&msg).unwrap();
        assert!(first.public_key().verifies(&msg, &sig));
        assert!(
            !first
                .public_key()
                .verifies(&head_message(4, &ChainHash([1; 32]), 99), &sig)
        );
        let cut = cut_message(3, 99, 1, 2, &ChainHash([1; 32]));
        assert!(!first.public_key().verifies(&cut, &sig));

        std::fs::write(&path, "garbage").unwrap();
        let err = AuditSigner::load_or_generate(&path).unwrap_err();
        assert!(err.to_string().contains("audit-ed25519.pem"), "{err}");
    }
}
