//! XML Signature for SAML: enveloped signatures made over the canonical bytes the IdP
//! emits, and verification of signatures the service providers send, with Exclusive XML
//! Canonicalization (without comments) over the parsed tree.
//!
//! Verification is deliberately narrow, against signature wrapping: the signature must be
//! a direct child of the element it signs, which must be the document's root; exactly one
//! `Reference`, pointing at that root's `ID`; only the enveloped-signature and exc-c14n
//! transforms; RSA with SHA-256 or SHA-512 (SHA-1 is refused); and no other element may
//! carry the same ID. The caller then reads values from the very tree that was verified.

use super::xml::{NS_DSIG, Writer, escape_attr, escape_text};
use aws_lc_rs::signature::{self, RsaKeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use roxmltree::{Node, NodeId};

pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";

/// Why a signature was not accepted. The text is safe to show to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SigError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, SigError> {
    Err(SigError(message.into()))
}

/// The IdP's signing key, parsed once.
#[derive(Debug)]
pub struct Signer {
    key: RsaKeyPair,
    /// Base64 DER of the certificate(s) published in `KeyInfo` (the current one first).
    certificate_b64: String,
}

impl Signer {
    /// From the PKCS#8 PEM key and its PEM certificate.
    pub fn new(key_pem: &str, certificate_pem: &str) -> Result<Self, String> {
        let der = pem_body(key_pem, "PRIVATE KEY").ok_or("the SAML key is not PKCS#8 PEM")?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("the SAML key: {e}"))?;
        let cert =
            pem_body(certificate_pem, "CERTIFICATE").ok_or("the SAML certificate is not PEM")?;
        Ok(Self {
            key,
            certificate_b64: B64.encode(cert),
        })
    }

    /// Base64 DER of the signing certificate.
    pub fn certificate_b64(&self) -> &str {
        &self.certificate_b64
    }

    /// RSA-SHA256 over `data`, base64.
    pub fn sign_b64(&self, data: &[u8]) -> String {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        // Signing with a valid key into a buffer of the modulus size cannot fail.
        if self
            .key
            .sign(&signature::RSA_PKCS1_SHA256, &rng, data, &mut sig)
            .is_err()
        {
            tracing::error!("RSA signing failed");
        }
        B64.encode(sig)
    }

    /// The `<ds:Signature>` for the element with `id` whose canonical bytes, without the
    /// signature, are `signed`.
    pub fn enveloped(&self, id: &str, signed: &[&str]) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in signed {
            ctx.update(part.as_bytes());
        }
        let digest = B64.encode(ctx.finish());
        let info = signed_info(id, &digest, true);
        let value = self.sign_b64(info.as_bytes());
        let mut w = Writer::new();
        w.open("ds:Signature", Some(("ds", NS_DSIG)), &[]);
        // Inside the Signature, SignedInfo inherits the ds prefix; alone, it declares it.
        w.raw(&signed_info(id, &digest, false));
        w.leaf("ds:SignatureValue", None, &[], &value);
        w.open("ds:KeyInfo", None, &[]);
        w.open("ds:X509Data", None, &[]);
        w.leaf("ds:X509Certificate", None, &[], &self.certificate_b64);
        w.close("ds:X509Data");
        w.close("ds:KeyInfo");
        w.close("ds:Signature");
        w.finish()
    }
}

fn signed_info(id: &str, digest: &str, standalone: bool) -> String {
    let mut w = Writer::new();
    w.open("ds:SignedInfo", standalone.then_some(("ds", NS_DSIG)), &[]);
    w.leaf(
        "ds:CanonicalizationMethod",
        None,
        &[("Algorithm", Some(EXC_C14N))],
        "",
    );
    w.leaf(
        "ds:SignatureMethod",
        None,
        &[("Algorithm", Some(RSA_SHA256))],
        "",
    );
    let uri = format!("#{id}");
    w.open("ds:Reference", None, &[("URI", Some(&uri))]);
    w.open("ds:Transforms", None, &[]);
    w.leaf("ds:Transform", None, &[("Algorithm", Some(ENVELOPED))], "");
    w.leaf("ds:Transform", None, &[("Algorithm", Some(EXC_C14N))], "");
    w.close("ds:Transforms");
    w.leaf("ds:DigestMethod", None, &[("Algorithm", Some(SHA256))], "");
    w.leaf("ds:DigestValue", None, &[], digest);
    w.close("ds:Reference");
    w.close("ds:SignedInfo");
    w.finish()
}

/// The DER inside the first PEM block labelled `label`.
pub fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64).ok()
}

/// A public key that may verify a service provider's signatures (the RSAPublicKey DER of
/// a certificate from its metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyKey(pub Vec<u8>);

impl VerifyKey {
    /// Verifies `sig` over `data` with the algorithm URI `alg`.
    pub fn verify(&self, alg: &str, data: &[u8], sig: &[u8]) -> Result<(), SigError> {
        let params: &'static signature::RsaParameters = match alg {
            RSA_SHA256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RSA_SHA512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            RSA_SHA1 => return err("The signature uses RSA-SHA1, which is refused"),
            other => return err(format!("Unsupported signature algorithm {other}")),
        };
        UnparsedPublicKey::new(params, &self.0)
            .verify(data, sig)
            .map_err(|_| SigError("The signature does not verify".into()))
    }
}

/// Verifies the enveloped signature of `root` (the document element) with any of `keys`.
/// `Ok(false)` when `root` carries no signature at all.
pub fn verify_enveloped(root: Node<'_, '_>, keys: &[VerifyKey]) -> Result<bool, SigError> {
    let sigs: Vec<Node> = root
        .descendants()
        .filter(|n| n.has_tag_name((NS_DSIG, "Signature")))
        .collect();
    let Some(sig) = sigs.first().copied() else {
        return Ok(false);
    };
    if sigs.len() > 1 || sig.parent_element() != Some(root) {
        return err("Only one signature, directly inside the signed element, is accepted");
    }
    let id = root
        .attribute("ID")
        .ok_or_else(|| SigError("The signed element has no ID".into()))?;
    let same_id = root
        .document()
        .descendants()
        .filter(|n| n.attribute("ID") == Some(id))
        .count();
    if same_id != 1 {
        return err("Several elements carry the signed ID");
    }
    let info = child(sig, "SignedInfo")?;
    let c14n = child(info, "CanonicalizationMethod")?;
    if c14n.attribute("Algorithm") != Some(EXC_C14N) {
        return err("Only exclusive canonicalization (without comments) is accepted");
    }
    let info_prefixes = inclusive_prefixes(c14n);
    let alg = child(info, "SignatureMethod")?
        .attribute("Algorithm")
        .unwrap_or_default();
    let refs: Vec<Node> = info
        .children()
        .filter(|n| n.has_tag_name((NS_DSIG, "Reference")))
        .collect();
    let [reference] = refs[..] else {
        return err("Exactly one signature reference is accepted");
    };
    if reference.attribute("URI") != Some(&format!("#{id}")) {
        return err("The signature does not cover the element it is in");
    }
    let mut prefixes = Vec::new();
    if let Some(transforms) = reference
        .children()
        .find(|n| n.has_tag_name((NS_DSIG, "Transforms")))
    {
        for t in transforms.children().filter(Node::is_element) {
            match t.attribute("Algorithm") {
                Some(ENVELOPED) => {}
                Some(EXC_C14N) => prefixes = inclusive_prefixes(t),
                Some(other) => return err(format!("Unsupported transform {other}")),
                None => return err("A transform names no algorithm"),
            }
        }
    }
    let digest_alg = match child(reference, "DigestMethod")?.attribute("Algorithm") {
        Some(SHA256) => &aws_lc_rs::digest::SHA256,
        Some(SHA512) => &aws_lc_rs::digest::SHA512,
        Some(other) => return err(format!("Unsupported digest algorithm {other}")),
        None => return err("The digest names no algorithm"),
    };
    let expected = decode_b64(child(reference, "DigestValue")?.text().unwrap_or_default())?;
    let mut canonical = String::new();
    canonicalize(root, Some(sig.id()), &prefixes, &mut canonical);
    let actual = aws_lc_rs::digest::digest(digest_alg, canonical.as_bytes());
    if actual.as_ref() != expected.as_slice() {
        return err("The signed content was changed (digest mismatch)");
    }
    let value = decode_b64(child(sig, "SignatureValue")?.text().unwrap_or_default())?;
    let mut info_bytes = String::new();
    canonicalize(info, None, &info_prefixes, &mut info_bytes);
    let mut last = SigError("No signing certificate is known for the sender".into());
    for key in keys {
        match key.verify(alg, info_bytes.as_bytes(), &value) {
            Ok(()) => return Ok(true),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Result<Node<'a, 'i>, SigError> {
    node.children()
        .find(|n| n.has_tag_name((NS_DSIG, name)))
        .ok_or_else(|| SigError(format!("The signature has no {name}")))
}

fn decode_b64(text: &str) -> Result<Vec<u8>, SigError> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(clean)
        .map_err(|_| SigError("A signature value is not valid base64".into()))
}

fn inclusive_prefixes(method: Node<'_, '_>) -> Vec<String> {
    method
        .children()
        .find(|n| {
            n.tag_name().name() == "InclusiveNamespaces"
                && n.tag_name().namespace() == Some(EXC_C14N)
        })
        .and_then(|n| n.attribute("PrefixList"))
        .map(|l| {
            l.split_ascii_whitespace()
                .map(|p| {
                    if p == "#default" {
                        String::new()
                    } else {
                        p.to_owned()
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The qualified name of an element as written in the input.
fn qname<'i>(node: Node<'_, 'i>) -> &'i str {
    let text = node.document().input_text();
    let start = node.range().start + 1;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    &rest[..end]
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(p, _)| p)
}

/// Exclusive XML Canonicalization 1.0 (without comments) of `node`, leaving out the
/// subtree `exclude` (the enveloped signature).
pub fn canonicalize(
    node: Node<'_, '_>,
    exclude: Option<NodeId>,
    prefixes: &[String],
    out: &mut String,
) {
    let mut rendered: Vec<(String, String)> = Vec::new();
    element(node, exclude, prefixes, &mut rendered, out);
}

fn element(
    node: Node<'_, '_>,
    exclude: Option<NodeId>,
    inclusive: &[String],
    rendered: &mut Vec<(String, String)>,
    out: &mut String,
) {
    let name = qname(node);
    let text = node.document().input_text();
    // Prefixes visibly used: the element's own and its prefixed attributes', plus the
    // inclusive list.
    let mut used: Vec<&str> = vec![prefix_of(name)];
    for a in node.attributes() {
        if a.namespace().is_some() {
            used.push(prefix_of(&text[a.range_qname()]));
        }
    }
    for p in inclusive {
        if node
            .lookup_namespace_uri(Some(p.as_str()).filter(|p| !p.is_empty()))
            .is_some()
        {
            used.push(p);
        }
    }
    used.sort_unstable();
    used.dedup();
    let mark = rendered.len();
    let mut decls: Vec<(String, String)> = Vec::new();
    for p in used {
        let uri = node
            .lookup_namespace_uri(Some(p).filter(|p| !p.is_empty()))
            .unwrap_or("");
        let current = rendered
            .iter()
            .rev()
            .find(|(q, _)| q == p)
            .map(|(_, u)| u.as_str());
        let needed = match current {
            Some(u) => u != uri,
            // An empty default namespace needs no declaration unless one was rendered.
            None => !(p.is_empty() && uri.is_empty()),
        };
        if needed {
            decls.push((p.to_owned(), uri.to_owned()));
        }
    }
    out.push('<');
    out.push_str(name);
    for (p, uri) in &decls {
        out.push_str(if p.is_empty() { " xmlns" } else { " xmlns:" });
        out.push_str(p);
        out.push_str("=\"");
        escape_attr(uri, out);
        out.push('"');
    }
    rendered.extend(decls);
    let mut attrs: Vec<(&str, &str, &str, &str)> = node
        .attributes()
        .map(|a| {
            (
                a.namespace().unwrap_or(""),
                a.name(),
                &text[a.range_qname()],
                a.value(),
            )
        })
        .collect();
    attrs.sort_unstable_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
    for (_, _, q, v) in attrs {
        out.push(' ');
        out.push_str(q);
        out.push_str("=\"");
        escape_attr(v, out);
        out.push('"');
    }
    out.push('>');
    for c in node.children() {
        if Some(c.id()) == exclude {
            continue;
        }
        match c.node_type() {
            roxmltree::NodeType::Element => element(c, exclude, inclusive, rendered, out),
            roxmltree::NodeType::Text => escape_text(c.text().unwrap_or_default(), out),
            roxmltree::NodeType::PI => {
                if let Some(pi) = c.pi() {
                    out.push_str("<?");
                    out.push_str(pi.target);
                    if let Some(v) = pi.value {
                        out.push(' ');
                        out.push_str(v);
                    }
                    out.push_str("?>");
                }
            }
            _ => {}
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
    rendered.truncate(mark);
}

/// Parses untrusted XML: no DTD (so no entity can expand), a cap on nodes.
pub fn parse(xml: &str) -> Result<roxmltree::Document<'_>, SigError> {
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return err("XML with a DOCTYPE or entity declarations is refused");
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 20_000,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| SigError(format!("The XML is malformed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_of_a_nested_subtree() {
        let xml = "<?xml version=\"1.0\"?>\n<r:Root xmlns:r=\"urn:r\" xmlns:u=\"urn:unused\" \
                   b=\"2\" a='1 &amp; &lt;'><!-- c --><r:Child   z=\"&#x9;\" \
                   xmlns:x=\"urn:x\" x:y=\"v\">t &gt; &#xD;</r:Child><e/></r:Root>";
        let doc = parse(xml).unwrap();
        let mut out = String::new();
        canonicalize(doc.root_element(), None, &[], &mut out);
        assert_eq!(
            out,
            "<r:Root xmlns:r=\"urn:r\" a=\"1 &amp; &lt;\" b=\"2\"><r:Child xmlns:x=\"urn:x\" \
             z=\"&#x9;\" x:y=\"v\">t &gt; &#xD;</r:Child><e></e></r:Root>"
        );
    }

    #[test]
    fn dtds_are_refused_before_parsing() {
        let bomb = "<!DOCTYPE l [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><l>&b;</l>";
        assert!(parse(bomb).unwrap_err().0.contains("DOCTYPE"));
    }
}
