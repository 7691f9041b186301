//! The IdP's SAML `Response`: an `Assertion` (Subject with NameID and bearer
//! confirmation, Conditions with the audience, AuthnStatement, released attributes), or
//! an error status. Signed as the service provider is configured: the Assertion, the
//! Response, or both (Assertion first, since the Response's digest covers it).

use super::dsig::Signer;
use super::xml::{NS_ASSERTION, NS_PROTOCOL, Writer};
use kopa_config::SamlSigning;

pub const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
pub const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
pub const NO_PASSIVE: &str = "urn:oasis:names:tc:SAML:2.0:status:NoPassive";
pub const REQUEST_DENIED: &str = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied";
pub const INVALID_NAME_ID_POLICY: &str = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy";
pub const AUTHN_FAILED: &str = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed";
pub const PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const URI_FORMAT: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
/// Password over TLS.
pub const PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
/// Password plus a second factor (REFEDS MFA profile).
pub const REFEDS_MFA: &str = "https://refeds.org/profile/mfa";

/// `2026-11-27T08:00:00Z`.
pub fn instant(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A fresh message ID (an NCName: starts with `_`).
pub fn new_id() -> String {
    let mut bytes = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let mut id = String::with_capacity(41);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Who the Response is for, and about what request.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub idp_entity: &'a str,
    pub sp_entity: &'a str,
    pub acs: &'a str,
    pub in_response_to: Option<&'a str>,
    pub now: i64,
}

/// The signed-in user's assertion content.
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    pub name_id: &'a str,
    pub name_id_format: &'a str,
    pub session_index: &'a str,
    pub authn_instant: i64,
    pub authn_context: &'a str,
    pub not_on_or_after: i64,
    pub not_before: i64,
    /// Attributes released, in order; those without values are left out.
    pub attributes: Vec<Released<'a>>,
}

/// One released attribute.
#[derive(Debug, Clone)]
pub struct Released<'a> {
    pub name: &'a str,
    /// `NameFormat`; the URI format when unset.
    pub name_format: Option<&'a str>,
    pub friendly_name: Option<&'a str>,
    pub values: Vec<String>,
}

fn issuer(w: &mut Writer, idp: &str, declare: bool) {
    w.leaf(
        "saml:Issuer",
        declare.then_some(("saml", NS_ASSERTION)),
        &[],
        idp,
    );
}

/// `xml` with an enveloped signature of its root (`id`) inserted at byte `at` (after the
/// Issuer), or unchanged when not `sign`.
pub(super) fn enveloped(signer: &Signer, xml: String, at: usize, id: &str, sign: bool) -> String {
    if !sign {
        return xml;
    }
    let (a, b) = xml.split_at(at);
    let signature = signer.enveloped(id, &[a, b]);
    format!("{a}{signature}{b}")
}

fn assertion(signer: &Signer, env: &Envelope<'_>, st: &Statement<'_>, sign: bool) -> String {
    let id = new_id();
    let now = instant(env.now);
    let expiry = instant(st.not_on_or_after);
    let mut w = Writer::new();
    w.open(
        "saml:Assertion",
        Some(("saml", NS_ASSERTION)),
        &[
            ("ID", Some(&id)),
            ("IssueInstant", Some(&now)),
            ("Version", Some("2.0")),
        ],
    );
    issuer(&mut w, env.idp_entity, false);
    let head = w.len();
    w.open("saml:Subject", None, &[]);
    w.leaf(
        "saml:NameID",
        None,
        &[
            ("Format", Some(st.name_id_format)),
            ("SPNameQualifier", Some(env.sp_entity)),
        ],
        st.name_id,
    );
    w.open(
        "saml:SubjectConfirmation",
        None,
        &[("Method", Some(BEARER))],
    );
    w.leaf(
        "saml:SubjectConfirmationData",
        None,
        &[
            ("InResponseTo", env.in_response_to),
            ("NotOnOrAfter", Some(&expiry)),
            ("Recipient", Some(env.acs)),
        ],
        "",
    );
    w.close("saml:SubjectConfirmation");
    w.close("saml:Subject");
    w.open(
        "saml:Conditions",
        None,
        &[
            ("NotBefore", Some(&instant(st.not_before))),
            ("NotOnOrAfter", Some(&expiry)),
        ],
    );
    w.open("saml:AudienceRestriction", None, &[]);
    w.leaf("saml:Audience", None, &[], env.sp_entity);
    w.close("saml:AudienceRestriction");
    w.close("saml:Conditions");
    w.open(
        "saml:AuthnStatement",
        None,
        &[
            ("AuthnInstant", Some(&instant(st.authn_instant))),
            ("SessionIndex", Some(st.session_index)),
        ],
    );
    w.open("saml:AuthnContext", None, &[]);
    w.leaf("saml:AuthnContextClassRef", None, &[], st.authn_context);
    w.close("saml:AuthnContext");
    w.close("saml:AuthnStatement");
    let released: Vec<_> = st
        .attributes
        .iter()
        .filter(|a| !a.values.is_empty())
        .collect();
    if !released.is_empty() {
        w.open("saml:AttributeStatement", None, &[]);
        for a in released {
            w.open(
                "saml:Attribute",
                None,
                &[
                    ("FriendlyName", a.friendly_name),
                    ("Name", Some(a.name)),
                    ("NameFormat", Some(a.name_format.unwrap_or(URI_FORMAT))),
                ],
            );
            for v in &a.values {
                w.leaf("saml:AttributeValue", None, &[], v);
            }
            w.close("saml:Attribute");
        }
        w.close("saml:AttributeStatement");
    }
    w.close("saml:Assertion");
    enveloped(signer, w.finish(), head, &id, sign)
}

fn response(
    signer: &Signer,
    env: &Envelope<'_>,
    status: (&str, Option<&str>, Option<&str>),
    body: &str,
    sign: bool,
) -> String {
    status_message("samlp:Response", signer, env, status, body, sign)
}

/// A protocol response element `root` (`samlp:Response`, `samlp:LogoutResponse`) with
/// Issuer, optional enveloped signature, Status and `body`.
fn status_message(
    root: &str,
    signer: &Signer,
    env: &Envelope<'_>,
    status: (&str, Option<&str>, Option<&str>),
    body: &str,
    sign: bool,
) -> String {
    let id = new_id();
    let mut w = Writer::new();
    w.open(
        root,
        Some(("samlp", NS_PROTOCOL)),
        &[
            ("Destination", Some(env.acs)),
            ("ID", Some(&id)),
            ("InResponseTo", env.in_response_to),
            ("IssueInstant", Some(&instant(env.now))),
            ("Version", Some("2.0")),
        ],
    );
    issuer(&mut w, env.idp_entity, true);
    let head = w.len();
    status_element(&mut w, status);
    w.raw(body);
    w.close(root);
    enveloped(signer, w.finish(), head, &id, sign)
}

/// `<samlp:Status>` with a top-level code, an optional second-level one and a message.
pub fn status_element(w: &mut Writer, (top, second, message): (&str, Option<&str>, Option<&str>)) {
    w.open("samlp:Status", None, &[]);
    w.open("samlp:StatusCode", None, &[("Value", Some(top))]);
    if let Some(second) = second {
        w.leaf("samlp:StatusCode", None, &[("Value", Some(second))], "");
    }
    w.close("samlp:StatusCode");
    if let Some(m) = message {
        w.leaf("samlp:StatusMessage", None, &[], m);
    }
    w.close("samlp:Status");
}

/// A successful Response carrying the assertion, signed as `signing` says.
pub fn success(
    signer: &Signer,
    env: &Envelope<'_>,
    st: &Statement<'_>,
    signing: SamlSigning,
) -> String {
    let sign_assertion = matches!(signing, SamlSigning::Assertion | SamlSigning::Both);
    let sign_response = matches!(signing, SamlSigning::Response | SamlSigning::Both);
    let body = assertion(signer, env, st, sign_assertion);
    response(signer, env, (SUCCESS, None, None), &body, sign_response)
}

/// An error Response (always signed, so the service provider can trust the status).
pub fn failure(
    signer: &Signer,
    env: &Envelope<'_>,
    top: &str,
    second: Option<&str>,
    message: &str,
) -> String {
    response(signer, env, (top, second, Some(message)), "", true)
}

/// A `LogoutResponse` to `env.acs` (the SP's logout endpoint) answering
/// `env.in_response_to`; enveloped-signed when `sign` (HTTP-POST), unsigned when the
/// Redirect binding signs the query instead.
pub fn logout_response(
    signer: &Signer,
    env: &Envelope<'_>,
    status: (&str, Option<&str>, Option<&str>),
    sign: bool,
) -> String {
    status_message("samlp:LogoutResponse", signer, env, status, "", sign)
}
