//! `[portal]`: the VPVKAC portal.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::Problem;
use crate::validate::check_range;

mod limits {
    use std::ops::RangeInclusive;

    pub const ATTACHMENT_MAX_BYTES: RangeInclusive<u64> = 1024..=104_857_600;
}

/// The VPVKAC portal (served at `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    /// Directory of the built single-page app (`index` assets from scripts/build-ui.sh:
    /// `kopa_portal_ui.js`, `kopa_portal_ui_bg.wasm`, `portal.css`). Unset: `ui` beside
    /// the directory of the `kopa` executable (`target/release/kopa` → `target/ui`).
    /// Without the files the portal shows a notice instead of the app; the API works.
    pub ui_dir: Option<PathBuf>,
    /// Largest case attachment, in bytes (PDF, PNG, JPEG, plain text, ODT, DOCX). Uploads
    /// to a case's `attachments` may be this large even when `server.max_body_bytes` is
    /// smaller; every other request keeps that limit.
    #[schemars(range(min = *limits::ATTACHMENT_MAX_BYTES.start(), max = *limits::ATTACHMENT_MAX_BYTES.end()))]
    pub attachment_max_bytes: u64,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            ui_dir: None,
            attachment_max_bytes: 10 * 1_048_576,
        }
    }
}

impl PortalConfig {
    pub(crate) fn validate(&self, out: &mut Vec<Problem>) {
        check_range(
            out,
            "portal.attachment_max_bytes",
            self.attachment_max_bytes,
            &limits::ATTACHMENT_MAX_BYTES,
        );
    }
}
