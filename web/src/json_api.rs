//! Request filters shared by the JSON APIs of the services (portal, monitor): writes only
//! from the appliance's own origin, and bodies only as JSON of a bounded size.

use crate::ApiError;
use kopa_core::ErrorCode;
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection};

/// Refuses a request whose `Origin` names another site (a request without one, from a
/// non-browser client, passes). With SameSite=Lax cookies this stops cross-site writes.
pub fn same_origin() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("origin")
        .and(warp::host::optional())
        .and_then(
            |origin: Option<String>, host: Option<warp::host::Authority>| async move {
                let fine = match (origin, host) {
                    (None, _) => true,
                    (Some(o), Some(h)) => o == format!("https://{h}"),
                    (Some(_), None) => false,
                };
                if fine {
                    Ok(())
                } else {
                    Err(
                        ApiError::new(ErrorCode::Forbidden, "Cross-site request refused.")
                            .into_rejection(),
                    )
                }
            },
        )
        .untuple_one()
}

/// A JSON body of at most `limit` bytes, as `T`: 415 for another media type (which a
/// cross-site form cannot send), 400 with serde's own message when it does not fit `T`.
pub fn json_body<T: DeserializeOwned + Send + 'static>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .and_then(|ct: Option<String>, bytes: bytes::Bytes| async move {
            let is_json = ct.as_deref().is_some_and(|c| {
                c.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
            if !is_json {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "The body must be application/json.",
                )
                .into_rejection());
            }
            serde_json::from_slice::<T>(&bytes).map_err(|e| {
                ApiError::new(ErrorCode::BadRequest, format!("Invalid JSON body: {e}"))
                    .into_rejection()
            })
        })
}
