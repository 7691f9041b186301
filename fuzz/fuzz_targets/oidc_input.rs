//! OIDC request parameters and presented tokens: parsing never panics, and the JWS
//! verifier refuses anything not signed by the published key.
#![no_main]

use kopa_config::SigningAlg;
use kopa_idp::oidc::Params;
use kopa_idp::oidc::jose::{SigningKey, verify};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        SigningKey::from_pem(SigningAlg::ES256, "fuzz", &pair.serialize_pem()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let params = Params::parse(data);
    let _ = params.duplicated();
    for name in ["client_id", "redirect_uri", "code_challenge", "prompt", "max_age"] {
        let _ = params.single(name);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // Random input never verifies against a key it was not signed with.
        assert!(verify([key().public()], text, None).is_err());
    }
});
