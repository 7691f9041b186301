//! SAML messages as they arrive: the Redirect binding's query, the POST binding's form
//! value, raw XML (requests, logout responses), service provider metadata with and without
//! a required signature, and `xs:duration` values. Nothing panics, and no signature from
//! random input verifies against a key it was not made with.
#![no_main]

use kopa_idp::saml::dsig::{self, VerifyKey};
use kopa_idp::saml::{metadata, request};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn key() -> &'static VerifyKey {
    static KEY: OnceLock<VerifyKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        // For RSA, the raw public key is the RSAPublicKey DER that metadata certificates give.
        VerifyKey(rcgen::PublicKeyData::der_bytes(&pair).to_vec())
    })
}

fn xml(text: &str) {
    if let Ok(doc) = dsig::parse(text) {
        let root = doc.root_element();
        let _ = request::authn_request(root);
        let _ = request::logout_request(root);
        let _ = request::logout_response(root);
        assert!(!matches!(dsig::verify_enveloped(root, std::slice::from_ref(key())), Ok(true)));
        let mut out = String::new();
        dsig::canonicalize(root, None, &[], &mut out);
    }
    let _ = metadata::parse_sp(text, 1_800_000_000, None);
    let _ = metadata::parse_sp(text, 1_800_000_000, Some(key()));
    let _ = metadata::parse_duration(text);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(incoming) = request::from_redirect(text, "SAMLRequest") {
        xml(&incoming.xml);
        if let Some(q) = incoming.query_signature {
            assert!(key().verify(&q.alg, q.signed.as_bytes(), &q.signature).is_err());
        }
    }
    if let Ok(incoming) = request::from_post(Some(text), None) {
        xml(&incoming.xml);
    }
    xml(text);
});
