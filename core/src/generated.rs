//! Documents generated from the code (the configuration reference, the OpenAPI document)
//! are committed beside it; a test of each compares the two, and `make docs` (which sets
//! `KOPA_BLESS=1`) writes the file anew.

use std::path::Path;

/// Checks that `path` holds `generated`, or writes it there under `KOPA_BLESS=1`.
pub fn check_or_bless(path: &Path, generated: &str) -> Result<(), String> {
    if std::env::var("KOPA_BLESS").is_ok_and(|v| v == "1") {
        return std::fs::write(path, generated).map_err(|e| format!("{}: {e}", path.display()));
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed == generated {
        Ok(())
    } else {
        Err(format!("{} is stale: run `make docs`", path.display()))
    }
}
