//! A sealed record of the chain: its canonical bytes and `hash = SHA-256(prev_hash ‖ canonical)`.
//!
//! The canonical form is written here by hand, key by key, instead of by serde, so that
//! neither a reordered struct field nor a serde_json feature can silently change it: an
//! external verifier can rebuild it from `docs/audit-events.md`.

use super::event::AuditEvent;
use aws_lc_rs::digest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A SHA-256 value of the chain, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of record 1.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ChainHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not 64 hex digits"))
    }
}

/// One record of the audit chain, as stored in `audit_records` under its `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// When it was committed, in milliseconds since the Unix epoch (UTC). Never decreases
    /// along the chain, even if the wall clock steps back.
    pub time_ms: u64,
    /// What happened.
    pub event: AuditEvent,
    /// `hash` of the record before; 32 zero bytes for record 1.
    pub prev_hash: ChainHash,
    /// `SHA-256(prev_hash ‖ canonical_bytes())`.
    pub hash: ChainHash,
}

impl AuditRecord {
    /// Builds record `seq` after `prev_hash` and computes its hash.
    pub(crate) fn seal(seq: u64, time_ms: u64, event: AuditEvent, prev_hash: ChainHash) -> Self {
        let mut record = Self {
            seq,
            time_ms,
            event,
            prev_hash,
            hash: ChainHash::GENESIS,
        };
        record.hash = record.compute_hash();
        record
    }

    /// The canonical serialisation the hash covers: every field but `hash`, as JSON with
    /// keys in byte order at every level, no whitespace, absent values as `null`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let e = &self.event;
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"event\":{\"action\":");
        json_str(&mut out, &e.action);
        out.extend_from_slice(b",\"category\":");
        json_str(&mut out, e.category.as_str());
        out.extend_from_slice(b",\"client\":");
        json_opt(&mut out, e.client.as_deref());
        out.extend_from_slice(b",\"details\":{");
        for (i, (k, v)) in e.details.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(&mut out, k);
            out.push(b':');
            json_str(&mut out, v);
        }
        out.extend_from_slice(b"},\"method\":");
        json_opt(&mut out, e.method.as_deref());
        out.extend_from_slice(b",\"outcome\":");
        json_str(&mut out, e.outcome.as_str());
        out.extend_from_slice(b",\"reason\":");
        json_opt(&mut out, e.reason.as_deref());
        out.extend_from_slice(b",\"session_id\":");
        json_opt(&mut out, e.session_id.as_deref());
        out.extend_from_slice(b",\"source_ip\":");
        json_opt(&mut out, e.source_ip.map(|ip| ip.to_string()).as_deref());
        out.extend_from_slice(b",\"tenant\":");
        json_opt(&mut out, e.tenant.as_ref().map(|t| t.as_str()));
        out.extend_from_slice(b",\"user_agent\":");
        json_opt(&mut out, e.user_agent.as_deref());
        out.extend_from_slice(b",\"user_resolved\":");
        json_opt(&mut out, e.user_resolved.as_deref());
        out.extend_from_slice(b",\"user_typed\":");
        json_opt(&mut out, e.user_typed.as_deref());
        out.extend_from_slice(b"},\"prev_hash\":");
        json_str(&mut out, &self.prev_hash.to_hex());
        out.extend_from_slice(
            format!(",\"seq\":{},\"time_ms\":{}}}", self.seq, self.time_ms).as_bytes(),
        );
        out
    }

    /// `SHA-256(prev_hash ‖ canonical_bytes())`, recomputed from the content.
    pub fn compute_hash(&self) -> ChainHash {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.prev_hash.0);
        ctx.update(&self.canonical_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        ChainHash(out)
    }
}

fn json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string: UTF-8 as is, escaping only `"`, `\` and control characters (`\b \f \n
/// \r \t` in short form, the others as `\u00xx` with lowercase hex).
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Category, Outcome};
    use kopa_core::TenantId;

    fn sample() -> AuditRecord {
        let event = AuditEvent::new(Category::Authentication, "login", Outcome::Failure)
            .tenant(Some(TenantId::new("ventspils").unwrap()))
            .reason("wrong_password")
            .user_typed("jānis.bērziņš@ventspils.lv\"\n\u{1}")
            .source_ip("2001:db8::1".parse().unwrap())
            .method("ldap")
            .detail("b", "2")
            .detail("a", "1");
        AuditRecord::seal(7, 1_700_000_000_123, event, ChainHash([0xab; 32]))
    }

    #[test]
    fn canonical_form_is_sorted_json_that_serde_reads_back() {
        let r = sample();
        let bytes = r.canonical_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""user_typed":"jānis.bērziņš@ventspils.lv\"\n\u0001""#));
        assert!(text.contains(r#""details":{"a":"1","b":"2"}"#));
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        // serde_json re-serialises a Value with sorted keys (no preserve_order): same bytes.
        assert_eq!(serde_json::to_vec(&v).unwrap(), bytes);
        assert_eq!(v["seq"], 7);
        assert_eq!(v["event"]["source_ip"], "2001:db8::1");
        assert_eq!(v["event"]["client"], serde_json::Value::Null);
    }

    #[test]
    fn hash_covers_every_field_and_is_pinned() {
        let r = sample();
        assert_eq!(r.hash, r.compute_hash());
        // Pinned, and equal to Python's json.dumps(sort_keys=True, separators=(",", ":"),
        // ensure_ascii=False): changing the canonical form breaks every existing chain.
        assert_eq!(
            r.hash.to_hex(),
            "25eafa7e8b53e8c3df79eb05e74c3f7ac27a4acefc618b852cd2832931dc4fb4"
        );
        let mut altered = r.clone();
        altered.event.outcome = Outcome::Success;
        assert_ne!(altered.compute_hash(), r.hash);
        let mut moved = r.clone();
        moved.seq = 8;
        assert_ne!(moved.compute_hash(), r.hash);
        let mut relinked = r;
        relinked.prev_hash = ChainHash::GENESIS;
        assert_ne!(relinked.compute_hash(), relinked.hash);
    }

    #[test]
    fn stored_form_round_trips() {
        let r = sample();
        let json = serde_json::to_vec(&r).unwrap();
        let back: AuditRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.compute_hash(), r.hash);
    }
}
