//! `[audit]`: the tamper-evident audit log.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// The audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {}

impl AuditConfig {
    pub(crate) fn validate(&self, _out: &mut Vec<Problem>) {}
}
