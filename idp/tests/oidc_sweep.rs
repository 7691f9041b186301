//! The provider forgets expired grant state, and only expired state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kopa_config::{ClientAuthMethod, OidcClientConfig, OidcConfig, SessionConfig, SigningAlg};
use kopa_core::{Clock, FixedClock, Role, TenantId};
use kopa_idp::SCHEMA;
use kopa_idp::oidc::jose::SigningKey;
use kopa_idp::oidc::{Authorize, Client, Clients, Keyring, Origin, Params, Provider};
use kopa_idp::session::{SessionData, Sessions};
use kopa_store::audit::{AuditLog, AuditOptions};
use kopa_store::{AUDIT_SCHEMA, AuditSigner, Store};
use std::sync::Arc;

fn key(alg: SigningAlg) -> SigningKey {
    let pair = match alg {
        SigningAlg::ES256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        SigningAlg::RS256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256),
    }
    .unwrap();
    SigningKey::from_pem(alg, alg.as_str(), &pair.serialize_pem()).unwrap()
}

#[tokio::test]
async fn expired_codes_are_swept_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::at(1_800_000_000_000));
    let idp = Store::open(&dir.path().join("idp"), &SCHEMA).unwrap();
    let audit_store = Store::open(&dir.path().join("audit"), &AUDIT_SCHEMA).unwrap();
    let signer = AuditSigner::load_or_generate(&dir.path().join("audit.key")).unwrap();
    let audit = AuditLog::open(
        audit_store,
        signer,
        clock.clone() as Arc<dyn Clock>,
        AuditOptions::default(),
    )
    .unwrap();
    let config = OidcConfig::default();
    let entry = OidcClientConfig {
        auth_method: ClientAuthMethod::None,
        redirect_uris: vec!["https://app.example.lv/cb".into()],
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["openid".into()],
        first_party: true,
        ..OidcClientConfig::new("app")
    };
    let clients = Clients::load(
        idp.clone(),
        vec![Client::from_config(&entry, None, &config).unwrap()],
    )
    .await
    .unwrap();
    let provider = Provider::new(
        "https://id.example.lv".into(),
        config,
        clients,
        Keyring::new(key(SigningAlg::ES256), key(SigningAlg::RS256), vec![]),
        idp.clone(),
        audit,
        clock.clone() as Arc<dyn Clock>,
    );
    let sessions = Sessions::new(
        idp.clone(),
        clock.clone() as Arc<dyn Clock>,
        SessionConfig::default(),
    );
    let origin = Origin {
        ip: "192.0.2.1".parse().unwrap(),
        user_agent: "test".into(),
    };
    let mut codes = 0;
    for i in 0..3 {
        let (_, session) = sessions
            .create(SessionData {
                subject: format!("ventspils:u{i}"),
                login: format!("u{i}"),
                display_name: "Ūdre".into(),
                tenant: Some(TenantId::new("ventspils").unwrap()),
                directory: "ventspils".into(),
                roles: vec![Role::Specialist],
                groups: vec![],
                amr: vec!["pwd".into()],
                email: None,
                given_name: None,
                family_name: None,
                ip: "192.0.2.1".into(),
                user_agent: "test".into(),
            })
            .await
            .unwrap();
        let query = "response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.example.lv%2Fcb&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";
        let answer = provider
            .authorize(&Params::parse(query.as_bytes()), Some(session), &origin)
            .await;
        assert!(
            matches!(answer, Authorize::Redirect(ref to) if to.contains("code=")),
            "{answer:?}"
        );
        codes += 1;
        if i == 1 {
            // The first two codes age past their lifetime; the third is fresh.
            clock.advance(120_000);
        }
    }
    assert_eq!(codes, 3);
    assert_eq!(provider.sweep().await.unwrap(), 2);
    assert_eq!(provider.sweep().await.unwrap(), 0);
    clock.advance(120_000);
    assert_eq!(provider.sweep().await.unwrap(), 1);
}
