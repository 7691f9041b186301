//! The stored second factor of one subject, and the pure rules that change it: no I/O and
//! no clock, so every rule is tested by handing it a time.

use super::recovery::RecoverySet;
use super::totp::{self, Algorithm, TotpSecret};
use super::{Factor, MfaError};
use serde::{Deserialize, Serialize};

/// How long a begun enrolment may wait for its confirming code.
pub(crate) const PENDING_LIFETIME_MS: u64 = 60 * 60 * 1000;
/// Longest input looked at; anything longer is neither a TOTP nor a recovery code.
const MAX_INPUT_BYTES: usize = 64;

/// A TOTP key and what has been done with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Credential {
    pub(crate) secret: TotpSecret,
    pub(crate) algorithm: Algorithm,
    pub(crate) created_at_ms: u64,
    /// `None` until the user proved, with a code, that the app holds the key.
    pub(crate) confirmed_at_ms: Option<u64>,
    /// The newest time step whose code was accepted. Codes of that step and older are
    /// refused, so a code seen over a shoulder or in a proxy log cannot be used again.
    pub(crate) last_used_step: Option<u64>,
}

/// Everything stored for one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MfaRecord {
    /// The confirmed key that sign-in checks.
    pub(crate) active: Option<Credential>,
    /// A key shown to the user but not yet confirmed. It replaces `active` only on
    /// confirmation, so an abandoned re-enrolment never locks anybody out.
    pub(crate) pending: Option<Credential>,
    /// The recovery codes of the active key.
    pub(crate) recovery: Option<RecoverySet>,
}

impl Credential {
    pub(crate) fn pending(secret: TotpSecret, algorithm: Algorithm, now_ms: u64) -> Self {
        Self {
            secret,
            algorithm,
            created_at_ms: now_ms,
            confirmed_at_ms: None,
            last_used_step: None,
        }
    }

    /// The step at which `code` (already normalised) is accepted at `now_ms`.
    fn accept(&self, code: &str, now_ms: u64, skew: u64) -> Result<u64, MfaError> {
        let center = totp::step_at(now_ms / 1000);
        let steps = totp::matching_steps(&self.secret, self.algorithm, code, center, skew);
        if steps.is_empty() {
            return Err(MfaError::InvalidCode);
        }
        steps
            .into_iter()
            .find(|step| self.last_used_step.is_none_or(|last| *step > last))
            .ok_or(MfaError::Replayed)
    }
}

impl MfaRecord {
    /// Whether nothing is left worth storing.
    /// Whether a confirmed key is in force.
    pub(crate) fn is_confirmed(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.confirmed_at_ms.is_some())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.active.is_none() && self.pending.is_none()
    }

    /// The pending enrolment, unless it has expired.
    pub(crate) fn live_pending(&self, now_ms: u64) -> Option<&Credential> {
        self.pending
            .as_ref()
            .filter(|p| now_ms.saturating_sub(p.created_at_ms) <= PENDING_LIFETIME_MS)
    }

    /// Makes the pending key active when `code` is right for it, with `recovery` as its
    /// recovery codes. The confirming code counts as used.
    pub(crate) fn confirm(
        &mut self,
        code: &str,
        now_ms: u64,
        skew: u64,
        recovery: RecoverySet,
    ) -> Result<(), MfaError> {
        let pending = self
            .live_pending(now_ms)
            .ok_or(MfaError::NoPendingEnrolment)?;
        let code = totp::normalize_code(code).ok_or(MfaError::InvalidCode)?;
        let step = pending.accept(&code, now_ms, skew)?;
        let mut active = pending.clone();
        active.confirmed_at_ms = Some(now_ms);
        active.last_used_step = Some(step);
        self.active = Some(active);
        self.pending = None;
        self.recovery = Some(recovery);
        Ok(())
    }

    /// Checks `input` as a TOTP code of the active key or else as an unused recovery
    /// code, and spends it.
    pub(crate) fn verify(
        &mut self,
        input: &str,
        now_ms: u64,
        skew: u64,
    ) -> Result<Factor, MfaError> {
        let active = self.active.as_mut().ok_or(MfaError::NotEnrolled)?;
        if input.len() > MAX_INPUT_BYTES {
            return Err(MfaError::InvalidCode);
        }
        if let Some(code) = totp::normalize_code(input) {
            let step = active.accept(&code, now_ms, skew)?;
            active.last_used_step = Some(step);
            return Ok(Factor::Totp);
        }
        let recovery = self.recovery.as_mut().ok_or(MfaError::InvalidCode)?;
        let index = recovery.find(input).ok_or(MfaError::InvalidCode)?;
        recovery.spend(index);
        Ok(Factor::RecoveryCode {
            remaining: recovery.remaining(),
        })
    }

    /// Replaces the recovery codes of the active key.
    pub(crate) fn replace_recovery(&mut self, recovery: RecoverySet) -> Result<(), MfaError> {
        if self.active.is_none() {
            return Err(MfaError::NotEnrolled);
        }
        self.recovery = Some(recovery);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::recovery;
    use super::*;

    const T0: u64 = 1_700_000_010_000; // the first millisecond of a time step
    const STEP_MS: u64 = totp::STEP_SECS * 1000;

    fn code(c: &Credential, at_ms: u64) -> String {
        totp::totp(&c.secret, c.algorithm, at_ms / 1000, totp::DIGITS)
    }

    fn enrolled() -> (MfaRecord, Vec<kopa_config::Secret>) {
        let mut r = MfaRecord {
            pending: Some(Credential::pending(
                TotpSecret::generate(),
                Algorithm::Sha1,
                T0,
            )),
            ..MfaRecord::default()
        };
        let (codes, set) = recovery::generate();
        let c = code(r.pending.as_ref().unwrap(), T0);
        r.confirm(&c, T0, 1, set).unwrap();
        (r, codes)
    }

    #[test]
    fn confirmation_needs_a_live_pending_key_and_its_code() {
        let mut r = MfaRecord::default();
        let (_, set) = recovery::generate();
        assert!(matches!(
            r.confirm("123456", T0, 1, set.clone()),
            Err(MfaError::NoPendingEnrolment)
        ));
        let pending = Credential::pending(TotpSecret::generate(), Algorithm::Sha256, T0);
        let right = code(&pending, T0);
        r.pending = Some(pending);
        let wrong = if right == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert!(matches!(
            r.confirm(wrong, T0, 1, set.clone()),
            Err(MfaError::InvalidCode)
        ));
        assert!(matches!(
            r.confirm("abc", T0, 1, set.clone()),
            Err(MfaError::InvalidCode)
        ));
        let late = T0 + PENDING_LIFETIME_MS + 1;
        assert!(matches!(
            r.confirm(&right, late, 1, set.clone()),
            Err(MfaError::NoPendingEnrolment)
        ));
        assert!(r.active.is_none());
        r.confirm(&right, T0, 1, set).unwrap();
        let active = r.active.as_ref().unwrap();
        assert_eq!(active.confirmed_at_ms, Some(T0));
        assert_eq!(active.algorithm, Algorithm::Sha256);
        assert!(r.pending.is_none());
        // The confirming code is spent.
        assert!(matches!(r.verify(&right, T0, 1), Err(MfaError::Replayed)));
    }

    #[test]
    fn skew_window_and_replay() {
        let (mut r, _) = enrolled();
        let c = r.active.clone().unwrap();
        // One step late and one step early are accepted with skew 1, two are not.
        let next = code(&c, T0 + STEP_MS);
        assert!(matches!(
            r.clone().verify(&next, T0 + 3 * STEP_MS, 1),
            Err(MfaError::InvalidCode)
        ));
        assert_eq!(r.verify(&next, T0 + 2 * STEP_MS, 1).unwrap(), Factor::Totp);
        assert!(matches!(
            r.verify(&next, T0 + 2 * STEP_MS, 1),
            Err(MfaError::Replayed)
        ));
        let early = code(&c, T0 + 3 * STEP_MS);
        assert!(matches!(
            r.clone().verify(&early, T0 + STEP_MS, 1),
            Err(MfaError::InvalidCode)
        ));
        assert_eq!(r.verify(&early, T0 + 2 * STEP_MS, 1).unwrap(), Factor::Totp);
        // After step 3 was used, the still-in-window code of step 2 is refused too.
        let older = code(&c, T0 + 2 * STEP_MS);
        assert!(matches!(
            r.verify(&older, T0 + 3 * STEP_MS, 1),
            Err(MfaError::Replayed)
        ));
        // Skew 0 accepts only the current step.
        let now = T0 + 10 * STEP_MS;
        assert!(matches!(
            r.clone().verify(&code(&c, now - STEP_MS), now, 0),
            Err(MfaError::InvalidCode)
        ));
        assert_eq!(r.verify(&code(&c, now), now, 0).unwrap(), Factor::Totp);
    }

    #[test]
    fn recovery_codes_are_single_use() {
        let (mut r, codes) = enrolled();
        let first = codes[0].expose();
        assert_eq!(
            r.verify(first, T0, 1).unwrap(),
            Factor::RecoveryCode {
                remaining: recovery::COUNT - 1
            }
        );
        assert!(matches!(r.verify(first, T0, 1), Err(MfaError::InvalidCode)));
        let (_, fresh) = recovery::generate();
        r.replace_recovery(fresh).unwrap();
        assert!(matches!(
            r.verify(codes[1].expose(), T0, 1),
            Err(MfaError::InvalidCode)
        ));
        assert!(matches!(
            r.verify(&"7".repeat(65), T0, 1),
            Err(MfaError::InvalidCode)
        ));
    }

    #[test]
    fn nothing_verifies_without_an_active_key() {
        let mut r = MfaRecord {
            pending: Some(Credential::pending(
                TotpSecret::generate(),
                Algorithm::Sha1,
                T0,
            )),
            ..MfaRecord::default()
        };
        let c = code(r.pending.as_ref().unwrap(), T0);
        assert!(matches!(r.verify(&c, T0, 1), Err(MfaError::NotEnrolled)));
        let (_, set) = recovery::generate();
        assert!(matches!(
            r.replace_recovery(set),
            Err(MfaError::NotEnrolled)
        ));
        assert!(!r.is_empty());
        assert!(MfaRecord::default().is_empty());
    }
}
