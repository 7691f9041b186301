//! Cookies the way Kopa sets them: `__Host-` names (so no subdomain can plant or read
//! them, and they never leave this origin's root path), `Secure`, `HttpOnly`,
//! `SameSite=Lax`; plus parsing of the request's `Cookie` header.

use http::HeaderValue;

/// The value of cookie `name` in a `Cookie` request header.
pub fn get<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// The request's cookies as one `Cookie` header value. Over HTTP/2 a client may send
/// each cookie in a field of its own (RFC 9113 §8.2.3), and browsers do; the fields are
/// joined with "; " as that section says. Reading only the first field loses cookies.
pub fn joined(headers: &http::HeaderMap) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A filter giving the request's cookies (see [`joined`]).
pub fn request_cookies()
-> impl warp::Filter<Extract = (Option<String>,), Error = warp::Rejection> + Clone {
    use warp::Filter as _;
    warp::header::headers_cloned()
        .and_then(|h: http::HeaderMap| async move { Ok::<_, warp::Rejection>(joined(&h)) })
}

/// A `Set-Cookie` value for a `__Host-` cookie; `max_age_secs: None` makes it last for
/// the browser session. Values must be token characters (we only set base64url).
pub fn set(name: &str, value: &str, max_age_secs: Option<u64>) -> Option<HeaderValue> {
    debug_assert!(name.starts_with("__Host-"));
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return None;
    }
    let age = max_age_secs
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}"
    ))
    .ok()
}

/// A `Set-Cookie` value that deletes cookie `name`.
pub fn clear(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_match(a: &str, b: &str) -> bool {
    !a.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_builds() {
        let h = Some("a=1; __Host-kopa-sid=abc_DEF-1; b=\"2\"");
        assert_eq!(get(h, "__Host-kopa-sid"), Some("abc_DEF-1"));
        assert_eq!(get(h, "b"), Some("2"));
        assert_eq!(get(h, "c"), None);
        assert_eq!(get(Some("x="), "x"), None);
        let v = set("__Host-kopa-sid", "abc", Some(60)).unwrap();
        assert_eq!(
            v,
            "__Host-kopa-sid=abc; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert!(set("__Host-x", "a;b", None).is_none());
        assert!(clear("__Host-x").to_str().unwrap().contains("Max-Age=0"));
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("", ""));
    }

    #[test]
    fn cookies_split_over_http2_fields_are_joined() {
        let mut h = http::HeaderMap::new();
        assert_eq!(joined(&h), None);
        h.append(http::header::COOKIE, HeaderValue::from_static("__Host-a=1"));
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("__Host-b=2; c=3"),
        );
        let all = joined(&h);
        assert_eq!(get(all.as_deref(), "__Host-b"), Some("2"));
        assert_eq!(get(all.as_deref(), "__Host-a"), Some("1"));
        assert_eq!(get(all.as_deref(), "c"), Some("3"));
    }
}
