//! The one mapper from errors to HTTP responses: every rejection, whether warp's own or
//! an [`ApiError`] raised by a handler, becomes `{code, message, request_id}` JSON with the
//! status that [`ErrorCode::http_status`] assigns.

use crate::middleware::current_request_id;
use kopa_core::ErrorCode;
use serde::Serialize;
use std::convert::Infallible;
use warp::http::StatusCode;
use warp::reject::Rejection;
use warp::reply::{Reply, Response};

/// An error a handler returns: a code for clients and a message safe to show them.
///
/// What went wrong internally goes to the log at the place it happened, never here.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable, safe to show.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The rejection carrying this error (for `?` in filters).
    pub fn into_rejection(self) -> Rejection {
        warp::reject::custom(self)
    }

    /// The response for this error.
    pub fn into_response(self) -> Response {
        error_response(self.code, &self.message)
    }
}

impl warp::reject::Reject for ApiError {}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: &'a str,
    request_id: String,
}

/// Builds the JSON error response for `code`.
pub fn error_response(code: ErrorCode, message: &str) -> Response {
    let body = ErrorBody {
        code: code.as_str(),
        message,
        request_id: current_request_id().unwrap_or_default(),
    };
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// The `recover` filter installed once over all routes.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(rejection_response(&rejection))
}

fn rejection_response(rejection: &Rejection) -> Response {
    use warp::reject;
    if let Some(e) = rejection.find::<ApiError>() {
        return error_response(e.code, &e.message);
    }
    if rejection.is_not_found() {
        return error_response(ErrorCode::NotFound, "No such resource");
    }
    if rejection.find::<reject::PayloadTooLarge>().is_some() {
        return error_response(ErrorCode::PayloadTooLarge, "Request body is too large");
    }
    if rejection.find::<reject::UnsupportedMediaType>().is_some() {
        return error_response(ErrorCode::UnsupportedMediaType, "Unsupported media type");
    }
    if rejection.find::<reject::LengthRequired>().is_some() {
        return error_response(ErrorCode::BadRequest, "A Content-Length header is required");
    }
    if rejection.find::<reject::InvalidQuery>().is_some() {
        return error_response(ErrorCode::BadRequest, "Invalid query string");
    }
    if rejection.find::<reject::MissingHeader>().is_some()
        || rejection.find::<reject::InvalidHeader>().is_some()
    {
        return error_response(ErrorCode::BadRequest, "Missing or invalid header");
    }
    if rejection.find::<reject::MethodNotAllowed>().is_some() {
        return error_response(
            ErrorCode::MethodNotAllowed,
            "Method not allowed on this resource",
        );
    }
    if rejection
        .find::<warp::filters::body::BodyDeserializeError>()
        .is_some()
    {
        // Not the parser's message: serde's "invalid type: string \"…\"" would echo what
        // the client sent, which may be a secret, into the response.
        return error_response(
            ErrorCode::BadRequest,
            "Invalid request body: not the expected form or JSON",
        );
    }
    tracing::error!("unhandled rejection");
    error_response(ErrorCode::Internal, "Internal error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::Filter;

    async fn body_json(resp: Response) -> serde_json::Value {
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn unknown_route_is_404_json() {
        let routes = warp::path("a").map(|| "a").recover(recover);
        let resp = warp::test::request().path("/nope").reply(&routes).await;
        assert_eq!(resp.status(), 404);
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["code"], "not_found");
    }

    #[tokio::test]
    async fn wrong_method_is_405() {
        let routes = warp::post()
            .and(warp::path("a"))
            .map(|| "a")
            .recover(recover);
        let resp = warp::test::request()
            .method("GET")
            .path("/a")
            .reply(&routes)
            .await;
        assert_eq!(resp.status(), 405);
    }

    #[tokio::test]
    async fn api_error_keeps_code_and_message() {
        let resp = rejection_response(&warp::reject::custom(ApiError::new(
            ErrorCode::Conflict,
            "Case is closed",
        )));
        assert_eq!(resp.status(), 409);
        let v = body_json(resp).await;
        assert_eq!(v["code"], "conflict");
        assert_eq!(v["message"], "Case is closed");
    }

    #[tokio::test]
    async fn bad_json_body_is_400() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct In {
            n: u32,
        }
        let routes = warp::post()
            .and(warp::body::json())
            .map(|_: In| "ok")
            .recover(recover);
        let resp = warp::test::request()
            .method("POST")
            .header("content-type", "application/json")
            .body("{\"n\": \"x\"}")
            .reply(&routes)
            .await;
        assert_eq!(resp.status(), 400);
    }
}
