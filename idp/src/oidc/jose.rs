//! JSON Web Signatures for tokens: signing with aws-lc-rs (ES256, RS256), behind
//! openidconnect's `PrivateSigningKey` for ID tokens, and a strict verifier for the tokens
//! we issued ourselves.
//!
//! The verifier trusts nothing in a token's header but the `kid`: the algorithm comes from
//! the key the `kid` names, so `alg: none`, HS256 signed with a public key and any other
//! algorithm swap are refused before a signature is looked at.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use kopa_config::SigningAlg;
use openidconnect::core::{CoreJsonCurveType, CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKeyId, PrivateSigningKey, SigningError};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

/// Longest compact JWS the verifier looks at, in bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. Deliberately coarse: callers answer `invalid_token` whatever
/// the reason, and the reason goes to the audit log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Not three base64url parts of JSON, or too large.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm other than its key's, or none at all.
    #[error("algorithm not accepted")]
    Algorithm,
    /// No published key has the header's `kid`.
    #[error("unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// The header has a `crit` member or a `typ` other than the one expected.
    #[error("unexpected header")]
    Header,
    /// A key could not be loaded.
    #[error("unusable key")]
    Key,
}

enum Inner {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A private signing key with its `kid`.
pub struct SigningKey {
    alg: SigningAlg,
    kid: String,
    inner: Inner,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A public verification key, as published in the JWKS.
#[derive(Debug, Clone)]
pub struct PublicKey {
    alg: SigningAlg,
    kid: String,
    /// ES256: the uncompressed point; RS256: PKCS#1 RSAPublicKey DER.
    bytes: Vec<u8>,
    jwk: CoreJsonWebKey,
}

impl SigningKey {
    /// Loads a PKCS#8 PEM private key for `alg`.
    pub fn from_pem(alg: SigningAlg, kid: &str, pem: &str) -> Result<Self, JoseError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| JoseError::Key)?;
        let der = der.secret_pkcs8_der();
        let kid_id = Some(JsonWebKeyId::new(kid.to_owned()));
        let (inner, public) = match alg {
            SigningAlg::ES256 => {
                let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| JoseError::Key)?;
                let point = key.public_key().as_ref().to_vec();
                if point.len() != 65 || point[0] != 4 {
                    return Err(JoseError::Key);
                }
                let jwk = CoreJsonWebKey::new_ec(
                    point[1..33].to_vec(),
                    point[33..].to_vec(),
                    CoreJsonCurveType::P256,
                    kid_id,
                );
                (Inner::Ec(key), (point, jwk))
            }
            SigningAlg::RS256 => {
                let key = RsaKeyPair::from_pkcs8(der).map_err(|_| JoseError::Key)?;
                let components =
                    signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
                let jwk = CoreJsonWebKey::new_rsa(components.n, components.e, kid_id);
                let bytes = key.public_key().as_ref().to_vec();
                (Inner::Rsa(key), (bytes, jwk))
            }
        };
        Ok(Self {
            alg,
            kid: kid.to_owned(),
            inner,
            public: PublicKey {
                alg,
                kid: kid.to_owned(),
                bytes: public.0,
                jwk: public.1,
            },
        })
    }

    /// The algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (a JWS signing input).
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Ec(key) => key
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| JoseError::Key),
            Inner::Rsa(key) => {
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| JoseError::Key)?;
                Ok(out)
            }
        }
    }

    /// A compact JWS of `claims` with header `{alg, kid, typ}`.
    pub fn encode(&self, typ: &str, claims: &Value) -> Result<String, JoseError> {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": typ});
        let mut out = String::with_capacity(512);
        out.push_str(&B64.encode(header.to_string()));
        out.push('.');
        out.push_str(&B64.encode(claims.to_string()));
        let signature = self.sign_bytes(out.as_bytes())?;
        out.push('.');
        out.push_str(&B64.encode(signature));
        Ok(out)
    }
}

fn jws_alg(alg: SigningAlg) -> CoreJwsSigningAlgorithm {
    match alg {
        SigningAlg::ES256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        SigningAlg::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    }
}

impl SigningKey {
    /// The openidconnect name of this key's algorithm.
    pub fn jws_alg(&self) -> CoreJwsSigningAlgorithm {
        jws_alg(self.alg)
    }
}

impl PrivateSigningKey for SigningKey {
    type VerificationKey = CoreJsonWebKey;

    fn sign(
        &self,
        signature_alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, SigningError> {
        if *signature_alg != jws_alg(self.alg) {
            return Err(SigningError::UnsupportedAlg(format!("{signature_alg:?}")));
        }
        self.sign_bytes(message)
            .map_err(|_| SigningError::Other("signing failed".into()))
    }

    fn as_verification_key(&self) -> CoreJsonWebKey {
        self.public.jwk.clone()
    }
}

impl PublicKey {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as a JWK, with `alg` and `use`.
    pub fn jwk(&self) -> Value {
        let mut value = serde_json::to_value(&self.jwk).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("alg".into(), Value::String(self.alg.as_str().into()));
            map.retain(|_, v| !v.is_null());
        }
        value
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let algorithm: &dyn signature::VerificationAlgorithm = match self.alg {
            SigningAlg::ES256 => &ECDSA_P256_SHA256_FIXED,
            SigningAlg::RS256 => &RSA_PKCS1_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(algorithm, &self.bytes)
            .verify(message, sig)
            .is_ok()
    }
}

/// The JWKS document of `keys`.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Value {
    json!({"keys": keys.into_iter().map(PublicKey::jwk).collect::<Vec<_>>()})
}

fn decode_part(part: &str) -> Result<Value, JoseError> {
    let bytes = B64.decode(part).map_err(|_| JoseError::Malformed)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| JoseError::Malformed)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(JoseError::Malformed)
    }
}

/// Verifies a compact JWS against `keys` and returns its claims. `typ`, when given, must
/// match the header's `typ` exactly. Claims (expiry, audience) are the caller's to check.
pub fn verify<'a>(
    keys: impl IntoIterator<Item = &'a PublicKey>,
    token: &str,
    typ: Option<&str>,
) -> Result<Value, JoseError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JoseError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed);
    };
    let header = decode_part(h)?;
    let kid = header.get("kid").and_then(Value::as_str);
    let alg = header.get("alg").and_then(Value::as_str);
    if header.get("crit").is_some() {
        return Err(JoseError::Header);
    }
    if let Some(typ) = typ
        && header.get("typ").and_then(Value::as_str) != Some(typ)
    {
        return Err(JoseError::Header);
    }
    let key = keys
        .into_iter()
        .find(|k| Some(k.kid.as_str()) == kid)
        .ok_or(JoseError::UnknownKey)?;
    if alg != Some(key.alg.as_str()) {
        return Err(JoseError::Algorithm);
    }
    let signature = B64.decode(s).map_err(|_| JoseError::Malformed)?;
    let signed = &token[..h.len() + 1 + c.len()];
    if !key.verify(signed.as_bytes(), &signature) {
        return Err(JoseError::Signature);
    }
    decode_part(c)
}

/// The PKCE S256 transform (RFC 7636 §4.2): base64url(SHA-256(verifier)).
pub fn pkce_s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    B64.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(alg: SigningAlg) -> SigningKey {
        let generated = match alg {
            SigningAlg::ES256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            SigningAlg::RS256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256),
        }
        .unwrap();
        SigningKey::from_pem(
            alg,
            &format!("k-{}", alg.as_str()),
            &generated.serialize_pem(),
        )
        .unwrap()
    }

    fn forge(header: &Value, claims: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string()),
            B64.encode(sig)
        )
    }

    #[test]
    fn tokens_verify_with_their_own_key_only() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            let k = key(alg);
            let other = key(alg);
            let claims = json!({"sub": "anna", "n": "Bērziņa & <co>"});
            let token = k.encode("at+jwt", &claims).unwrap();
            assert_eq!(verify([k.public()], &token, Some("at+jwt")), Ok(claims));
            assert_eq!(
                verify([k.public()], &token, Some("logout+jwt")),
                Err(JoseError::Header)
            );
            // Same kid, different key: the signature check fails.
            let impostor = PublicKey {
                kid: k.kid.clone(),
                ..other.public().clone()
            };
            assert_eq!(verify([&impostor], &token, None), Err(JoseError::Signature));
            let mut tampered = token.clone();
            tampered.insert(token.find('.').unwrap() + 3, 'x');
            assert!(verify([k.public()], &tampered, None).is_err());
        }
    }

    #[test]
    fn algorithm_swaps_are_refused() {
        let k = key(SigningAlg::RS256);
        let claims = json!({"sub": "anna"});
        let none = forge(&json!({"alg": "none", "kid": k.kid}), &claims, b"");
        assert_eq!(verify([k.public()], &none, None), Err(JoseError::Algorithm));
        // HS256 keyed with the public key bytes, the classic confusion attack.
        let header = json!({"alg": "HS256", "kid": k.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &k.public().bytes);
        let tag = aws_lc_rs::hmac::sign(&mac_key, input.as_bytes());
        let hs = format!("{input}.{}", B64.encode(tag.as_ref()));
        assert_eq!(verify([k.public()], &hs, None), Err(JoseError::Algorithm));
        let unknown = forge(&json!({"alg": "RS256", "kid": "nope"}), &claims, b"x");
        assert_eq!(
            verify([k.public()], &unknown, None),
            Err(JoseError::UnknownKey)
        );
        let crit = forge(
            &json!({"alg": "RS256", "kid": k.kid, "crit": ["exp"]}),
            &claims,
            b"x",
        );
        assert_eq!(verify([k.public()], &crit, None), Err(JoseError::Header));
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(verify([k.public()], junk, None).is_err(), "{junk:.20}");
        }
    }

    #[test]
    fn pkce_matches_the_rfc_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn jwks_lists_public_parts_only() {
        let (ec, rsa) = (key(SigningAlg::ES256), key(SigningAlg::RS256));
        let set = jwks([ec.public(), rsa.public()]);
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys[0]["kty"], "EC");
        assert_eq!(keys[0]["crv"], "P-256");
        assert_eq!(keys[0]["alg"], "ES256");
        assert_eq!(keys[1]["kty"], "RSA");
        assert_eq!(keys[1]["e"], "AQAB");
        assert_eq!(keys[1]["kid"], "k-RS256");
        for k in keys {
            assert!(k.get("d").is_none() && k.get("p").is_none());
        }
    }
}
