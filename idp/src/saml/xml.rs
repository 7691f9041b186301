//! XML the IdP writes, emitted directly in Exclusive XML Canonicalization form (no
//! whitespace between elements, attributes in canonical order, `<a></a>` for empty
//! elements, each namespace declared on the first element that uses it). What is signed
//! is therefore exactly what is sent: a digest over the emitted bytes equals the digest a
//! verifier computes after canonicalizing them, and no re-serialisation ever happens.
//!
//! Every text and attribute value passes through the escapes below; characters XML 1.0
//! cannot carry (most C0 controls) become U+FFFD.

/// SAML 2.0 protocol namespace.
pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// SAML 2.0 assertion namespace.
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML 2.0 metadata namespace.
pub const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// XML Signature namespace.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

/// Escapes text content as canonical XML writes it.
pub fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// Escapes an attribute value as canonical XML writes it.
pub fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

/// A canonical XML writer. Attributes passed to [`Writer::open`] are unprefixed (plus
/// `xmlns:*` declarations); the writer puts them in canonical order.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// An empty document.
    pub fn new() -> Self {
        Self {
            out: String::with_capacity(4096),
        }
    }

    /// Opens `<name ...>`. `ns` is a namespace declaration to put on this element
    /// (`(prefix, uri)`), `attrs` its unprefixed attributes; `None` values are left out.
    pub fn open(&mut self, name: &str, ns: Option<(&str, &str)>, attrs: &[(&str, Option<&str>)]) {
        self.out.push('<');
        self.out.push_str(name);
        if let Some((prefix, uri)) = ns {
            self.out.push_str(" xmlns:");
            self.out.push_str(prefix);
            self.out.push_str("=\"");
            escape_attr(uri, &mut self.out);
            self.out.push('"');
        }
        let mut sorted: Vec<(&str, &str)> = attrs
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (k, v) in sorted {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_attr(v, &mut self.out);
            self.out.push('"');
        }
        self.out.push('>');
    }

    /// Closes `</name>`.
    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// Writes escaped text.
    pub fn text(&mut self, text: &str) {
        escape_text(text, &mut self.out);
    }

    /// `<name attrs>text</name>`.
    pub fn leaf(
        &mut self,
        name: &str,
        ns: Option<(&str, &str)>,
        attrs: &[(&str, Option<&str>)],
        text: &str,
    ) {
        self.open(name, ns, attrs);
        self.text(text);
        self.close(name);
    }

    /// Appends bytes that are already canonical XML (a signature, a signed child).
    pub fn raw(&mut self, xml: &str) {
        self.out.push_str(xml);
    }

    /// The bytes written so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// Length written so far, to split the document around a signature.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_attributes_sorted() {
        let mut w = Writer::new();
        w.open(
            "saml:A",
            Some(("saml", NS_ASSERTION)),
            &[("Version", Some("2.0")), ("ID", Some("_1")), ("X", None)],
        );
        w.leaf(
            "saml:B",
            None,
            &[("Name", Some("a\"<&\n"))],
            "Bērziņa & <Co> \r\u{1}",
        );
        w.close("saml:A");
        assert_eq!(
            w.finish(),
            "<saml:A xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_1\" \
             Version=\"2.0\"><saml:B Name=\"a&quot;&lt;&amp;&#xA;\">Bērziņa &amp; &lt;Co&gt; \
             &#xD;\u{FFFD}</saml:B></saml:A>"
        );
    }
}
