//! The second-factor service through its public API, on a real `idp.redb`, with codes
//! computed by the independent `oathtool` where it matters.
// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::panic)]

use kopa_config::MfaConfig;
use kopa_core::{FixedClock, Role};
use kopa_idp::SCHEMA;
use kopa_idp::mfa::totp::{self, Algorithm, TotpSecret};
use kopa_idp::mfa::{Enrolment, Factor, Mfa, MfaError};
use kopa_store::Store;
use std::process::Command;
use std::sync::Arc;

/// The first millisecond of a time step.
const T0: u64 = 1_700_000_010_000;
const STEP_MS: u64 = totp::STEP_SECS * 1000;
const ALICE: &str = "ventspils:0b6a3c4e-2f7d-4c1a-9e57-3d2b1f0a8c6e";

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<FixedClock>,
    mfa: Mfa,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &SCHEMA).unwrap();
    let clock = Arc::new(FixedClock::at(T0));
    let mfa = Mfa::load(store, clock.clone(), MfaConfig::default())
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        clock,
        mfa,
    }
}

/// The code `oathtool` computes for the enrolment's base32 secret at `at_ms`.
fn oathtool(enrolment: &Enrolment, at_ms: u64) -> String {
    let out = Command::new("oathtool")
        .args(["--totp=sha1", "--base32", "--digits=6", "--now"])
        .arg(format!("@{}", at_ms / 1000))
        .arg(enrolment.secret_base32.expose())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run oathtool ({e}): install it with `apt-get install oathtool`")
        });
    assert!(out.status.success(), "oathtool failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn our_code(enrolment: &Enrolment, algorithm: Algorithm, at_ms: u64) -> String {
    let secret = TotpSecret::from_base32(enrolment.secret_base32.expose()).unwrap();
    totp::totp(&secret, algorithm, at_ms / 1000, totp::DIGITS)
}

fn is<T: std::fmt::Debug>(result: Result<T, MfaError>, expected: fn(&MfaError) -> bool) {
    match result {
        Err(e) if expected(&e) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn enrol_confirm_and_sign_in_with_oathtool_codes() {
    let f = fixture().await;
    assert!(!f.mfa.is_enrolled(ALICE));
    is(f.mfa.verify(ALICE, "123456").await, |e| {
        matches!(e, MfaError::NotEnrolled)
    });

    let enrolment = f
        .mfa
        .begin_enrolment(ALICE, "jānis.bērziņš@ventspils.lv")
        .await
        .unwrap();
    let uri = enrolment.otpauth_uri.expose();
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/Kopa:j%C4%81nis.b%C4%93rzi%C5%86%C5%A1%40ventspils.lv?secret={}\
             &issuer=Kopa&algorithm=SHA1&digits=6&period=30",
            enrolment.secret_base32.expose()
        )
    );
    assert_eq!(
        enrolment.secret_base32.expose().len(),
        32,
        "160 bits in base32"
    );
    assert!(enrolment.qr_svg.starts_with("<svg") && enrolment.qr_svg.ends_with("</svg>"));
    // Pending is not enrolled: sign-in still says so.
    assert!(!f.mfa.is_enrolled(ALICE));
    assert_eq!(
        f.mfa.status(ALICE).await.unwrap().pending_since_ms,
        Some(T0)
    );
    is(f.mfa.verify(ALICE, &oathtool(&enrolment, T0)).await, |e| {
        matches!(e, MfaError::NotEnrolled)
    });

    // The phone is 30 s slow when confirming: the previous step's code is still fine.
    f.clock.advance(STEP_MS + 5_000);
    let recovery = f
        .mfa
        .confirm_enrolment(ALICE, &oathtool(&enrolment, T0 + 5_000))
        .await
        .unwrap();
    assert_eq!(recovery.codes.len(), 10);
    assert!(f.mfa.is_enrolled(ALICE));
    is(f.mfa.confirm_enrolment(ALICE, "123456").await, |e| {
        matches!(e, MfaError::NoPendingEnrolment)
    });

    // The current code works once; the confirming step and this one are then spent.
    let now = T0 + STEP_MS + 5_000;
    let code = oathtool(&enrolment, now);
    is(f.mfa.verify(ALICE, &oathtool(&enrolment, T0)).await, |e| {
        matches!(e, MfaError::Replayed)
    });
    assert_eq!(f.mfa.verify(ALICE, &code).await.unwrap(), Factor::Totp);
    let again = f.mfa.verify(ALICE, &code).await.unwrap_err();
    assert!(matches!(again, MfaError::Replayed) && again.is_failed_attempt());

    // Next step, typed the way apps display it.
    f.clock.advance(STEP_MS);
    let next = oathtool(&enrolment, now + STEP_MS);
    let spaced = format!("{} {}", &next[..3], &next[3..]);
    assert_eq!(f.mfa.verify(ALICE, &spaced).await.unwrap(), Factor::Totp);

    // Two steps ahead is outside the default window of one.
    f.clock.advance(STEP_MS);
    let future = oathtool(&enrolment, now + 4 * STEP_MS);
    is(f.mfa.verify(ALICE, &future).await, |e| {
        matches!(e, MfaError::InvalidCode)
    });
    for junk in ["", "abc", "1234567", &"9".repeat(10_000)] {
        let e = f.mfa.verify(ALICE, junk).await.unwrap_err();
        assert!(
            matches!(e, MfaError::InvalidCode) && e.is_failed_attempt(),
            "{junk:.20}"
        );
    }

    // A recovery code works once, however it is typed.
    let first = recovery.codes[0].expose().to_uppercase().replace('-', " ");
    assert_eq!(
        f.mfa.verify(ALICE, &first).await.unwrap(),
        Factor::RecoveryCode { remaining: 9 }
    );
    is(f.mfa.verify(ALICE, recovery.codes[0].expose()).await, |e| {
        matches!(e, MfaError::InvalidCode)
    });
    assert_eq!(f.mfa.status(ALICE).await.unwrap().recovery_codes_left, 9);
}

#[tokio::test]
async fn sha256_enrolment_uses_its_algorithm() {
    let f = fixture().await;
    let e = f
        .mfa
        .begin_enrolment_with(ALICE, "anna@talsi.lv", Algorithm::Sha256)
        .await
        .unwrap();
    assert!(e.otpauth_uri.expose().contains("&algorithm=SHA256&"));
    let sha1 = our_code(&e, Algorithm::Sha1, T0);
    let sha256 = our_code(&e, Algorithm::Sha256, T0);
    if sha1 != sha256 {
        is(f.mfa.confirm_enrolment(ALICE, &sha1).await, |e| {
            matches!(e, MfaError::InvalidCode)
        });
    }
    f.mfa.confirm_enrolment(ALICE, &sha256).await.unwrap();
    assert_eq!(
        f.mfa.status(ALICE).await.unwrap().algorithm,
        Some(Algorithm::Sha256)
    );
}

#[tokio::test]
async fn re_enrolment_replaces_the_key_only_when_confirmed() {
    let f = fixture().await;
    let old = f.mfa.begin_enrolment(ALICE, "anna").await.unwrap();
    let old_codes = f
        .mfa
        .confirm_enrolment(ALICE, &our_code(&old, Algorithm::Sha1, T0))
        .await
        .unwrap();

    f.clock.advance(STEP_MS);
    let new = f.mfa.begin_enrolment(ALICE, "anna").await.unwrap();
    assert_ne!(new.secret_base32.expose(), old.secret_base32.expose());
    // Until confirmation, the old key and old recovery codes still sign in.
    let t1 = T0 + STEP_MS;
    assert_eq!(
        f.mfa
            .verify(ALICE, &our_code(&old, Algorithm::Sha1, t1))
            .await
            .unwrap(),
        Factor::Totp
    );
    assert!(
        f.mfa
            .verify(ALICE, old_codes.codes[0].expose())
            .await
            .is_ok()
    );
    // A wrong confirmation changes nothing.
    f.clock.advance(STEP_MS);
    let t2 = T0 + 2 * STEP_MS;
    let wrong = our_code(&old, Algorithm::Sha1, t2);
    if wrong != our_code(&new, Algorithm::Sha1, t2) {
        is(f.mfa.confirm_enrolment(ALICE, &wrong).await, |e| {
            matches!(e, MfaError::InvalidCode)
        });
    }
    let new_codes = f
        .mfa
        .confirm_enrolment(ALICE, &our_code(&new, Algorithm::Sha1, t2))
        .await
        .unwrap();

    f.clock.advance(STEP_MS);
    let t3 = T0 + 3 * STEP_MS;
    let old_now = our_code(&old, Algorithm::Sha1, t3);
    let new_now = our_code(&new, Algorithm::Sha1, t3);
    if old_now != new_now {
        is(f.mfa.verify(ALICE, &old_now).await, |e| {
            matches!(e, MfaError::InvalidCode)
        });
    }
    assert!(
        f.mfa
            .verify(ALICE, old_codes.codes[1].expose())
            .await
            .is_err()
    );
    assert_eq!(f.mfa.verify(ALICE, &new_now).await.unwrap(), Factor::Totp);
    assert!(
        f.mfa
            .verify(ALICE, new_codes.codes[0].expose())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_abandoned_enrolment_expires() {
    let f = fixture().await;
    let e = f.mfa.begin_enrolment(ALICE, "anna").await.unwrap();
    f.clock.advance(2 * 3600 * 1000);
    let late = T0 + 2 * 3600 * 1000;
    is(
        f.mfa
            .confirm_enrolment(ALICE, &our_code(&e, Algorithm::Sha1, late))
            .await,
        |e| matches!(e, MfaError::NoPendingEnrolment),
    );
    assert_eq!(f.mfa.status(ALICE).await.unwrap().pending_since_ms, None);
}

#[tokio::test]
async fn regenerating_recovery_codes_invalidates_the_old_set() {
    let f = fixture().await;
    is(f.mfa.regenerate_recovery_codes(ALICE).await, |e| {
        matches!(e, MfaError::NotEnrolled)
    });
    let e = f.mfa.begin_enrolment(ALICE, "anna").await.unwrap();
    let old = f
        .mfa
        .confirm_enrolment(ALICE, &our_code(&e, Algorithm::Sha1, T0))
        .await
        .unwrap();
    f.mfa.verify(ALICE, old.codes[0].expose()).await.unwrap();
    let new = f.mfa.regenerate_recovery_codes(ALICE).await.unwrap();
    assert_eq!(f.mfa.status(ALICE).await.unwrap().recovery_codes_left, 10);
    for code in &old.codes {
        is(f.mfa.verify(ALICE, code.expose()).await, |e| {
            matches!(e, MfaError::InvalidCode)
        });
    }
    for code in &new.codes {
        assert!(matches!(
            f.mfa.verify(ALICE, code.expose()).await.unwrap(),
            Factor::RecoveryCode { .. }
        ));
    }
    assert_eq!(f.mfa.status(ALICE).await.unwrap().recovery_codes_left, 0);
}

#[tokio::test]
async fn reset_removes_everything() {
    let f = fixture().await;
    assert!(!f.mfa.reset(ALICE).await.unwrap());
    let e = f.mfa.begin_enrolment(ALICE, "anna").await.unwrap();
    f.mfa
        .confirm_enrolment(ALICE, &our_code(&e, Algorithm::Sha1, T0))
        .await
        .unwrap();
    assert!(f.mfa.reset(ALICE).await.unwrap());
    assert!(!f.mfa.is_enrolled(ALICE));
    is(f.mfa.verify(ALICE, "123456").await, |e| {
        matches!(e, MfaError::NotEnrolled)
    });
    // A pending enrolment alone is also removed.
    f.mfa.begin_enrolment(ALICE, "anna").await.unwrap();
    assert!(f.mfa.reset(ALICE).await.unwrap());
    assert_eq!(f.mfa.status(ALICE).await.unwrap().pending_since_ms, None);
}

#[tokio::test]
async fn concurrent_uses_of_one_code_succeed_once() {
    let f = fixture().await;
    let e = f.mfa.begin_enrolment(ALICE, "anna").await.unwrap();
    let recovery = f
        .mfa
        .confirm_enrolment(ALICE, &our_code(&e, Algorithm::Sha1, T0))
        .await
        .unwrap();
    f.clock.advance(STEP_MS);
    let code = our_code(&e, Algorithm::Sha1, T0 + STEP_MS);
    let spare = recovery.codes[3].expose().to_owned();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (mfa, input) = (
            f.mfa.clone(),
            if i % 2 == 0 {
                code.clone()
            } else {
                spare.clone()
            },
        );
        tasks.push(tokio::spawn(async move { mfa.verify(ALICE, &input).await }));
    }
    let (mut totp_ok, mut recovery_ok) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(Factor::Totp) => totp_ok += 1,
            Ok(Factor::RecoveryCode { .. }) => recovery_ok += 1,
            Err(MfaError::Replayed | MfaError::InvalidCode) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((totp_ok, recovery_ok), (1, 1));
}

#[tokio::test]
async fn state_survives_a_restart_and_holds_no_recovery_code_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::at(T0));
    let (enrolment, codes) = {
        let store = Store::open(dir.path(), &SCHEMA).unwrap();
        let mfa = Mfa::load(store, clock.clone(), MfaConfig::default())
            .await
            .unwrap();
        let e = mfa.begin_enrolment(ALICE, "anna").await.unwrap();
        let codes = mfa
            .confirm_enrolment(ALICE, &our_code(&e, Algorithm::Sha1, T0))
            .await
            .unwrap();
        (e, codes)
    };
    let file = std::fs::read(dir.path().join("idp.redb")).unwrap();
    let file = String::from_utf8_lossy(&file);
    for code in &codes.codes {
        let plain = code.expose();
        assert!(!file.contains(plain) && !file.contains(&plain.replace('-', "")));
    }
    let store = Store::open(dir.path(), &SCHEMA).unwrap();
    let mfa = Mfa::load(store, clock.clone(), MfaConfig::default())
        .await
        .unwrap();
    assert!(mfa.is_enrolled(ALICE));
    // The last used step survived too: the confirming code is still spent.
    is(
        mfa.verify(ALICE, &our_code(&enrolment, Algorithm::Sha1, T0))
            .await,
        |e| matches!(e, MfaError::Replayed),
    );
    clock.advance(STEP_MS);
    let code = our_code(&enrolment, Algorithm::Sha1, T0 + STEP_MS);
    assert_eq!(mfa.verify(ALICE, &code).await.unwrap(), Factor::Totp);
    assert!(mfa.verify(ALICE, codes.codes[9].expose()).await.is_ok());
}

#[tokio::test]
async fn nothing_secret_is_printed() {
    let f = fixture().await;
    let e = f.mfa.begin_enrolment(ALICE, "anna").await.unwrap();
    let codes = f
        .mfa
        .confirm_enrolment(ALICE, &our_code(&e, Algorithm::Sha1, T0))
        .await
        .unwrap();
    let secret = e.secret_base32.expose();
    let printed = format!(
        "{e:?} {codes:?} {:?} {:?}",
        f.mfa,
        f.mfa.status(ALICE).await.unwrap()
    );
    assert!(!printed.contains(secret), "{printed}");
    assert!(
        !printed.contains("otpauth://") && !printed.contains("<svg"),
        "{printed}"
    );
    assert!(codes.codes.iter().all(|c| !printed.contains(c.expose())));
}

#[tokio::test]
async fn bad_subjects_and_labels_are_refused() {
    let f = fixture().await;
    for (subject, label) in [
        ("", "anna"),
        ("a\nb", "anna"),
        (ALICE, ""),
        (ALICE, "issuer:anna"),
        (ALICE, &"ž".repeat(200)),
    ] {
        is(f.mfa.begin_enrolment(subject, label).await, |e| {
            matches!(e, MfaError::Invalid(_))
        });
    }
}

#[tokio::test]
async fn required_for_follows_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &SCHEMA).unwrap();
    let clock = Arc::new(FixedClock::at(T0));
    let mfa = Mfa::load(store.clone(), clock.clone(), MfaConfig::default())
        .await
        .unwrap();
    for role in [
        Role::PlatformAdmin,
        Role::SecurityOfficer,
        Role::TenantAdmin,
    ] {
        assert!(mfa.required_for(&[Role::Specialist, role]), "{role}");
    }
    assert!(!mfa.required_for(&[Role::Specialist, Role::Supervisor, Role::Auditor]));
    assert!(!mfa.required_for(&[]));
    let config = MfaConfig {
        required_roles: vec!["auditor".into()],
        ..MfaConfig::default()
    };
    let mfa = Mfa::load(store, clock, config).await.unwrap();
    assert!(mfa.required_for(&[Role::Auditor]));
    assert!(!mfa.required_for(&[Role::PlatformAdmin]));
}

#[tokio::test]
async fn issuer_and_skew_come_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &SCHEMA).unwrap();
    let clock = Arc::new(FixedClock::at(T0));
    let config = MfaConfig {
        issuer: "Ogres novads".into(),
        skew_steps: 0,
        ..MfaConfig::default()
    };
    let mfa = Mfa::load(store, clock.clone(), config).await.unwrap();
    let e = mfa.begin_enrolment(ALICE, "ņina").await.unwrap();
    assert!(
        e.otpauth_uri
            .expose()
            .starts_with("otpauth://totp/Ogres%20novads:%C5%86ina?")
    );
    assert!(e.otpauth_uri.expose().contains("&issuer=Ogres%20novads&"));
    // With no skew, the previous step's code is refused.
    clock.advance(STEP_MS);
    let previous = our_code(&e, Algorithm::Sha1, T0);
    if previous != our_code(&e, Algorithm::Sha1, T0 + STEP_MS) {
        is(mfa.confirm_enrolment(ALICE, &previous).await, |e| {
            matches!(e, MfaError::InvalidCode)
        });
    }
}
