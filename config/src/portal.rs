//! `[portal]`: the VPVKAC portal.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The VPVKAC portal (served at `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    /// Directory of the built single-page app (`index` assets from scripts/build-ui.sh:
    /// `kopa_portal_ui.js`, `kopa_portal_ui_bg.wasm`, `portal.css`). Unset: `ui` beside
    /// the directory of the `kopa` executable (`target/release/kopa` → `target/ui`).
    /// Without the files the portal shows a notice instead of the app; the API works.
    pub ui_dir: Option<PathBuf>,
}
