//! Case attachments: what may be attached (a few document and image types, checked by
//! their content, not only by what the client declares), and how each is recorded (size,
//! SHA-256, who and when).

use serde::{Deserialize, Serialize};

/// One attachment of a case, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attachment {
    /// Its number within the case (from 1).
    pub n: u64,
    /// The file name as uploaded.
    pub name: String,
    pub media_type: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes, checked again on every download.
    pub sha256: String,
    /// Milliseconds since the epoch.
    pub at: u64,
    pub by: String,
}

/// The media types accepted, and how each one's content begins.
pub const TYPES: [(&str, &[u8]); 6] = [
    ("application/pdf", b"%PDF-"),
    ("image/png", b"\x89PNG\r\n\x1a\n"),
    ("image/jpeg", b"\xff\xd8\xff"),
    ("text/plain", b""),
    ("application/vnd.oasis.opendocument.text", b"PK\x03\x04"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        b"PK\x03\x04",
    ),
];

/// Longest file name, in characters.
pub const NAME_MAX: usize = 200;

/// Why an upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("name: 1-{NAME_MAX} characters, no control characters, slashes or backslashes")]
    Name,
    #[error("the media type {0:?} is not accepted (PDF, PNG, JPEG, plain text, ODT, DOCX)")]
    Type(String),
    #[error("the content is not a {0} file")]
    Content(&'static str),
    #[error("the file is empty")]
    Empty,
}

/// Checks an upload; gives the media type as stored (without parameters, lowercase).
pub fn check(name: &str, declared: &str, bytes: &[u8]) -> Result<&'static str, Refused> {
    let name_ok = !name.trim().is_empty()
        && name.chars().count() <= NAME_MAX
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if !name_ok {
        return Err(Refused::Name);
    }
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((media, magic)) = TYPES.iter().find(|(t, _)| *t == essence) else {
        return Err(Refused::Type(essence));
    };
    if bytes.is_empty() {
        return Err(Refused::Empty);
    }
    let content_ok = if *media == "text/plain" {
        std::str::from_utf8(bytes).is_ok_and(|t| !t.contains('\0'))
    } else {
        bytes.starts_with(magic)
    };
    if content_ok {
        Ok(media)
    } else {
        Err(Refused::Content(media))
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_checked_by_their_content() {
        assert_eq!(
            check("a.pdf", "application/pdf", b"%PDF-1.7\n"),
            Ok("application/pdf")
        );
        assert_eq!(
            check(
                "a.txt",
                "Text/Plain; charset=utf-8",
                "Sveiki, Bērziņ!".as_bytes()
            ),
            Ok("text/plain")
        );
        // A program calling itself a PDF.
        assert_eq!(
            check("a.pdf", "application/pdf", b"MZ\x90\x00"),
            Err(Refused::Content("application/pdf"))
        );
        assert_eq!(
            check("a.txt", "text/plain", b"a\0b"),
            Err(Refused::Content("text/plain"))
        );
        assert!(matches!(
            check("a.exe", "application/x-msdownload", b"MZ"),
            Err(Refused::Type(_))
        ));
        assert_eq!(
            check("../etc/passwd", "text/plain", b"x"),
            Err(Refused::Name)
        );
        assert_eq!(check("a.png", "image/png", b""), Err(Refused::Empty));
        assert_eq!(
            sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
