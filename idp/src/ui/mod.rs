//! The IdP's own pages: server-rendered HTML that works without JavaScript, in Latvian
//! (default) and English, with labels, landmarks and errors announced to screen readers.

pub mod i18n;
pub mod pages;

pub use i18n::{Lang, Text};

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The stylesheet served at `/static/kopa.css` (the CSP forbids inline styles).
pub const STYLESHEET: &str = include_str!("kopa.css");

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(super::escape("Ķegums"), "Ķegums");
    }
}
