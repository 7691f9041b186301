//! `[session]`, `[login]`: the SSO session and the rules of the login form.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::validate::check_range;

mod limits {
    use std::ops::RangeInclusive;

    pub const IDLE_TIMEOUT_SECS: RangeInclusive<u64> = 60..=86_400;
    pub const ABSOLUTE_TIMEOUT_SECS: RangeInclusive<u64> = 300..=30 * 86_400;
    pub const LOCKOUT_THRESHOLD: RangeInclusive<u32> = 1..=100;
    pub const LOCKOUT_SECS: RangeInclusive<u64> = 1..=86_400;
    pub const BACKOFF_BASE_MS: RangeInclusive<u64> = 0..=60_000;
    pub const BACKOFF_MAX_MS: RangeInclusive<u64> = 0..=3_600_000;
    pub const IP_FREE_FAILURES: RangeInclusive<u32> = 1..=100_000;
}

/// The single sign-on session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Seconds without any use after which a session ends.
    #[schemars(range(min = *limits::IDLE_TIMEOUT_SECS.start(), max = *limits::IDLE_TIMEOUT_SECS.end()))]
    pub idle_timeout_secs: u64,
    /// Seconds after sign-in at which a session ends however busy it is.
    #[schemars(range(
        min = *limits::ABSOLUTE_TIMEOUT_SECS.start(),
        max = *limits::ABSOLUTE_TIMEOUT_SECS.end()
    ))]
    pub absolute_timeout_secs: u64,
}

/// Throttling and lockout of the login form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// Consecutive failed sign-ins after which an account is locked (the Latvian minimum
    /// rules ask for at most 5).
    #[schemars(range(min = *limits::LOCKOUT_THRESHOLD.start(), max = *limits::LOCKOUT_THRESHOLD.end()))]
    pub lockout_threshold: u32,
    /// Seconds an account stays locked; an administrator can unlock it sooner.
    #[schemars(range(min = *limits::LOCKOUT_SECS.start(), max = *limits::LOCKOUT_SECS.end()))]
    pub lockout_secs: u64,
    /// Wait, in milliseconds, imposed after the first failure of an account or address;
    /// it doubles with every further failure. 0 turns back-off off.
    #[schemars(range(min = *limits::BACKOFF_BASE_MS.start(), max = *limits::BACKOFF_BASE_MS.end()))]
    pub backoff_base_ms: u64,
    /// Longest back-off wait, in milliseconds.
    #[schemars(range(min = *limits::BACKOFF_MAX_MS.start(), max = *limits::BACKOFF_MAX_MS.end()))]
    pub backoff_max_ms: u64,
    /// Failures from one source address that pass without back-off: a customer service
    /// centre puts many staff behind one address.
    #[schemars(range(min = *limits::IP_FREE_FAILURES.start(), max = *limits::IP_FREE_FAILURES.end()))]
    pub ip_free_failures: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 10 * 3600,
        }
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            lockout_threshold: 5,
            lockout_secs: 15 * 60,
            backoff_base_ms: 250,
            backoff_max_ms: 30_000,
            ip_free_failures: 20,
        }
    }
}

impl SessionConfig {
    pub(crate) fn validate(&self, out: &mut Vec<Problem>) {
        check_range(
            out,
            "session.idle_timeout_secs",
            self.idle_timeout_secs,
            &limits::IDLE_TIMEOUT_SECS,
        );
        check_range(
            out,
            "session.absolute_timeout_secs",
            self.absolute_timeout_secs,
            &limits::ABSOLUTE_TIMEOUT_SECS,
        );
        if self.idle_timeout_secs > self.absolute_timeout_secs {
            out.push(Problem::default_origin(
                "session.idle_timeout_secs",
                "Longer than session.absolute_timeout_secs",
            ));
        }
    }
}

impl LoginConfig {
    pub(crate) fn validate(&self, out: &mut Vec<Problem>) {
        check_range(
            out,
            "login.lockout_threshold",
            self.lockout_threshold,
            &limits::LOCKOUT_THRESHOLD,
        );
        check_range(
            out,
            "login.lockout_secs",
            self.lockout_secs,
            &limits::LOCKOUT_SECS,
        );
        check_range(
            out,
            "login.backoff_base_ms",
            self.backoff_base_ms,
            &limits::BACKOFF_BASE_MS,
        );
        check_range(
            out,
            "login.backoff_max_ms",
            self.backoff_max_ms,
            &limits::BACKOFF_MAX_MS,
        );
        check_range(
            out,
            "login.ip_free_failures",
            self.ip_free_failures,
            &limits::IP_FREE_FAILURES,
        );
        if self.backoff_base_ms > self.backoff_max_ms {
            out.push(Problem::default_origin(
                "login.backoff_base_ms",
                "Larger than login.backoff_max_ms",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_inconsistent_pairs_are_not() {
        let mut out = Vec::new();
        SessionConfig::default().validate(&mut out);
        LoginConfig::default().validate(&mut out);
        assert!(out.is_empty(), "{out:?}");

        let session = SessionConfig {
            idle_timeout_secs: 7200,
            absolute_timeout_secs: 3600,
        };
        let login = LoginConfig {
            lockout_threshold: 0,
            backoff_base_ms: 5000,
            backoff_max_ms: 100,
            ..LoginConfig::default()
        };
        session.validate(&mut out);
        login.validate(&mut out);
        let keys: Vec<_> = out.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "session.idle_timeout_secs",
                "login.lockout_threshold",
                "login.backoff_base_ms"
            ]
        );
    }
}
