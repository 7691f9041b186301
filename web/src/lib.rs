//! The HTTPS edge of Kopa: the TLS listener and its connection loop, security headers on
//! every response, request ids and access logs, body limits and timeouts, the one place
//! where errors become HTTP responses, and the health endpoints.
//!
//! Only this crate and each service's `http` module name warp.

pub mod cookie;
pub mod error;
pub mod health;
pub mod json_api;
pub mod middleware;
pub mod outbound;
pub mod server;
pub mod sso;
pub mod tls;

pub use error::{ApiError, error_response, recover};
pub use health::{Readiness, ReadinessProbe, health_routes};
pub use middleware::{PeerAddr, RequestId};
pub use server::{EdgeSettings, ServeError, ServeSummary, Server};
pub use tls::{CertInfo, ReloadableCert, SelfSigned, TlsError};
