//! The IdP's signing keys: one ES256 and one RS256 key for OIDC tokens and an RSA-2048 key
//! with a self-signed certificate for SAML. Generated on first start under
//! `<data_dir>/keys/` (directory 0700, files 0600), reused on every later start.

use crate::IdpError;
use base64::Engine;
use kopa_config::Secret;
use kopa_store::fsutil;
use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use std::path::{Path, PathBuf};

/// Public facts about one key: safe to log and to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// What the key signs.
    pub purpose: &'static str,
    /// JOSE / XML-DSig algorithm name.
    pub algorithm: &'static str,
    /// Key id: base64url of the first 16 bytes of SHA-256 over the SubjectPublicKeyInfo.
    pub kid: String,
    /// Where the private key lives.
    pub path: PathBuf,
    /// Whether this start generated it.
    pub generated: bool,
}

/// A loaded private key.
#[derive(Debug)]
pub struct LoadedKey {
    /// Public facts.
    pub info: KeyInfo,
    /// PKCS#8 PEM of the private key.
    pub pem: Secret,
}

/// All signing keys of the IdP.
#[derive(Debug)]
pub struct SigningKeys {
    /// ES256 (P-256) key for OIDC.
    pub oidc_es256: LoadedKey,
    /// RS256 (RSA-2048) key for OIDC clients that need RSA.
    pub oidc_rs256: LoadedKey,
    /// RSA-2048 key for SAML signatures.
    pub saml: LoadedKey,
    /// PEM certificate for the SAML key.
    pub saml_certificate_pem: String,
    /// PEM certificate of the staged next SAML key (`kopa keys saml-rollover stage`),
    /// published beside the current one until it is promoted.
    pub saml_next_certificate_pem: Option<String>,
}

struct Spec {
    purpose: &'static str,
    algorithm: &'static str,
    file: &'static str,
    alg: &'static SignatureAlgorithm,
}

const OIDC_ES256: Spec = Spec {
    purpose: "oidc",
    algorithm: "ES256",
    file: "oidc-es256.pem",
    alg: &rcgen::PKCS_ECDSA_P256_SHA256,
};
const OIDC_RS256: Spec = Spec {
    purpose: "oidc",
    algorithm: "RS256",
    file: "oidc-rs256.pem",
    alg: &rcgen::PKCS_RSA_SHA256,
};
const SAML: Spec = Spec {
    purpose: "saml",
    algorithm: "RSA-SHA256",
    file: "saml-signing.pem",
    alg: &rcgen::PKCS_RSA_SHA256,
};
const SAML_CERT_FILE: &str = "saml-signing.crt";
/// The staged next SAML key and its certificate.
const SAML_NEXT: Spec = Spec {
    file: "saml-signing.next.pem",
    ..SAML
};
const SAML_NEXT_CERT_FILE: &str = "saml-signing.next.crt";
/// How long a SAML certificate stays in the metadata after it was replaced: responses it
/// signed just before the switch still verify at providers that refresh late.
pub const SAML_RETIRED_PUBLISHED_SECS: u64 = 86_400;
/// Where rotated-out keys wait until their tokens have expired.
const RETIRED_DIR: &str = "retired";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `oidc-es256-1767225600.pem` → (its spec, the retirement time).
fn parse_retired(name: &str) -> Option<(&'static Spec, u64)> {
    let stem = name.strip_suffix(".pem")?;
    let (base, at) = stem.rsplit_once('-')?;
    let spec = [&OIDC_ES256, &OIDC_RS256]
        .into_iter()
        .find(|s| s.file.trim_end_matches(".pem") == base)?;
    Some((spec, at.parse().ok()?))
}
/// SAML signing certificates are pinned in SP metadata, so they live long; rollover is an
/// explicit operator action, not an expiry surprise.
const SAML_CERT_DAYS: i64 = 5 * 365;

/// `dir/retired`, made (0700) if missing.
fn retired_dir(dir: &Path) -> Result<PathBuf, IdpError> {
    let retired = dir.join(RETIRED_DIR);
    fsutil::ensure_private_dir(&retired).map_err(|source| IdpError::Io {
        path: retired.clone(),
        source,
    })?;
    Ok(retired)
}

fn kid_of(key: &KeyPair) -> String {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key.subject_public_key_info());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

fn load_or_generate(dir: &Path, spec: &Spec) -> Result<(LoadedKey, KeyPair), IdpError> {
    let path = dir.join(spec.file);
    let (key, generated) = if path.exists() {
        let pem = std::fs::read_to_string(&path).map_err(|e| IdpError::KeyFile {
            path: path.clone(),
            reason: e.kind().to_string(),
        })?;
        let key =
            KeyPair::from_pem_and_sign_algo(&pem, spec.alg).map_err(|e| IdpError::KeyFile {
                path: path.clone(),
                reason: format!("not a {} private key ({e})", spec.algorithm),
            })?;
        (key, false)
    } else {
        let key = KeyPair::generate_for(spec.alg).map_err(|e| IdpError::Generate {
            what: spec.algorithm,
            reason: e.to_string(),
        })?;
        fsutil::write_private_file_atomic(&path, key.serialize_pem().as_bytes()).map_err(
            |source| IdpError::Io {
                path: path.clone(),
                source,
            },
        )?;
        (key, true)
    };
    let info = KeyInfo {
        purpose: spec.purpose,
        algorithm: spec.algorithm,
        kid: kid_of(&key),
        path,
        generated,
    };
    let pem = Secret::new(key.serialize_pem());
    Ok((LoadedKey { info, pem }, key))
}

fn saml_certificate(dir: &Path, key: &KeyPair, regenerate: bool) -> Result<String, IdpError> {
    saml_certificate_at(&dir.join(SAML_CERT_FILE), key, regenerate)
}

fn saml_certificate_at(path: &Path, key: &KeyPair, regenerate: bool) -> Result<String, IdpError> {
    let path = path.to_owned();
    if !regenerate && path.exists() {
        return std::fs::read_to_string(&path).map_err(|e| IdpError::KeyFile {
            path,
            reason: e.kind().to_string(),
        });
    }
    let gen_err = |e: rcgen::Error| IdpError::Generate {
        what: "SAML signing certificate",
        reason: e.to_string(),
    };
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kopa SAML signing");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SAML_CERT_DAYS);
    let pem = params.self_signed(key).map_err(gen_err)?.pem();
    fsutil::write_private_file_atomic(&path, pem.as_bytes())
        .map_err(|source| IdpError::Io { path, source })?;
    Ok(pem)
}

impl SigningKeys {
    /// Loads the keys from `dir`, generating any that are missing.
    pub fn load_or_generate(dir: &Path) -> Result<Self, IdpError> {
        fsutil::ensure_private_dir(dir).map_err(|source| IdpError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let (oidc_es256, _) = load_or_generate(dir, &OIDC_ES256)?;
        let (oidc_rs256, _) = load_or_generate(dir, &OIDC_RS256)?;
        let (saml, saml_key) = load_or_generate(dir, &SAML)?;
        // A new SAML key always gets a new certificate; an old certificate would not match it.
        let saml_certificate_pem = saml_certificate(dir, &saml_key, saml.info.generated)?;
        let next = dir.join(SAML_NEXT_CERT_FILE);
        let saml_next_certificate_pem = if next.exists() {
            Some(
                std::fs::read_to_string(&next).map_err(|e| IdpError::KeyFile {
                    path: next,
                    reason: e.kind().to_string(),
                })?,
            )
        } else {
            None
        };
        Ok(Self {
            oidc_es256,
            oidc_rs256,
            saml,
            saml_certificate_pem,
            saml_next_certificate_pem,
        })
    }

    /// SAML certificate rollover, step one: makes the next SAML key and its certificate
    /// (or keeps the one already staged). Kopa publishes it beside the current one from its
    /// next start, so service providers learn it before it signs anything.
    pub fn stage_saml(dir: &Path) -> Result<KeyInfo, IdpError> {
        let (loaded, key) = load_or_generate(dir, &SAML_NEXT)?;
        saml_certificate_at(&dir.join(SAML_NEXT_CERT_FILE), &key, loaded.info.generated)?;
        Ok(loaded.info)
    }

    /// SAML certificate rollover, step two: the staged key becomes the signing key (from
    /// Kopa's next start); the old one moves to `retired/` and its certificate stays in the
    /// metadata for [`SAML_RETIRED_PUBLISHED_SECS`]. Fails when nothing is staged.
    pub fn promote_saml(dir: &Path) -> Result<KeyInfo, IdpError> {
        let next_key = dir.join(SAML_NEXT.file);
        let next_cert = dir.join(SAML_NEXT_CERT_FILE);
        if !next_key.exists() || !next_cert.exists() {
            return Err(IdpError::KeyFile {
                path: next_key,
                reason: "no SAML key is staged; run `kopa keys saml-rollover stage` first and \
                         let the service providers refresh the metadata"
                    .into(),
            });
        }
        let retired = retired_dir(dir)?;
        let now = unix_now();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| IdpError::Io { path, source }
        };
        // The current files are linked into `retired/` (not moved), then replaced by
        // atomic renames, so `keys/` never lacks a SAML key, whatever fails on the way.
        for (file, stamped) in [
            (SAML.file, format!("saml-signing-{now}.pem")),
            (SAML_CERT_FILE, format!("saml-signing-{now}.crt")),
        ] {
            let current = dir.join(file);
            if current.exists() {
                std::fs::hard_link(&current, retired.join(stamped)).map_err(io(&current))?;
            }
        }
        std::fs::rename(&next_key, dir.join(SAML.file)).map_err(io(&next_key))?;
        std::fs::rename(&next_cert, dir.join(SAML_CERT_FILE)).map_err(io(&next_cert))?;
        fsutil::fsync_dir(dir).map_err(io(dir))?;
        let (loaded, _) = load_or_generate(dir, &SAML)?;
        Ok(loaded.info)
    }

    /// Certificates of SAML keys promoted away from less than `overlap_secs` ago.
    pub fn retired_saml_certificates(&self, overlap_secs: u64) -> Vec<String> {
        let Some(dir) = self.saml.info.path.parent().map(|d| d.join(RETIRED_DIR)) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let now = unix_now();
        let mut out: Vec<(u64, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let at: u64 = name
                    .strip_prefix("saml-signing-")?
                    .strip_suffix(".crt")?
                    .parse()
                    .ok()?;
                (now.saturating_sub(at) <= overlap_secs)
                    .then(|| std::fs::read_to_string(e.path()).ok().map(|pem| (at, pem)))
                    .flatten()
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, pem)| pem).collect()
    }

    /// Public keys of OIDC signing keys retired less than `overlap_secs` ago (by
    /// `kopa keys rotate`), which stay published so that their tokens still verify.
    pub fn retired_oidc_public(
        &self,
        overlap_secs: u64,
    ) -> Result<Vec<crate::oidc::jose::PublicKey>, String> {
        let dir = match self.oidc_es256.info.path.parent() {
            Some(d) => d.join(RETIRED_DIR),
            None => return Ok(Vec::new()),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let now = unix_now();
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((spec, retired_at)) = parse_retired(&name) else {
                continue;
            };
            if now.saturating_sub(retired_at) > overlap_secs {
                continue;
            }
            let pem = std::fs::read_to_string(entry.path())
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            let key = KeyPair::from_pem_and_sign_algo(&pem, spec.alg)
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            let alg = if spec.algorithm == "ES256" {
                kopa_config::SigningAlg::ES256
            } else {
                kopa_config::SigningAlg::RS256
            };
            let signing = crate::oidc::jose::SigningKey::from_pem(alg, &kid_of(&key), &pem)
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            out.push(signing.public().clone());
        }
        Ok(out)
    }

    /// Replaces both OIDC signing keys in `dir` with new ones; the old ones move to
    /// `retired/`, stamped with the time, and stay published for the overlap.
    pub fn rotate_oidc(dir: &Path) -> Result<Vec<KeyInfo>, IdpError> {
        let retired = retired_dir(dir)?;
        let now = unix_now();
        let mut out = Vec::new();
        for spec in [&OIDC_ES256, &OIDC_RS256] {
            let current = dir.join(spec.file);
            if current.exists() {
                let target =
                    retired.join(format!("{}-{now}.pem", spec.file.trim_end_matches(".pem")));
                std::fs::rename(&current, &target).map_err(|source| IdpError::Io {
                    path: current.clone(),
                    source,
                })?;
            }
            let (loaded, _) = load_or_generate(dir, spec)?;
            out.push(loaded.info);
        }
        Ok(out)
    }

    /// Public facts of every key.
    pub fn infos(&self) -> [&KeyInfo; 3] {
        [
            &self.oidc_es256.info,
            &self.oidc_rs256.info,
            &self.saml.info,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_then_reused_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let first = SigningKeys::load_or_generate(&keys_dir).unwrap();
        assert!(first.infos().iter().all(|i| i.generated));
        let mode = std::fs::metadata(&keys_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        for info in first.infos() {
            let mode = std::fs::metadata(&info.path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", info.path.display());
        }

        let second = SigningKeys::load_or_generate(&keys_dir).unwrap();
        assert!(second.infos().iter().all(|i| !i.generated));
        for (a, b) in first.infos().iter().zip(second.infos()) {
            assert_eq!(a.kid, b.kid);
        }
        assert_eq!(first.saml_certificate_pem, second.saml_certificate_pem);
        let kids: std::collections::BTreeSet<_> = first.infos().iter().map(|i| &i.kid).collect();
        assert_eq!(kids.len(), 3);
    }

    #[test]
    fn rotation_retires_old_keys_but_keeps_them_published() {
        let dir = tempfile::tempdir().unwrap();
        let before = SigningKeys::load_or_generate(dir.path()).unwrap();
        let rotated = SigningKeys::rotate_oidc(dir.path()).unwrap();
        assert_eq!(rotated.len(), 2);
        assert!(rotated.iter().all(|k| k.generated));
        let after = SigningKeys::load_or_generate(dir.path()).unwrap();
        assert_ne!(after.oidc_es256.info.kid, before.oidc_es256.info.kid);
        assert_ne!(after.oidc_rs256.info.kid, before.oidc_rs256.info.kid);
        assert_eq!(after.saml.info.kid, before.saml.info.kid);
        let published: Vec<String> = after
            .retired_oidc_public(3600)
            .unwrap()
            .iter()
            .map(|k| k.kid().to_owned())
            .collect();
        assert_eq!(published.len(), 2);
        assert!(published.contains(&before.oidc_es256.info.kid));
        assert!(published.contains(&before.oidc_rs256.info.kid));
        assert!(parse_retired("oidc-rs256-12.pem").is_some());
        assert!(parse_retired("saml-signing-12.pem").is_none());
    }

    #[test]
    fn saml_rollover_stages_then_promotes_and_keeps_the_old_certificate_published() {
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKeys::load_or_generate(dir.path()).unwrap();
        assert!(first.saml_next_certificate_pem.is_none());
        assert!(
            SigningKeys::promote_saml(dir.path()).is_err(),
            "nothing staged"
        );
        let staged = SigningKeys::stage_saml(dir.path()).unwrap();
        // Staging twice keeps the one staged.
        assert_eq!(SigningKeys::stage_saml(dir.path()).unwrap().kid, staged.kid);
        let during = SigningKeys::load_or_generate(dir.path()).unwrap();
        assert_eq!(
            during.saml.info.kid, first.saml.info.kid,
            "still signing with the old key"
        );
        let next = during.saml_next_certificate_pem.clone().unwrap();
        assert_ne!(next, first.saml_certificate_pem);
        let promoted = SigningKeys::promote_saml(dir.path()).unwrap();
        assert_eq!(promoted.kid, staged.kid);
        let after = SigningKeys::load_or_generate(dir.path()).unwrap();
        assert_eq!(after.saml.info.kid, staged.kid);
        assert_eq!(after.saml_certificate_pem, next);
        assert!(after.saml_next_certificate_pem.is_none());
        assert_eq!(
            after.retired_saml_certificates(SAML_RETIRED_PUBLISHED_SECS),
            vec![first.saml_certificate_pem]
        );
    }

    #[test]
    fn a_corrupt_key_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        SigningKeys::load_or_generate(dir.path()).unwrap();
        let path = dir.path().join(OIDC_RS256.file);
        std::fs::write(&path, "garbage").unwrap();
        let err = SigningKeys::load_or_generate(dir.path()).unwrap_err();
        assert!(matches!(err, IdpError::KeyFile { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }
}
