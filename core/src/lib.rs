//! Shared vocabulary of Kopa: tenant ids, principals, roles, API error codes and the clock.
//!
//! No I/O lives here, so the crate also builds for `wasm32-unknown-unknown` (the portal UI).

pub mod clock;
pub mod error;
pub mod generated;
pub mod load;
pub mod principal;
pub mod sample;
pub mod vm;

pub use clock::{Clock, FixedClock, SystemClock, UnixMillis};
pub use error::ErrorCode;
pub use principal::{Principal, Role, TenantId, TenantIdError};

/// The version of this Kopa build, reported by `/healthz`, `/readyz` and `kopa --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
