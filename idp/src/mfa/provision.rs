//! What an authenticator app is given at enrolment: the `otpauth://` key URI (Google's
//! Key Uri Format) and a QR code of it as inline SVG.

use super::totp::{Algorithm, DIGITS, STEP_SECS};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// Longest account label, in characters: enough for any `name@domain`, and short enough
/// that the QR code stays scannable from a screen.
pub(crate) const MAX_LABEL_CHARS: usize = 128;

/// Why an account label cannot go into a key URI.
pub(crate) fn check_label(label: &str) -> Result<(), &'static str> {
    if label.trim().is_empty() {
        return Err("Account name must not be empty");
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err("Account name is too long");
    }
    if label.chars().any(char::is_control) {
        return Err("Account name must not contain control characters");
    }
    // Apps split the label at its first colon (encoded or not) into issuer and account.
    if label.contains(':') {
        return Err("Account name must not contain ':'");
    }
    Ok(())
}

/// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=…&digits=6&period=30`.
pub(crate) fn otpauth_uri(
    issuer: &str,
    account: &str,
    secret_base32: &str,
    algorithm: Algorithm,
) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret_base32}&issuer={issuer}\
         &algorithm={alg}&digits={DIGITS}&period={STEP_SECS}",
        account = percent_encode(account.trim()),
        alg = algorithm.otpauth_name(),
    )
}

/// RFC 3986 percent-encoding of everything but unreserved characters, over UTF-8 (so
/// `jānis` becomes `j%C4%81nis`); a space is `%20`, never `+`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A QR code of `data` as an `<svg>` element ready to place in HTML (no XML prolog).
/// It carries no text alternative: the page puts it in a labelled element in its language.
pub(crate) fn qr_svg(data: &str) -> Result<String, qrcode::types::QrError> {
    // Level M survives a smudged or glaring screen while keeping the code small.
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .build();
    Ok(match image.find("<svg") {
        Some(start) => image[start..].to_owned(),
        None => image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encodes_label_and_issuer() {
        let uri = otpauth_uri(
            "Kopa",
            "jānis.bērziņš@ventspils.lv",
            "JBSWY3DPEHPK3PXP",
            Algorithm::Sha1,
        );
        assert_eq!(
            uri,
            "otpauth://totp/Kopa:j%C4%81nis.b%C4%93rzi%C5%86%C5%A1%40ventspils.lv\
             ?secret=JBSWY3DPEHPK3PXP&issuer=Kopa&algorithm=SHA1&digits=6&period=30"
        );
        let uri = otpauth_uri("Ogres novads & Co", "ģirts", "AAAA", Algorithm::Sha256);
        assert!(uri.starts_with("otpauth://totp/Ogres%20novads%20%26%20Co:%C4%A3irts?"));
        assert!(uri.contains("&issuer=Ogres%20novads%20%26%20Co&algorithm=SHA256&"));
        assert!(!uri.contains(' ') && !uri.contains('+'));
    }

    #[test]
    fn every_latvian_letter_survives_the_round_trip() {
        let letters = "āčēģīķļņšūž ĀČĒĢĪĶĻŅŠŪŽ";
        let encoded = percent_encode(letters);
        assert!(encoded.is_ascii());
        let mut bytes = Vec::new();
        let mut rest = encoded.as_bytes();
        while let [b'%', h, l, tail @ ..] = rest {
            let hex = std::str::from_utf8(&[*h, *l]).unwrap().to_owned();
            bytes.push(u8::from_str_radix(&hex, 16).unwrap());
            rest = tail;
        }
        assert!(rest.is_empty());
        assert_eq!(String::from_utf8(bytes).unwrap(), letters);
    }

    #[test]
    fn labels_are_checked() {
        assert!(check_label("anna@talsi.lv").is_ok());
        assert!(check_label("Žanis Ķēniņš").is_ok());
        for bad in ["", "   ", "a:b", "a\nb", &"ā".repeat(MAX_LABEL_CHARS + 1)] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn qr_is_an_inline_svg_element() {
        let uri = otpauth_uri("Kopa", "ņina@talsi.lv", "JBSWY3DPEHPK3PXP", Algorithm::Sha1);
        let svg = qr_svg(&uri).unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("<?xml"));
        assert!(svg.contains("viewBox=") && svg.contains("<path"));
        // The same data always gives the same picture; different data a different one.
        assert_eq!(qr_svg(&uri).unwrap(), svg);
        assert_ne!(qr_svg(&format!("{uri}x")).unwrap(), svg);
        assert!(qr_svg(&"x".repeat(5000)).is_err());
    }
}
