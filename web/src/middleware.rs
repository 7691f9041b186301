//! What happens around every request, whatever route it reaches: a request id, the peer
//! address, the body limit, the request timeout, security headers and one access-log line.

use crate::error::error_response;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use kopa_core::ErrorCode;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_service::Service;
use warp::reply::Response;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The TCP peer of the connection, as a request extension (warp's own `remote()` is empty
/// when we run the accept loop ourselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The id of the request this task is serving, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Limits applied to each request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest accepted body.
    pub max_body_bytes: u64,
    /// Largest body of an upload: a `POST` to a path ending in `/attachments` (the one
    /// naming convention of Kopa's upload endpoints). The route checks its own limit too.
    pub upload_max_body_bytes: u64,
    /// Time allowed for reading the body and producing the response head.
    pub request_timeout: Duration,
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; \
frame-ancestors 'none'";

/// Headers set on every response; a handler may set a looser CSP for a page that needs it
/// (the SPA needs `wasm-unsafe-eval`), the others are not negotiable.
fn apply_security_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    let fixed: [(HeaderName, &'static str); 6] = [
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `same-origin`, not `no-referrer`: under `no-referrer` browsers send
        // `Origin: null` on form posts (Fetch, "serializing a request origin"), and our
        // own forms would fail the Origin check. Other sites still get no referrer.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    // A page may loosen other directives; framing stays denied unless the page itself
    // names who may frame it (only our own logout page frames our pages).
    let csp = match h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    {
        None => Some(HeaderValue::from_static(CSP)),
        Some(own) if !own.contains("frame-ancestors") => {
            HeaderValue::from_str(&format!("{own}; frame-ancestors 'none'")).ok()
        }
        Some(_) => None,
    };
    if let Some(csp) = csp {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    // A page our own pages frame (Single Logout) may say so; nobody else may frame it.
    let own_frames_only = h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("frame-ancestors 'self'"));
    if own_frames_only {
        h.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    }
    // Identity and admin answers must not linger in shared or browser caches.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// A body that stops with an error once more than `limit` bytes have arrived, and records
/// that it did, so the edge answers 413 whatever the route made of the read error.
#[derive(Debug)]
pub struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

/// The body grew past the limit.
#[derive(Debug, thiserror::Error)]
#[error("Request body exceeds the limit")]
pub struct BodyTooLarge;

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.exceeded.store(true, Ordering::SeqCst);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one request through `service` with everything this module owns around it.
pub async fn handle<S, B>(
    mut service: S,
    peer: SocketAddr,
    limits: RequestLimits,
    req: http::Request<B>,
) -> Response
where
    S: Service<http::Request<LimitedBody<B>>, Response = Response, Error = Infallible>,
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let method = req.method().clone();
    // The path only: query strings carry codes and tokens that must never reach a log.
    let path = req.uri().path().to_owned();
    let version = req.version();
    let max_body = if method == http::Method::POST && path.ends_with("/attachments") {
        limits.upload_max_body_bytes.max(limits.max_body_bytes)
    } else {
        limits.max_body_bytes
    };

    let declared_too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max_body);

    let exceeded = Arc::new(AtomicBool::new(false));
    // Every log line written while serving this request carries its id.
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut resp = REQUEST_ID
        .scope(
            request_id.clone(),
            tracing::Instrument::instrument(
                async {
                    if declared_too_large {
                        return error_response(
                            ErrorCode::PayloadTooLarge,
                            "Request body is too large",
                        );
                    }
                    let (mut parts, body) = req.into_parts();
                    parts.extensions.insert(RequestId(request_id.clone()));
                    parts.extensions.insert(PeerAddr(peer));
                    let body = LimitedBody {
                        inner: body,
                        remaining: max_body,
                        exceeded: exceeded.clone(),
                    };
                    let req = http::Request::from_parts(parts, body);
                    match tokio::time::timeout(limits.request_timeout, service.call(req)).await {
                        Ok(Ok(resp)) if exceeded.load(Ordering::SeqCst) => {
                            drop(resp);
                            error_response(ErrorCode::PayloadTooLarge, "Request body is too large")
                        }
                        Ok(Ok(resp)) => resp,
                        Ok(Err(never)) => match never {},
                        Err(_) => error_response(ErrorCode::Timeout, "Request took too long"),
                    }
                },
                span,
            ),
        )
        .await;

    apply_security_headers(&mut resp);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    tracing::info!(
        target: "kopa::access",
        request_id = %request_id,
        method = %method,
        path = %path,
        version = ?version,
        status = resp.status().as_u16(),
        duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        peer = %peer.ip(),
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_headers_present_and_csp_overridable() {
        let mut resp = Response::new(Default::default());
        apply_security_headers(&mut resp);
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert!(h.contains_key("strict-transport-security"));

        let mut resp = Response::new(Default::default());
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'self'"),
        );
        apply_security_headers(&mut resp);
        assert_eq!(
            resp.headers()["content-security-policy"],
            "default-src 'self'; frame-ancestors 'self'"
        );
        assert_eq!(resp.headers()["x-frame-options"], "SAMEORIGIN");
        let mut resp = Response::new(Default::default());
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'"),
        );
        apply_security_headers(&mut resp);
        assert_eq!(
            resp.headers()["content-security-policy"],
            "default-src 'self'; frame-ancestors 'none'"
        );
    }
}
