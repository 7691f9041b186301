//! `[audit]`: the tamper-evident audit log.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;
use crate::validate::check_range;

mod limits {
    use std::ops::RangeInclusive;

    /// Shortest retention other than "keep forever".
    pub const MIN_RETENTION_DAYS: u32 = 30;
    pub const RETENTION_DAYS: RangeInclusive<u32> = 0..=36_500;
    pub const MAX_BATCH: RangeInclusive<u32> = 1..=65_536;
}

/// The tamper-evident audit log (`audit.redb`): every sign-in attempt and every
/// administrative change, hash-chained and signed. See docs/audit-events.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days an audit record is kept. Older records are dropped once an hour, and a
    /// record signed with the appliance's audit key takes their place, so the chain still
    /// verifies. 0 keeps every record forever; otherwise at least 30.
    #[schemars(range(min = *limits::RETENTION_DAYS.start(), max = *limits::RETENTION_DAYS.end()))]
    pub retention_days: u32,
    /// Most records written to disk together in one durable commit. Records that arrive
    /// while the disk is busy share the next commit, so a larger batch helps only under
    /// very high load; the default suits every appliance.
    #[schemars(range(min = *limits::MAX_BATCH.start(), max = *limits::MAX_BATCH.end()))]
    pub max_batch: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 0,
            max_batch: 4096,
        }
    }
}

impl AuditConfig {
    pub(crate) fn validate(&self, out: &mut Vec<Problem>) {
        let days = self.retention_days;
        if days != 0 && days < limits::MIN_RETENTION_DAYS {
            out.push(Problem::default_origin(
                "audit.retention_days",
                format!(
                    "Too short: {days} (0 keeps records forever; otherwise at least {} days)",
                    limits::MIN_RETENTION_DAYS
                ),
            ));
        } else {
            check_range(out, "audit.retention_days", days, &limits::RETENTION_DAYS);
        }
        check_range(out, "audit.max_batch", self.max_batch, &limits::MAX_BATCH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let mut out = Vec::new();
        AuditConfig::default().validate(&mut out);
        for days in [0, 30, 3650] {
            AuditConfig {
                retention_days: days,
                ..AuditConfig::default()
            }
            .validate(&mut out);
        }
        assert!(out.is_empty(), "{out:?}");

        for (days, batch) in [(7, 4096), (40_000, 4096), (0, 0), (0, 70_000)] {
            AuditConfig {
                retention_days: days,
                max_batch: batch,
            }
            .validate(&mut out);
        }
        let keys: Vec<_> = out.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "audit.retention_days",
                "audit.retention_days",
                "audit.max_batch",
                "audit.max_batch"
            ]
        );
        assert!(out[0].message.contains("at least 30"), "{}", out[0].message);
    }
}
