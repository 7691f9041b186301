//! `[[directory]]`: the directories (municipal LDAP servers, local accounts) that users
//! sign in against, one or more per tenant.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// One directory users sign in against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {}

impl DirectoryConfig {
    /// Semantic checks of entry `index` of `[[directory]]`.
    pub(crate) fn validate(&self, _index: usize, _out: &mut Vec<Problem>) {}
}
