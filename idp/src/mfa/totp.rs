//! One-time codes: HOTP (RFC 4226) and TOTP (RFC 6238) over aws-lc-rs HMAC, the shared
//! secret they are made from, and the constant-time check of a typed code.

use aws_lc_rs::{constant_time, hmac};
use data_encoding::BASE32_NOPAD;
use kopa_config::Secret;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Seconds per TOTP time step (RFC 6238's default, and the only period apps all support).
pub const STEP_SECS: u64 = 30;
/// Digits of a code shown by the authenticator app.
pub const DIGITS: u32 = 6;
/// Bytes of a generated secret: 160 bits, the HMAC-SHA-1 output size RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
/// Most digits a code may have: 10^9 still fits the 31-bit truncated value's range.
const MAX_DIGITS: u32 = 9;

/// The HMAC behind the codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA-1. The default because it is what every authenticator app implements;
    /// several silently ignore `algorithm=` and would show wrong codes for anything else.
    /// SHA-1's collision weakness does not carry over to HMAC.
    #[default]
    Sha1,
    /// HMAC-SHA-256, for apps known to honour the `algorithm` parameter.
    Sha256,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs.
    pub fn otpauth_name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
        }
    }
}

/// The key shared with the authenticator app. `Debug` prints `[redacted]`; it is stored
/// as base32 text.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    /// A fresh random 160-bit secret from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A secret of exactly these bytes (test vectors, imports).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Parses unpadded upper-case base32, as [`TotpSecret::to_base32`] writes it.
    pub fn from_base32(text: &str) -> Option<Self> {
        BASE32_NOPAD.decode(text.as_bytes()).ok().map(Self)
    }

    /// The secret as unpadded base32, for people to type into an app.
    pub fn to_base32(&self) -> Secret {
        Secret::new(BASE32_NOPAD.encode(&self.0))
    }

    fn key(&self, algorithm: Algorithm) -> hmac::Key {
        hmac::Key::new(algorithm.hmac(), &self.0)
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for TotpSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.to_base32().expose())
    }
}

impl<'de> Deserialize<'de> for TotpSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // The message names no part of the value: it is a secret.
        Self::from_base32(&text).ok_or_else(|| serde::de::Error::custom("secret is not base32"))
    }
}

/// The HOTP value of `counter` with `digits` digits (at most 9), zero-padded.
pub fn hotp(secret: &TotpSecret, algorithm: Algorithm, counter: u64, digits: u32) -> String {
    let digits = digits.clamp(1, MAX_DIGITS);
    let tag = hmac::sign(&secret.key(algorithm), &counter.to_be_bytes());
    let h = tag.as_ref();
    // Dynamic truncation (RFC 4226 §5.3). Tags are at least 20 bytes and the offset at most
    // 15, so the four bytes read are always in range.
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    let value = binary % 10u32.pow(digits);
    format!("{value:0width$}", width = digits as usize)
}

/// The TOTP time step that contains `unix_secs` (T0 = 0).
pub fn step_at(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The TOTP code at `unix_secs`.
pub fn totp(secret: &TotpSecret, algorithm: Algorithm, unix_secs: u64, digits: u32) -> String {
    hotp(secret, algorithm, step_at(unix_secs), digits)
}

/// The steps within `skew` of `center` whose [`DIGITS`]-digit code is `code`, oldest first.
///
/// Every step of the window is computed and compared in constant time, so the time taken
/// says nothing about which step (if any) matched.
pub(crate) fn matching_steps(
    secret: &TotpSecret,
    algorithm: Algorithm,
    code: &str,
    center: u64,
    skew: u64,
) -> Vec<u64> {
    let mut found = Vec::new();
    for step in center.saturating_sub(skew)..=center.saturating_add(skew) {
        let expected = hotp(secret, algorithm, step, DIGITS);
        if constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes()).is_ok() {
            found.push(step);
        }
    }
    found
}

/// `input` without spaces when it is a [`DIGITS`]-digit code (apps show `123 456`).
pub(crate) fn normalize_code(input: &str) -> Option<String> {
    let code: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    (code.len() == DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";

    #[test]
    fn rfc4226_appendix_d() {
        let secret = TotpSecret::from_bytes(SEED_SHA1.to_vec());
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(&secret, Algorithm::Sha1, counter as u64, 6), *code);
        }
    }

    #[test]
    fn rfc6238_appendix_b() {
        // (time, SHA-1 code, SHA-256 code); the SHA-512 column has no use here.
        let vectors = [
            (59, "94287082", "46119246"),
            (1_111_111_109, "07081804", "68084774"),
            (1_111_111_111, "14050471", "67062674"),
            (1_234_567_890, "89005924", "91819424"),
            (2_000_000_000, "69279037", "90698825"),
            (20_000_000_000, "65353130", "77737706"),
        ];
        let sha1 = TotpSecret::from_bytes(SEED_SHA1.to_vec());
        let sha256 = TotpSecret::from_bytes(SEED_SHA256.to_vec());
        for (time, code1, code256) in vectors {
            assert_eq!(
                totp(&sha1, Algorithm::Sha1, time, 8),
                code1,
                "SHA-1 at {time}"
            );
            assert_eq!(
                totp(&sha256, Algorithm::Sha256, time, 8),
                code256,
                "SHA-256 at {time}"
            );
        }
    }

    fn oathtool(secret: &TotpSecret, algorithm: Algorithm, time: u64, digits: u32) -> String {
        let mode = match algorithm {
            Algorithm::Sha1 => "--totp=sha1",
            Algorithm::Sha256 => "--totp=sha256",
        };
        let out = Command::new("oathtool")
            .args([mode, "--base32", "--digits"])
            .arg(digits.to_string())
            .arg("--now")
            .arg(format!("@{time}"))
            .arg(secret.to_base32().expose())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run oathtool ({e}): install it with `apt-get install oathtool`")
            });
        assert!(out.status.success(), "oathtool failed: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn agrees_with_oathtool() {
        let times = [
            0,
            29,
            30,
            59,
            1_111_111_109,
            1_700_000_000,
            2_000_000_000,
            4_102_444_800,
        ];
        for _ in 0..4 {
            let secret = TotpSecret::generate();
            for algorithm in [Algorithm::Sha1, Algorithm::Sha256] {
                for time in times {
                    for digits in [6, 8] {
                        assert_eq!(
                            totp(&secret, algorithm, time, digits),
                            oathtool(&secret, algorithm, time, digits),
                            "{algorithm:?} at {time}, {digits} digits"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn window_matches_neighbouring_steps_only() {
        let secret = TotpSecret::generate();
        let code = hotp(&secret, Algorithm::Sha1, 1000, DIGITS);
        assert!(matching_steps(&secret, Algorithm::Sha1, &code, 999, 1).contains(&1000));
        assert!(matching_steps(&secret, Algorithm::Sha1, &code, 1001, 1).contains(&1000));
        assert!(!matching_steps(&secret, Algorithm::Sha1, &code, 1002, 1).contains(&1000));
        assert!(!matching_steps(&secret, Algorithm::Sha1, &code, 1001, 0).contains(&1000));
        assert!(!matching_steps(&secret, Algorithm::Sha256, &code, 1000, 0).contains(&1000));
        assert!(matching_steps(&secret, Algorithm::Sha1, "12345", 1000, 1).is_empty());
        // The window is clamped at the start of time instead of wrapping.
        let first = hotp(&secret, Algorithm::Sha1, 0, DIGITS);
        assert!(matching_steps(&secret, Algorithm::Sha1, &first, 0, 2).contains(&0));
    }

    #[test]
    fn secrets_round_trip_and_never_print() {
        let secret = TotpSecret::generate();
        let b32 = secret.to_base32();
        assert_eq!(b32.expose().len(), 32);
        assert!(!b32.expose().contains('='));
        assert_eq!(TotpSecret::from_base32(b32.expose()), Some(secret.clone()));
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(TotpSecret::from_base32("not base32!"), None);
        assert_ne!(TotpSecret::generate(), secret);
    }

    #[test]
    fn codes_are_normalised() {
        assert_eq!(normalize_code(" 123 456 ").as_deref(), Some("123456"));
        for bad in ["12345", "1234567", "12345a", "١٢٣٤٥٦", ""] {
            assert_eq!(normalize_code(bad), None, "{bad:?}");
        }
    }
}
