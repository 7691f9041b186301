//! SAML metadata: reading a service provider's `EntityDescriptor`, and writing the IdP's
//! own (signed).

use super::dsig::{self, Signer, VerifyKey};
use super::xml::{NS_DSIG, NS_METADATA, Writer};
use kopa_config::NameIdFormat;
use roxmltree::Node;

pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";

/// One endpoint from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub binding: String,
    pub location: String,
    pub response_location: Option<String>,
    pub index: Option<u16>,
    pub is_default: bool,
}

/// What the IdP trusts about a service provider, from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpMetadata {
    pub entity_id: String,
    pub acs: Vec<Endpoint>,
    pub slo: Vec<Endpoint>,
    pub signing_keys: Vec<VerifyKey>,
    pub authn_requests_signed: bool,
    pub want_assertions_signed: bool,
    /// `validUntil`, seconds since the epoch.
    pub valid_until: Option<i64>,
    /// `cacheDuration`, seconds.
    pub cache_duration_secs: Option<u64>,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1"))
}

/// Seconds since the epoch of an `xs:dateTime` in UTC (`…Z`).
pub fn parse_instant(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .filter(|d| d.offset().local_minus_utc() == 0)
        .map(|d| d.timestamp())
}

/// Seconds of a positive `xs:duration` (`P1DT2H`, `PT15M`, `PT30.5S`, `P0Y0M0DT6H0M0S`);
/// a year counts 365 days and a month 30.
pub fn parse_duration(s: &str) -> Option<u64> {
    let rest = s.trim().strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let (_, factor) = allowed.find(|(u, _)| *u == c)?;
            total += num.parse::<f64>().ok()? * factor;
            num.clear();
            any = true;
        }
        num.is_empty().then_some(())
    };
    take(
        days,
        &[
            ('Y', 365.0 * 86_400.0),
            ('M', 30.0 * 86_400.0),
            ('D', 86_400.0),
        ],
    )?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    // Capped at a year: more would only mean "rarely".
    any.then(|| total.min(365.0 * 86_400.0) as u64)
}

/// Parses and checks a service provider's metadata. `now` is seconds since the epoch.
/// With a `trust` key, the document must carry an enveloped signature that it verifies.
pub fn parse_sp(xml: &str, now: i64, trust: Option<&VerifyKey>) -> Result<SpMetadata, String> {
    let doc = dsig::parse(xml).map_err(|e| e.0)?;
    let root = doc.root_element();
    if !root.has_tag_name((NS_METADATA, "EntityDescriptor")) {
        return Err("The metadata is not a SAML 2.0 EntityDescriptor".into());
    }
    if let Some(key) = trust {
        match dsig::verify_enveloped(root, std::slice::from_ref(key)) {
            Ok(true) => {}
            Ok(false) => {
                return Err("The metadata is not signed, but a signature is required".into());
            }
            Err(e) => return Err(format!("The metadata's signature is refused: {}", e.0)),
        }
    }
    let entity_id = root
        .attribute("entityID")
        .filter(|e| !e.is_empty() && e.len() <= 1024)
        .ok_or("The metadata has no usable entityID")?
        .to_owned();
    let valid_until = match root.attribute("validUntil") {
        Some(v) => Some(parse_instant(v).ok_or("validUntil is not a UTC dateTime")?),
        None => None,
    };
    if valid_until.is_some_and(|v| v <= now) {
        return Err("The metadata has expired (validUntil is in the past)".into());
    }
    if trust.is_some() && valid_until.is_none() {
        return Err(
            "Signed metadata must carry validUntil, so that an old copy cannot be replayed forever"
                .into(),
        );
    }
    let cache_duration_secs = match root.attribute("cacheDuration") {
        Some(d) => Some(parse_duration(d).ok_or("cacheDuration is not a duration")?),
        None => None,
    };
    let sp = root
        .children()
        .find(|n| {
            n.has_tag_name((NS_METADATA, "SPSSODescriptor"))
                && n.attribute("protocolSupportEnumeration")
                    .is_some_and(|p| p.split_ascii_whitespace().any(|x| x == PROTOCOL))
        })
        .ok_or("The metadata has no SAML 2.0 SPSSODescriptor")?;
    let endpoints = |name: &str| -> Result<Vec<Endpoint>, String> {
        sp.children()
            .filter(|n| n.has_tag_name((NS_METADATA, name)))
            .map(|n| {
                let location = n
                    .attribute("Location")
                    .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
                    .ok_or_else(|| format!("A {name} has no http(s) Location"))?;
                let index = match n.attribute("index") {
                    Some(i) => Some(
                        i.parse()
                            .map_err(|_| format!("A {name} index is invalid"))?,
                    ),
                    None => None,
                };
                Ok(Endpoint {
                    binding: n.attribute("Binding").unwrap_or_default().to_owned(),
                    location: location.to_owned(),
                    response_location: n.attribute("ResponseLocation").map(str::to_owned),
                    index,
                    is_default: truthy(n.attribute("isDefault")),
                })
            })
            .collect()
    };
    let acs = endpoints("AssertionConsumerService")?;
    if !acs.iter().any(|e| e.binding == BINDING_POST) {
        return Err(
            "The metadata has no AssertionConsumerService with the HTTP-POST binding".into(),
        );
    }
    let slo = endpoints("SingleLogoutService")?;
    let mut signing_keys = Vec::new();
    for kd in sp
        .children()
        .filter(|n| n.has_tag_name((NS_METADATA, "KeyDescriptor")))
    {
        if kd.attribute("use").is_some_and(|u| u != "signing") {
            continue;
        }
        for cert in kd
            .descendants()
            .filter(|n| n.has_tag_name((NS_DSIG, "X509Certificate")))
        {
            signing_keys.push(certificate_key(cert, now)?);
        }
    }
    Ok(SpMetadata {
        entity_id,
        acs,
        slo,
        signing_keys,
        authn_requests_signed: truthy(sp.attribute("AuthnRequestsSigned")),
        want_assertions_signed: truthy(sp.attribute("WantAssertionsSigned")),
        valid_until,
        cache_duration_secs,
    })
}

/// The RSA public key of a metadata certificate, refusing expired and weak ones.
fn certificate_key(node: Node<'_, '_>, now: i64) -> Result<VerifyKey, String> {
    use base64::Engine;
    let b64: String = node
        .text()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "A signing certificate is not valid base64")?;
    certificate_der_key(&der, now)
}

/// The RSA public key of a DER certificate, refusing expired, not yet valid and weak
/// (RSA below 2048 bits, not RSA) ones.
pub fn certificate_der_key(der: &[u8], now: i64) -> Result<VerifyKey, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("A signing certificate is invalid: {e}"))?;
    let subject = cert.subject().to_string();
    let validity = cert.validity();
    if validity.not_after.timestamp() < now {
        return Err(format!("The signing certificate {subject} has expired"));
    }
    if validity.not_before.timestamp() > now {
        return Err(format!(
            "The signing certificate {subject} is not valid yet"
        ));
    }
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits < 2048 {
                return Err(format!(
                    "The signing certificate {subject} has a {bits}-bit RSA key; at least 2048 bits are required"
                ));
            }
        }
        _ => {
            return Err(format!(
                "The signing certificate {subject} does not hold an RSA key"
            ));
        }
    }
    Ok(VerifyKey(
        cert.public_key().subject_public_key.data.to_vec(),
    ))
}

/// The IdP's endpoints and identity, for its metadata.
#[derive(Debug, Clone)]
pub struct IdpEndpoints {
    pub entity_id: String,
    pub sso: String,
    pub slo: String,
}

/// The IdP's metadata, signed, valid for `valid_days`.
pub fn idp_metadata(
    idp: &IdpEndpoints,
    signer: &Signer,
    extra_certificates: &[String],
    id: &str,
    valid_until: &str,
) -> String {
    let mut w = Writer::new();
    w.open(
        "md:EntityDescriptor",
        Some(("md", NS_METADATA)),
        &[
            ("ID", Some(id)),
            ("cacheDuration", Some("PT1H")),
            ("entityID", Some(&idp.entity_id)),
            ("validUntil", Some(valid_until)),
        ],
    );
    let head = w.len();
    w.open(
        "md:IDPSSODescriptor",
        None,
        &[("protocolSupportEnumeration", Some(PROTOCOL))],
    );
    for cert in std::iter::once(signer.certificate_b64())
        .chain(extra_certificates.iter().map(String::as_str))
    {
        w.open("md:KeyDescriptor", None, &[("use", Some("signing"))]);
        w.open("ds:KeyInfo", Some(("ds", NS_DSIG)), &[]);
        w.open("ds:X509Data", None, &[]);
        w.leaf("ds:X509Certificate", None, &[], cert);
        w.close("ds:X509Data");
        w.close("ds:KeyInfo");
        w.close("md:KeyDescriptor");
    }
    for binding in [BINDING_REDIRECT, BINDING_POST] {
        w.leaf(
            "md:SingleLogoutService",
            None,
            &[("Binding", Some(binding)), ("Location", Some(&idp.slo))],
            "",
        );
    }
    for f in [
        NameIdFormat::Persistent,
        NameIdFormat::Transient,
        NameIdFormat::EmailAddress,
        NameIdFormat::Unspecified,
    ] {
        w.leaf("md:NameIDFormat", None, &[], f.urn());
    }
    for binding in [BINDING_REDIRECT, BINDING_POST] {
        w.leaf(
            "md:SingleSignOnService",
            None,
            &[("Binding", Some(binding)), ("Location", Some(&idp.sso))],
            "",
        );
    }
    w.close("md:IDPSSODescriptor");
    w.close("md:EntityDescriptor");
    let doc = w.finish();
    let signature = signer.enveloped(id, &[&doc[..head], &doc[head..]]);
    format!("{}{signature}{}", &doc[..head], &doc[head..])
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_as_metadata_publishers_write_them() {
        assert_eq!(parse_duration("PT1H"), Some(3600));
        assert_eq!(parse_duration("P0Y0M0DT6H0M0S"), Some(6 * 3600));
        assert_eq!(parse_duration("P1DT30M"), Some(86_400 + 1800));
        assert_eq!(parse_duration("PT604800S"), Some(604_800));
        assert_eq!(parse_duration("P1M"), Some(30 * 86_400));
        for bad in [
            "", "P", "PT", "1H", "-PT1H", "PT1X", "P1H", "PT1H2", "PT1.2.3S",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
