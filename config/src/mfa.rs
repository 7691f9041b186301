//! `[mfa]`: second factors (TOTP) and who must use them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// Multi-factor authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MfaConfig {}

impl MfaConfig {
    pub(crate) fn validate(&self, _out: &mut Vec<Problem>) {}
}
