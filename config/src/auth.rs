//! `[session]`, `[login]`: the SSO session and the rules of the login form.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// The single sign-on session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {}

/// Throttling and lockout of the login form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {}

impl SessionConfig {
    pub(crate) fn validate(&self, _out: &mut Vec<Problem>) {}
}

impl LoginConfig {
    pub(crate) fn validate(&self, _out: &mut Vec<Problem>) {}
}
