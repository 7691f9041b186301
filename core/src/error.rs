//! Stable, machine-readable error codes of Kopa's JSON APIs.
//!
//! The HTTP edge maps each code to exactly one status; the code travels in the `code`
//! field of every error body, so clients branch on it rather than on message text.

use serde::{Deserialize, Serialize};

/// What went wrong, as an API client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a parameter is invalid.
    BadRequest,
    /// No valid credentials were presented.
    Unauthenticated,
    /// The caller may not do this (or the record is not theirs: no existence leak).
    Forbidden,
    /// No such route or resource.
    NotFound,
    /// The method is not allowed on this route.
    MethodNotAllowed,
    /// The request body exceeds the configured limit.
    PayloadTooLarge,
    /// The media type of the body is not accepted.
    UnsupportedMediaType,
    /// The state of the resource forbids the change.
    Conflict,
    /// The caller is being throttled.
    TooManyRequests,
    /// The request did not finish within the configured time.
    Timeout,
    /// A remote party answered with something Kopa refused (e.g. fetched metadata that
    /// fails its checks).
    BadGateway,
    /// A dependency (directory, database) is unavailable; retry later.
    Unavailable,
    /// A fault inside Kopa; details are in the log under the request id.
    Internal,
}

impl ErrorCode {
    /// The HTTP status that this code is always answered with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Timeout => 408,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::TooManyRequests => 429,
            Self::Internal => 500,
            Self::BadGateway => 502,
            Self::Unavailable => 503,
        }
    }

    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Conflict => "conflict",
            Self::TooManyRequests => "too_many_requests",
            Self::Timeout => "timeout",
            Self::BadGateway => "bad_gateway",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 13] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Conflict,
        ErrorCode::TooManyRequests,
        ErrorCode::Timeout,
        ErrorCode::BadGateway,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    #[test]
    fn json_name_matches_as_str() {
        for code in ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn client_errors_are_4xx_and_faults_5xx() {
        for code in ALL {
            let status = code.http_status();
            let server_side = matches!(
                code,
                ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::BadGateway
            );
            assert_eq!(status >= 500, server_side, "{code:?} -> {status}");
            assert!((400..600).contains(&status));
        }
    }
}
