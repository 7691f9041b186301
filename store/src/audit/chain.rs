//! The signed parts of the chain: its head, and the cut records retention leaves behind.

use super::record::{AuditRecord, ChainHash};
use super::signer::{AuditSigner, PublicKey, Signature, cut_message, head_message};
use super::{AuditError, AuditEvent, Category, Outcome};
use serde::{Deserialize, Serialize};

/// `event.action` of the cut record that retention appends.
pub const RETENTION_ACTION: &str = "audit-retention";
/// `event.action` of the record the log appends when, on opening, its head and its last
/// record disagree (a sign of tampering or of a lost signing key).
pub const ANOMALY_ACTION: &str = "audit-chain-anomaly";

/// Actions only the log itself writes: a caller could otherwise fake a cut.
pub(crate) fn is_reserved(action: &str) -> bool {
    action == RETENTION_ACTION || action == ANOMALY_ACTION
}

/// The last record of the chain, signed at every commit: removing records from the end, or
/// rewriting the chain and recomputing its hashes, needs the signing key to go unnoticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    /// `seq` of the last record.
    pub seq: u64,
    /// `hash` of the last record.
    pub hash: ChainHash,
    /// `time_ms` of the last record.
    pub time_ms: u64,
    /// The key that signed.
    pub public_key: PublicKey,
    /// Ed25519 over `"kopa-audit-head-v1\0" ‖ seq ‖ hash ‖ time_ms` (integers u64 BE).
    pub signature: Signature,
}

impl ChainHead {
    pub(crate) fn sign(record: &AuditRecord, signer: &AuditSigner) -> Result<Self, AuditError> {
        let msg = head_message(record.seq, &record.hash, record.time_ms);
        Ok(Self {
            seq: record.seq,
            hash: record.hash,
            time_ms: record.time_ms,
            public_key: signer.public_key(),
            signature: signer.sign(&msg)?,
        })
    }

    /// Whether the signature verifies under the key it names.
    pub fn signature_valid(&self) -> bool {
        let msg = head_message(self.seq, &self.hash, self.time_ms);
        self.public_key.verifies(&msg, &self.signature)
    }
}

/// Detail keys of a cut record.
pub(crate) mod cut_keys {
    pub const DROPPED_FROM: &str = "dropped_from";
    pub const DROPPED_TO: &str = "dropped_to";
    pub const DROPPED_COUNT: &str = "dropped_count";
    pub const BEFORE_MS: &str = "before_ms";
    pub const LAST_DROPPED_HASH: &str = "last_dropped_hash";
    pub const PUBLIC_KEY: &str = "public_key";
    pub const SIGNATURE: &str = "signature";
}

/// What a cut record proves: records `dropped_from..=dropped_to` existed and the last of
/// them had `last_dropped_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CutProof {
    pub dropped_from: u64,
    pub dropped_to: u64,
    pub last_dropped_hash: ChainHash,
    pub public_key: PublicKey,
    pub signature: Signature,
}

impl CutProof {
    pub fn is_cut(record: &AuditRecord) -> bool {
        record.event.category == Category::Process && record.event.action == RETENTION_ACTION
    }

    /// Reads the proof from a cut record's details.
    pub fn parse(record: &AuditRecord) -> Result<Self, String> {
        let d = &record.event.details;
        let get = |k: &str| {
            d.get(k)
                .map(String::as_str)
                .ok_or_else(|| format!("retention cut lacks {k}"))
        };
        let num = |k: &str| {
            get(k)?
                .parse::<u64>()
                .map_err(|_| format!("retention cut has a malformed {k}"))
        };
        let malformed = |k: &str| format!("retention cut has a malformed {k}");
        Ok(Self {
            dropped_from: num(cut_keys::DROPPED_FROM)?,
            dropped_to: num(cut_keys::DROPPED_TO)?,
            last_dropped_hash: ChainHash::from_hex(get(cut_keys::LAST_DROPPED_HASH)?)
                .ok_or_else(|| malformed(cut_keys::LAST_DROPPED_HASH))?,
            public_key: PublicKey::from_hex(get(cut_keys::PUBLIC_KEY)?)
                .ok_or_else(|| malformed(cut_keys::PUBLIC_KEY))?,
            signature: Signature::from_hex(get(cut_keys::SIGNATURE)?)
                .ok_or_else(|| malformed(cut_keys::SIGNATURE))?,
        })
    }

    /// Whether the signature verifies for the record it sits in.
    pub fn signature_valid(&self, record: &AuditRecord) -> bool {
        let msg = cut_message(
            record.seq,
            record.time_ms,
            self.dropped_from,
            self.dropped_to,
            &self.last_dropped_hash,
        );
        self.public_key.verifies(&msg, &self.signature)
    }
}

/// The event of a cut record at `seq`, `time_ms`, replacing `dropped`.
pub(crate) fn cut_event(
    seq: u64,
    time_ms: u64,
    before_ms: u64,
    dropped: &[AuditRecord],
    signer: &AuditSigner,
) -> Result<AuditEvent, AuditError> {
    let (Some(first), Some(last)) = (dropped.first(), dropped.last()) else {
        return Err(AuditError::Retention {
            what: "nothing to drop".into(),
        });
    };
    let msg = cut_message(seq, time_ms, first.seq, last.seq, &last.hash);
    let signature = signer.sign(&msg)?;
    Ok(
        AuditEvent::new(Category::Process, RETENTION_ACTION, Outcome::Success)
            .user_resolved("kopa")
            .detail(cut_keys::DROPPED_FROM, first.seq.to_string())
            .detail(cut_keys::DROPPED_TO, last.seq.to_string())
            .detail(cut_keys::DROPPED_COUNT, dropped.len().to_string())
            .detail(cut_keys::BEFORE_MS, before_ms.to_string())
            .detail(cut_keys::LAST_DROPPED_HASH, last.hash.to_hex())
            .detail(cut_keys::PUBLIC_KEY, signer.public_key().to_hex())
            .detail(cut_keys::SIGNATURE, signature.to_hex()),
    )
}
