//! Incoming SAML protocol messages: the HTTP-Redirect binding (raw DEFLATE + base64 in
//! the query, signature over the raw query octets as Bindings §3.4.4.1 requires) and the
//! HTTP-POST binding (base64 in a form field, enveloped XML signature), then the
//! `AuthnRequest` and `LogoutRequest` elements themselves.

use super::dsig::{self, SigError};
use super::metadata::parse_instant;
use super::xml::{NS_ASSERTION, NS_PROTOCOL};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use roxmltree::Node;

/// Largest encoded message accepted.
pub const MAX_ENCODED: usize = 64 * 1024;
/// Largest message after inflating (a DEFLATE bomb stops here).
pub const MAX_XML: usize = 128 * 1024;
/// Largest RelayState accepted. The bindings say 80 bytes; real service providers send
/// return URLs, so more is allowed, within reason.
pub const MAX_RELAY_STATE: usize = 1024;

/// A protocol message as it arrived.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The decoded XML.
    pub xml: String,
    /// `RelayState`, returned unchanged.
    pub relay_state: Option<String>,
    /// The query signature of the Redirect binding.
    pub query_signature: Option<QuerySignature>,
    /// Whether it came by HTTP-POST.
    pub post: bool,
}

/// A Redirect-binding signature: the octets signed, the algorithm, the signature.
#[derive(Debug, Clone)]
pub struct QuerySignature {
    pub signed: String,
    pub alg: String,
    pub signature: Vec<u8>,
}

fn bad(message: impl Into<String>) -> SigError {
    SigError(message.into())
}

fn decode_component(raw: &str) -> String {
    url::form_urlencoded::parse(format!("v={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Reads `SAMLRequest`/`SAMLResponse` (`field`) from a Redirect-binding query string.
pub fn from_redirect(raw_query: &str, field: &str) -> Result<Incoming, SigError> {
    let mut message = None;
    let mut relay = None;
    let mut sig_alg = None;
    let mut signature = None;
    for part in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let slot = match decode_component(key).as_str() {
            k if k == field => &mut message,
            "RelayState" => &mut relay,
            "SigAlg" => &mut sig_alg,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(bad(format!(
                "Parameter {} is repeated",
                decode_component(key)
            )));
        }
    }
    let raw_message = message.ok_or_else(|| bad(format!("The request has no {field}")))?;
    if raw_message.len() > MAX_ENCODED {
        return Err(bad("The SAML message is too large"));
    }
    let deflated = B64
        .decode(decode_component(raw_message).replace(['\r', '\n', ' '], ""))
        .map_err(|_| bad("The SAML message is not valid base64"))?;
    let inflated =
        miniz_oxide::inflate::decompress_to_vec_with_limit(&deflated, MAX_XML).map_err(|_| {
            bad("The SAML message is not valid DEFLATE data, or too large once inflated")
        })?;
    let xml = String::from_utf8(inflated).map_err(|_| bad("The SAML message is not UTF-8"))?;
    let relay_state = relay.map(decode_component);
    check_relay_state(relay_state.as_deref())?;
    let query_signature = match (sig_alg, signature) {
        (None, None) => None,
        (Some(alg), Some(sig)) => {
            let mut signed = format!("{field}={raw_message}");
            if let Some(r) = relay {
                signed.push_str("&RelayState=");
                signed.push_str(r);
            }
            signed.push_str("&SigAlg=");
            signed.push_str(alg);
            let signature = B64
                .decode(decode_component(sig).replace(['\r', '\n', ' '], ""))
                .map_err(|_| bad("The Signature parameter is not valid base64"))?;
            Some(QuerySignature {
                signed,
                alg: decode_component(alg),
                signature,
            })
        }
        _ => return Err(bad("SigAlg and Signature must come together")),
    };
    Ok(Incoming {
        xml,
        relay_state,
        query_signature,
        post: false,
    })
}

/// Reads a POST-binding message from the form's `field` and `RelayState` values.
pub fn from_post(message: Option<&str>, relay_state: Option<&str>) -> Result<Incoming, SigError> {
    let message = message.ok_or_else(|| bad("The form has no SAML message"))?;
    if message.len() > MAX_ENCODED {
        return Err(bad("The SAML message is too large"));
    }
    let clean: String = message.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = B64
        .decode(clean)
        .map_err(|_| bad("The SAML message is not valid base64"))?;
    let xml = String::from_utf8(bytes).map_err(|_| bad("The SAML message is not UTF-8"))?;
    check_relay_state(relay_state)?;
    Ok(Incoming {
        xml,
        relay_state: relay_state.map(str::to_owned),
        query_signature: None,
        post: true,
    })
}

fn check_relay_state(relay: Option<&str>) -> Result<(), SigError> {
    if relay.is_some_and(|r| r.len() > MAX_RELAY_STATE) {
        return Err(bad(format!(
            "RelayState is longer than {MAX_RELAY_STATE} bytes"
        )));
    }
    Ok(())
}

/// Fields every request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub id: String,
    pub issuer: String,
    /// Seconds since the epoch.
    pub issue_instant: i64,
    pub destination: Option<String>,
}

/// An `AuthnRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequest {
    pub common: Common,
    pub acs_url: Option<String>,
    pub acs_index: Option<u16>,
    pub protocol_binding: Option<String>,
    pub name_id_format: Option<String>,
    pub force_authn: bool,
    pub is_passive: bool,
}

/// A `LogoutRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub common: Common,
    pub name_id: String,
    pub session_indexes: Vec<String>,
}

/// A `LogoutResponse` (from a service provider the IdP told to log out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    pub common: Common,
    pub in_response_to: Option<String>,
    /// The top-level `StatusCode` value.
    pub status: String,
}

fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1"))
}

/// The fields shared by requests, from the root element.
pub fn common(root: Node<'_, '_>) -> Result<Common, SigError> {
    if root.attribute("Version") != Some("2.0") {
        return Err(bad("Only SAML 2.0 requests are accepted"));
    }
    let id = root
        .attribute("ID")
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .ok_or_else(|| bad("The request has no usable ID"))?
        .to_owned();
    let issue_instant = root
        .attribute("IssueInstant")
        .and_then(parse_instant)
        .ok_or_else(|| bad("The request's IssueInstant is missing or not a UTC dateTime"))?;
    let issuer = root
        .children()
        .find(|n| n.has_tag_name((NS_ASSERTION, "Issuer")))
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("The request names no Issuer"))?
        .to_owned();
    Ok(Common {
        id,
        issuer,
        issue_instant,
        destination: root.attribute("Destination").map(str::to_owned),
    })
}

/// Reads an `AuthnRequest` from its parsed document.
pub fn authn_request(root: Node<'_, '_>) -> Result<AuthnRequest, SigError> {
    if !root.has_tag_name((NS_PROTOCOL, "AuthnRequest")) {
        return Err(bad("The message is not an AuthnRequest"));
    }
    let common = common(root)?;
    let acs_index = match root.attribute("AssertionConsumerServiceIndex") {
        Some(i) => Some(
            i.parse()
                .map_err(|_| bad("AssertionConsumerServiceIndex is not a number"))?,
        ),
        None => None,
    };
    let name_id_format = root
        .children()
        .find(|n| n.has_tag_name((NS_PROTOCOL, "NameIDPolicy")))
        .and_then(|n| n.attribute("Format"))
        .map(str::to_owned);
    Ok(AuthnRequest {
        common,
        acs_url: root
            .attribute("AssertionConsumerServiceURL")
            .map(str::to_owned),
        acs_index,
        protocol_binding: root.attribute("ProtocolBinding").map(str::to_owned),
        name_id_format,
        force_authn: is_true(root.attribute("ForceAuthn")),
        is_passive: is_true(root.attribute("IsPassive")),
    })
}

/// Reads a `LogoutRequest` from its parsed document.
pub fn logout_request(root: Node<'_, '_>) -> Result<LogoutRequest, SigError> {
    if !root.has_tag_name((NS_PROTOCOL, "LogoutRequest")) {
        return Err(bad("The message is not a LogoutRequest"));
    }
    let common = common(root)?;
    let name_id = root
        .children()
        .find(|n| n.has_tag_name((NS_ASSERTION, "NameID")))
        .and_then(|n| n.text())
        .map(str::trim)
        .ok_or_else(|| bad("The LogoutRequest has no NameID"))?
        .to_owned();
    let session_indexes = root
        .children()
        .filter(|n| n.has_tag_name((NS_PROTOCOL, "SessionIndex")))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect();
    Ok(LogoutRequest {
        common,
        name_id,
        session_indexes,
    })
}

/// Reads a `LogoutResponse` from its parsed document.
pub fn logout_response(root: Node<'_, '_>) -> Result<LogoutResponse, SigError> {
    if !root.has_tag_name((NS_PROTOCOL, "LogoutResponse")) {
        return Err(bad("The message is not a LogoutResponse"));
    }
    let status = root
        .children()
        .find(|n| n.has_tag_name((NS_PROTOCOL, "Status")))
        .and_then(|s| {
            s.children()
                .find(|n| n.has_tag_name((NS_PROTOCOL, "StatusCode")))
        })
        .and_then(|c| c.attribute("Value"))
        .ok_or_else(|| bad("The LogoutResponse has no StatusCode"))?
        .to_owned();
    Ok(LogoutResponse {
        common: common(root)?,
        in_response_to: root.attribute("InResponseTo").map(str::to_owned),
        status,
    })
}

/// Parses untrusted message XML (see [`dsig::parse`]).
pub fn parse(xml: &str) -> Result<roxmltree::Document<'_>, SigError> {
    dsig::parse(xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate_b64(xml: &str) -> String {
        let d = miniz_oxide::deflate::compress_to_vec(xml.as_bytes(), 6);
        url::form_urlencoded::byte_serialize(B64.encode(d).as_bytes()).collect()
    }

    #[test]
    fn redirect_keeps_the_raw_octets_for_the_signature() {
        let q = format!(
            "SAMLRequest={}&RelayState=a%7Eb%2A&SigAlg=x%3Ay&Signature=AAAA",
            deflate_b64("<x/>")
        );
        let inc = from_redirect(&q, "SAMLRequest").unwrap();
        assert_eq!(inc.xml, "<x/>");
        assert_eq!(inc.relay_state.as_deref(), Some("a~b*"));
        let s = inc.query_signature.unwrap();
        assert!(s.signed.ends_with("&RelayState=a%7Eb%2A&SigAlg=x%3Ay"));
        assert_eq!(s.alg, "x:y");
    }

    #[test]
    fn bad_redirects_are_refused() {
        assert!(from_redirect("RelayState=x", "SAMLRequest").is_err());
        let q = format!("SAMLRequest={0}&SAMLRequest={0}", deflate_b64("<x/>"));
        assert!(
            from_redirect(&q, "SAMLRequest")
                .unwrap_err()
                .0
                .contains("repeated")
        );
        assert!(from_redirect("SAMLRequest=%%%", "SAMLRequest").is_err());
        let bomb = "<a>".to_owned() + &"x".repeat(MAX_XML + 10) + "</a>";
        let q = format!("SAMLRequest={}", deflate_b64(&bomb));
        assert!(from_redirect(&q, "SAMLRequest").is_err());
        let q = format!("SAMLRequest={}&SigAlg=a", deflate_b64("<x/>"));
        assert!(from_redirect(&q, "SAMLRequest").is_err());
    }
}
