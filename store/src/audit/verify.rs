//! Walks the stored chain and names the first record that is not what was committed.
//!
//! It reads the raw table, not the typed API, so a record that no longer decodes, a key
//! that is not a seq, or a record stored under another record's key is reported as such
//! instead of failing the walk.

use super::chain::{ChainHead, CutProof};
use super::record::{AuditRecord, ChainHash};
use super::signer::PublicKey;
use super::{AuditError, HEAD_KEY, RECORDS, STATE};
use crate::txn::ReadTxn;
use crate::{Key, Store, StoreError};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How the chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// A record's content, hash or link differs from what was committed.
    Altered,
    /// Records are gone: a gap in the seqs, the end cut off, or the start dropped
    /// without a signed retention cut.
    Missing,
    /// A record sits at another record's position.
    Reordered,
    /// A signature of the head or of a retention cut does not verify, or was made by
    /// another key than the appliance's.
    BadSignature,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Altered => "altered",
            BreakKind::Missing => "missing",
            BreakKind::Reordered => "reordered",
            BreakKind::BadSignature => "bad signature",
        }
    }
}

/// The first broken place of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBreak {
    /// The first seq that does not verify.
    pub seq: u64,
    pub kind: BreakKind,
    /// One line saying what was found.
    pub detail: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {}: {}: {}",
            self.seq,
            self.kind.as_str(),
            self.detail
        )
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Records stored.
    pub records: u64,
    /// The lowest stored seq (above 1 after retention).
    pub first_seq: Option<u64>,
    /// The highest stored seq.
    pub last_seq: Option<u64>,
    /// Retention cut records among them.
    pub cut_records: u64,
    /// The seq the signed head names.
    pub head_seq: Option<u64>,
    /// The first break, if any.
    pub broken: Option<ChainBreak>,
}

impl VerifyReport {
    /// Whether every record, link and signature verified.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Checks every record of the chain in `store`: each hash recomputed, seqs contiguous,
/// each `prev_hash` the previous record's hash, the start anchored at the genesis or at a
/// signed retention cut, every cut's signature, and the signed head against the last
/// record. With `expected`, every signature must also be by that key. Runs on one
/// snapshot, so it can check a log that is being appended to.
pub fn verify(store: &Store, expected: Option<&PublicKey>) -> Result<VerifyReport, AuditError> {
    let txn = store.begin_read()?;
    verify_txn(&txn, expected)
}

pub(crate) fn verify_txn(
    txn: &ReadTxn,
    expected: Option<&PublicKey>,
) -> Result<VerifyReport, AuditError> {
    let mut walk = Walk {
        expected: expected.copied(),
        ..Walk::default()
    };
    match txn.raw().open_table(RECORDS.def()) {
        Ok(table) => {
            for item in table.iter().map_err(StoreError::from)? {
                let (k, v) = item.map_err(StoreError::from)?;
                walk.visit(k.value(), v.value());
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(StoreError::from(e).into()),
    }
    let head = match txn.get(&STATE, &HEAD_KEY.to_string()) {
        Ok(h) => Ok(h),
        Err(StoreError::Decode { .. }) => Err(()),
        Err(e) => return Err(e.into()),
    };
    Ok(walk.finish(head))
}

#[derive(Default)]
struct Walk {
    expected: Option<PublicKey>,
    report: VerifyReport,
    /// The previous key and, if it decoded, its record's hash.
    prev: Option<(u64, Option<ChainHash>)>,
    /// The first record's seq and `prev_hash` when it is not record 1: a cut must vouch.
    anchor: Option<(u64, ChainHash)>,
    anchored: bool,
}

impl Walk {
    fn note(&mut self, seq: u64, kind: BreakKind, detail: impl Into<String>) {
        if self.report.broken.as_ref().is_none_or(|b| seq < b.seq) {
            self.report.broken = Some(ChainBreak {
                seq,
                kind,
                detail: detail.into(),
            });
        }
    }

    fn visit(&mut self, k: &[u8], v: &[u8]) {
        self.report.records += 1;
        let after_prev = self.prev.map_or(1, |(s, _)| s.saturating_add(1));
        let Ok(key) = u64::decode(k) else {
            self.note(
                after_prev,
                BreakKind::Altered,
                "a record is stored under a malformed key",
            );
            return;
        };
        self.report.first_seq.get_or_insert(key);
        self.report.last_seq = Some(key);
        if self.prev.is_some() && key != after_prev {
            self.note(
                after_prev,
                BreakKind::Missing,
                format!(
                    "records {after_prev} to {} are missing",
                    key.saturating_sub(1)
                ),
            );
        }
        let prev_hash = self.prev.and_then(|(_, h)| h);
        let first = self.prev.is_none();
        self.prev = Some((key, None));
        let record: AuditRecord = match serde_json::from_slice(v) {
            Ok(r) => r,
            Err(_) => {
                self.note(key, BreakKind::Altered, "the record does not decode");
                return;
            }
        };
        if record.seq != key {
            self.note(
                key,
                BreakKind::Reordered,
                format!("the record stored here says it is record {}", record.seq),
            );
        } else if record.compute_hash() != record.hash {
            self.note(
                key,
                BreakKind::Altered,
                "its content does not match its hash",
            );
        }
        if first {
            if key == 1 && record.prev_hash != ChainHash::GENESIS {
                self.note(
                    key,
                    BreakKind::Altered,
                    "record 1 does not start from the genesis hash",
                );
            } else if key != 1 {
                self.anchor = Some((key, record.prev_hash));
            }
        } else if prev_hash.is_some_and(|h| h != record.prev_hash) {
            self.note(
                key,
                BreakKind::Altered,
                format!("it does not link to record {}", key.saturating_sub(1)),
            );
        }
        self.prev = Some((key, Some(record.hash)));
        if CutProof::is_cut(&record) {
            self.report.cut_records += 1;
            self.check_cut(&record);
        }
    }

    fn check_cut(&mut self, record: &AuditRecord) {
        let proof = match CutProof::parse(record) {
            Ok(p) => p,
            Err(why) => {
                self.note(record.seq, BreakKind::BadSignature, why);
                return;
            }
        };
        // A cut at the right place vouches for the start; if its signature fails, that is
        // the break to name, not the records it accounts for.
        if let Some((first, prev_hash)) = self.anchor
            && proof.dropped_to.checked_add(1) == Some(first)
            && proof.last_dropped_hash == prev_hash
        {
            self.anchored = true;
        }
        if !proof.signature_valid(record) {
            self.note(
                record.seq,
                BreakKind::BadSignature,
                "the retention cut's signature does not verify",
            );
        } else if let Some(k) = self.expected.filter(|k| *k != proof.public_key) {
            self.note(
                record.seq,
                BreakKind::BadSignature,
                format!(
                    "the retention cut is signed by key {}, not by the appliance's key {k}",
                    proof.public_key
                ),
            );
        }
    }

    fn finish(mut self, head: Result<Option<ChainHead>, ()>) -> VerifyReport {
        if let Some((first, _)) = self.anchor
            && !self.anchored
        {
            let gone = first.saturating_sub(1);
            self.note(
                gone,
                BreakKind::Missing,
                format!(
                    "record {gone} and any before it were removed without a signed retention cut"
                ),
            );
        }
        let last = self.report.last_seq;
        let last_hash = self.prev.and_then(|(_, h)| h);
        match head {
            Err(()) => self.note(
                last.unwrap_or(1),
                BreakKind::Altered,
                "the signed chain head does not decode",
            ),
            Ok(None) => {
                if let Some(last) = last {
                    self.note(last, BreakKind::Missing, "the signed chain head is missing");
                }
            }
            Ok(Some(head)) => {
                self.report.head_seq = Some(head.seq);
                self.check_head(&head, last, last_hash);
            }
        }
        self.report
    }

    fn check_head(&mut self, head: &ChainHead, last: Option<u64>, last_hash: Option<ChainHash>) {
        if !head.signature_valid() {
            self.note(
                head.seq,
                BreakKind::BadSignature,
                "the chain head's signature does not verify",
            );
            return;
        }
        if let Some(k) = self.expected.filter(|k| *k != head.public_key) {
            self.note(
                head.seq,
                BreakKind::BadSignature,
                format!(
                    "the chain head is signed by key {}, not by the appliance's key {k}",
                    head.public_key
                ),
            );
            return;
        }
        let last = last.unwrap_or(0);
        if head.seq > last {
            self.note(
                last + 1,
                BreakKind::Missing,
                format!(
                    "records {} to {} were removed from the end",
                    last + 1,
                    head.seq
                ),
            );
        } else if head.seq < last {
            self.note(
                head.seq + 1,
                BreakKind::Altered,
                format!(
                    "records after {} are not covered by the signed head",
                    head.seq
                ),
            );
        } else if last_hash != Some(head.hash) {
            self.note(
                last,
                BreakKind::Altered,
                "the last record does not match the signed head",
            );
        }
    }
}
