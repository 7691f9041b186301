//! Second factors: TOTP authenticator apps (RFC 6238) with single-use recovery codes, for
//! any subject a directory or local account signs in. No HTTP here: the login and
//! account pages call [`Mfa`] and render what it returns.
//!
//! A subject enrols in two steps. [`Mfa::begin_enrolment`] makes a key and returns it as
//! text, as an `otpauth://` URI and as a QR code; nothing changes for sign-in yet.
//! [`Mfa::confirm_enrolment`] takes a code from the app, makes the key active (replacing
//! any earlier one) and returns recovery codes, which are shown once and then exist only
//! as hashes. [`Mfa::verify`] accepts a current code or an unused recovery code, once.
//!
//! Callers must put every [`Mfa::verify`] and [`Mfa::confirm_enrolment`] behind the login
//! throttle and count [`MfaError::is_failed_attempt`] as a failure: a 6-digit code with a
//! ±1 step window is guessed with probability 3 in a million per try, which is only safe
//! when tries are few.
//!
//! **Trust boundary.** TOTP keys are stored as they are in `idp.redb`, because the
//! appliance must compute codes from them; whoever can read the data directory (or a
//! backup of it) can compute codes. The directory is private to the `kopa` user
//! (mode 0700, files 0600) and backups must be kept as carefully. Keys never appear in
//! `Debug` output or logs.

mod provision;
mod record;
mod recovery;
pub mod totp;

use kopa_config::{MfaConfig, Secret};
use kopa_core::{Clock, Role};
use kopa_store::{Store, StoreError, Table};
use record::{Credential, MfaRecord};
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};
pub use totp::Algorithm;

/// Subject id → its second factor.
const RECORDS: Table<String, MfaRecord> = Table::new("mfa");

/// Creates this module's tables (migration 3 of `idp.redb`).
pub(crate) fn create_tables(txn: &kopa_store::WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&RECORDS)
}

/// Longest subject id accepted, in bytes.
const MAX_SUBJECT_BYTES: usize = 512;
/// Largest accepted clock skew, in steps (the limit `[mfa] skew_steps` is validated to).
const MAX_SKEW_STEPS: u64 = 2;

/// What went wrong with a second factor.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The subject has no confirmed second factor.
    #[error("No second factor is set up")]
    NotEnrolled,
    /// There is no begun (and unexpired) enrolment to confirm.
    #[error("No enrolment awaits confirmation")]
    NoPendingEnrolment,
    /// The code is wrong, malformed, or a recovery code already used.
    #[error("Wrong code")]
    InvalidCode,
    /// The code is right but its time step was already used.
    #[error("Code already used")]
    Replayed,
    /// A subject id or account label is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The key URI does not fit in a QR code.
    #[error("Cannot make the QR code")]
    Qr(#[source] qrcode::types::QrError),
    /// The database failed.
    #[error("MFA storage failed")]
    Store(#[from] StoreError),
}

impl MfaError {
    /// Whether this is a wrong guess that the throttle must count.
    pub fn is_failed_attempt(&self) -> bool {
        matches!(self, MfaError::InvalidCode | MfaError::Replayed)
    }
}

/// The factor that [`Mfa::verify`] accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// A code from the authenticator app.
    Totp,
    /// A recovery code, now spent.
    RecoveryCode {
        /// Recovery codes left; the user should make new ones when few remain.
        remaining: usize,
    },
}

/// A begun enrolment, to show once to the user. `Debug` reveals none of it.
#[derive(Clone)]
pub struct Enrolment {
    /// The key as unpadded base32, for typing into an app.
    pub secret_base32: Secret,
    /// `otpauth://totp/<issuer>:<account>?secret=…` for apps that take a link.
    pub otpauth_uri: Secret,
    /// The URI as a QR code: an `<svg>` element to place inline in the page. It encodes
    /// the key, so the page must not be cached.
    pub qr_svg: String,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolment")
            .field("secret_base32", &self.secret_base32)
            .field("otpauth_uri", &self.otpauth_uri)
            .field("qr_svg", &format_args!("[{} bytes]", self.qr_svg.len()))
            .finish()
    }
}

/// A new set of recovery codes (`xxxxx-xxxxx`), to show once.
#[derive(Debug, Clone)]
pub struct RecoveryCodes {
    /// The codes; each signs in once in place of a TOTP code.
    pub codes: Vec<Secret>,
}

/// What may be shown about a subject's second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaStatus {
    /// When the active key was confirmed; `None` when not enrolled.
    pub confirmed_at_ms: Option<u64>,
    /// The active key's algorithm.
    pub algorithm: Option<Algorithm>,
    /// When an enrolment awaiting confirmation was begun.
    pub pending_since_ms: Option<u64>,
    /// Unused recovery codes.
    pub recovery_codes_left: usize,
}

/// The second-factor service over `idp.redb`.
#[derive(Debug, Clone)]
pub struct Mfa {
    store: Store,
    /// Subjects with a confirmed key: every password sign-in asks, so it is answered from
    /// memory. Changed only under `writer`, after the change is durable.
    enrolled: Arc<RwLock<HashSet<String>>>,
    writer: Arc<tokio::sync::Mutex<()>>,
    clock: Arc<dyn Clock>,
    issuer: String,
    skew: u64,
    required: Vec<Role>,
}

impl Mfa {
    /// Second factors kept in `store` (the IdP database), with the `[mfa]` settings.
    pub async fn load(
        store: Store,
        clock: Arc<dyn Clock>,
        config: MfaConfig,
    ) -> Result<Self, MfaError> {
        let enrolled: HashSet<String> = store
            .read(|txn| txn.iter(&RECORDS))
            .await?
            .into_iter()
            .filter(|(_, record)| record.is_confirmed())
            .map(|(subject, _)| subject)
            .collect();
        let required = config
            .required_roles
            .iter()
            .filter_map(|name| Role::parse(name))
            .collect();
        Ok(Self {
            store,
            enrolled: Arc::new(RwLock::new(enrolled)),
            writer: Arc::default(),
            clock,
            issuer: config.issuer,
            skew: u64::from(config.skew_steps).min(MAX_SKEW_STEPS),
            required,
        })
    }

    /// Whether someone holding `roles` must sign in with a second factor.
    pub fn required_for(&self, roles: &[Role]) -> bool {
        roles.iter().any(|role| self.required.contains(role))
    }

    /// Starts (re-)enrolment with an HMAC-SHA-1 key; see [`Mfa::begin_enrolment_with`].
    pub async fn begin_enrolment(
        &self,
        subject: &str,
        account_label: &str,
    ) -> Result<Enrolment, MfaError> {
        self.begin_enrolment_with(subject, account_label, Algorithm::Sha1)
            .await
    }

    /// Makes a new key for `subject`, labelled `account_label` (e.g. `jānis@talsi.lv`) in
    /// the app. It replaces any earlier unconfirmed one; an active key stays in force
    /// until this one is confirmed, which must happen within an hour. The caller must
    /// already have authenticated the subject fully, with the second factor too when one
    /// is active.
    pub async fn begin_enrolment_with(
        &self,
        subject: &str,
        account_label: &str,
        algorithm: Algorithm,
    ) -> Result<Enrolment, MfaError> {
        check_subject(subject)?;
        provision::check_label(account_label).map_err(|m| MfaError::Invalid(m.to_owned()))?;
        let secret = totp::TotpSecret::generate();
        let secret_base32 = secret.to_base32();
        let uri = provision::otpauth_uri(
            &self.issuer,
            account_label,
            secret_base32.expose(),
            algorithm,
        );
        let qr_svg = provision::qr_svg(&uri).map_err(MfaError::Qr)?;
        let pending = Credential::pending(secret, algorithm, self.clock.now_millis());
        self.update(subject, move |record| {
            record.pending = Some(pending.clone());
            Ok(())
        })
        .await?;
        Ok(Enrolment {
            secret_base32,
            otpauth_uri: Secret::new(uri),
            qr_svg,
        })
    }

    /// Activates the pending key when `code` is a current code of it, and returns a new
    /// set of recovery codes (replacing any earlier set).
    pub async fn confirm_enrolment(
        &self,
        subject: &str,
        code: &str,
    ) -> Result<RecoveryCodes, MfaError> {
        let (codes, set) = recovery::generate();
        let (now, skew, code) = (self.clock.now_millis(), self.skew, code.to_owned());
        self.update(subject, move |record| {
            record.confirm(&code, now, skew, set.clone())
        })
        .await?;
        tracing::info!(subject, "second factor enrolled");
        Ok(RecoveryCodes { codes })
    }

    /// Whether `subject` has a confirmed second factor.
    pub fn is_enrolled(&self, subject: &str) -> bool {
        self.enrolled_set().contains(subject)
    }

    fn enrolled_set(&self) -> std::sync::RwLockReadGuard<'_, HashSet<String>> {
        // A panic elsewhere cannot leave the set half-changed: each change is one call.
        self.enrolled.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Records in memory what is now durable about `subject`. Called under `writer`.
    fn note_enrolled(&self, subject: &str, enrolled: bool) {
        let mut set = self.enrolled.write().unwrap_or_else(|e| e.into_inner());
        if enrolled {
            set.insert(subject.to_owned());
        } else {
            set.remove(subject);
        }
    }

    /// The state of `subject`'s second factor.
    pub async fn status(&self, subject: &str) -> Result<MfaStatus, MfaError> {
        let key = subject.to_owned();
        let record = self
            .store
            .read(move |txn| txn.get(&RECORDS, &key))
            .await?
            .unwrap_or_default();
        let now = self.clock.now_millis();
        Ok(MfaStatus {
            confirmed_at_ms: record.active.as_ref().and_then(|a| a.confirmed_at_ms),
            algorithm: record.active.as_ref().map(|a| a.algorithm),
            pending_since_ms: record.live_pending(now).map(|p| p.created_at_ms),
            recovery_codes_left: record.recovery.as_ref().map_or(0, |r| r.remaining()),
        })
    }

    /// Accepts `code` as a current TOTP code (spaces ignored) or an unused recovery code
    /// (case, spaces and dashes ignored), and spends it.
    pub async fn verify(&self, subject: &str, code: &str) -> Result<Factor, MfaError> {
        let (now, skew, code) = (self.clock.now_millis(), self.skew, code.to_owned());
        let factor = self
            .update(subject, move |record| record.verify(&code, now, skew))
            .await?;
        if let Factor::RecoveryCode { remaining } = factor {
            tracing::info!(subject, remaining, "recovery code used");
        }
        Ok(factor)
    }

    /// Replaces `subject`'s recovery codes with a new set; the old codes stop working.
    pub async fn regenerate_recovery_codes(
        &self,
        subject: &str,
    ) -> Result<RecoveryCodes, MfaError> {
        let (codes, set) = recovery::generate();
        self.update(subject, move |record| record.replace_recovery(set.clone()))
            .await?;
        tracing::info!(subject, "recovery codes replaced");
        Ok(RecoveryCodes { codes })
    }

    /// Removes `subject`'s second factor, confirmed or not (an administrator's action for
    /// a lost phone). Returns whether there was anything to remove.
    pub async fn reset(&self, subject: &str) -> Result<bool, MfaError> {
        let key = subject.to_owned();
        let _writer = self.writer.lock().await;
        let removed = self
            .store
            .write(move |txn| Ok(txn.remove(&RECORDS, &key)?.is_some()))
            .await?;
        self.note_enrolled(subject, false);
        if removed {
            tracing::info!(subject, "second factor removed");
        }
        Ok(removed)
    }

    /// Applies `change` to `subject`'s record and stores the result when it succeeds.
    async fn update<T: Send + 'static>(
        &self,
        subject: &str,
        change: impl Fn(&mut MfaRecord) -> Result<T, MfaError> + Send + Sync + 'static,
    ) -> Result<T, MfaError> {
        let change = Arc::new(change);
        let (probe, key) = (Arc::clone(&change), subject.to_owned());
        // Refusals are decided on a snapshot, so a wrong code costs no write and no fsync:
        // guessing cannot be turned into disk load.
        self.store
            .read(move |txn| {
                let mut record = txn.get(&RECORDS, &key)?.unwrap_or_default();
                Ok(probe(&mut record).map(drop))
            })
            .await??;
        let key = subject.to_owned();
        let _writer = self.writer.lock().await;
        // Decided again inside the write, where writers are serialised: of two racing uses
        // of one code, only the first commits and the second is refused as a replay.
        let (outcome, confirmed) = self
            .store
            .write(move |txn| {
                let mut record = txn.get(&RECORDS, &key)?.unwrap_or_default();
                let outcome = change(&mut record);
                if outcome.is_ok() {
                    if record.is_empty() {
                        txn.remove(&RECORDS, &key)?;
                    } else {
                        txn.insert(&RECORDS, &key, &record)?;
                    }
                }
                Ok((outcome, record.is_confirmed()))
            })
            .await?;
        if outcome.is_ok() {
            self.note_enrolled(subject, confirmed);
        }
        outcome
    }
}

fn check_subject(subject: &str) -> Result<(), MfaError> {
    let ok = !subject.is_empty()
        && subject.len() <= MAX_SUBJECT_BYTES
        && !subject.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(MfaError::Invalid(format!(
            "Subject id must be 1 to {MAX_SUBJECT_BYTES} bytes without control characters"
        )))
    }
}
