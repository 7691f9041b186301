//! Paged, tenant-scoped reading of the audit log.
//!
//! Times never decrease along the chain, so a time range becomes a seq range by binary
//! search; a tenant's records are found through the `(tenant, seq)` index.

use super::record::AuditRecord;
use super::{AuditError, BY_TENANT, Outcome, RECORDS};
use crate::table::RawTable;
use crate::{Key, Store, StoreError};
use kopa_core::TenantId;
use redb::{ReadOnlyTable, ReadableTable};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Most records one page returns.
pub const MAX_QUERY_LIMIT: usize = 1000;
/// Records examined per page before it is returned (possibly short) with a cursor, so that
/// a rare filter never turns one request into a scan of years of records.
const SCAN_BUDGET: usize = 20_000;

/// Whose records a query may see. Required, not a filter: the caller states the scope its
/// principal is entitled to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantScope {
    /// Every record, platform events included (platform administrators and auditors).
    All,
    /// Only records of this tenant.
    One(TenantId),
}

/// In which order a page lists records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Ascending seq: follows the log as it grows (collectors, SIEM forwarding).
    #[default]
    OldestFirst,
    /// Descending seq: what happened last comes first (dashboards).
    NewestFirst,
}

/// A query. Time bounds are milliseconds since the epoch, `from_ms` inclusive and
/// `to_ms` exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub tenant: TenantScope,
    /// Matches the user as typed or as resolved, ignoring case.
    pub user: Option<String>,
    pub outcome: Option<Outcome>,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub source_ip: Option<IpAddr>,
    /// Cursor: continue after this seq, in the page's order.
    pub after_seq: Option<u64>,
    /// 1 to [`MAX_QUERY_LIMIT`].
    pub limit: usize,
    pub order: Order,
}

impl AuditQuery {
    /// Up to 100 records of `tenant`, oldest first, no filters.
    pub fn new(tenant: TenantScope) -> Self {
        Self {
            tenant,
            user: None,
            outcome: None,
            from_ms: None,
            to_ms: None,
            source_ip: None,
            after_seq: None,
            limit: 100,
            order: Order::OldestFirst,
        }
    }

    fn matches(&self, r: &AuditRecord) -> bool {
        let e = &r.event;
        if let TenantScope::One(t) = &self.tenant
            && e.tenant.as_ref() != Some(t)
        {
            return false;
        }
        if let Some(user) = &self.user {
            let user = user.to_lowercase();
            let hit = [&e.user_typed, &e.user_resolved]
                .into_iter()
                .flatten()
                .any(|u| u.to_lowercase() == user);
            if !hit {
                return false;
            }
        }
        self.outcome.is_none_or(|o| o == e.outcome)
            && self.source_ip.is_none_or(|ip| Some(ip) == e.source_ip)
            && self.from_ms.is_none_or(|t| r.time_ms >= t)
            && self.to_ms.is_none_or(|t| r.time_ms < t)
    }
}

/// One page of a query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `after_seq` for the next page; `None` when there is nothing more. A page may
    /// be short (even empty) and still have a cursor when its scan budget ran out.
    pub next_after_seq: Option<u64>,
}

pub(crate) type Raw = ReadOnlyTable<&'static [u8], &'static [u8]>;

pub(crate) fn open(txn: &redb::ReadTransaction, def: RawTable) -> Result<Option<Raw>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn undecodable(seq: u64) -> AuditError {
    AuditError::Store(StoreError::corrupt(format!(
        "audit record {seq} does not decode; run `kopa audit verify`"
    )))
}

pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<AuditRecord, AuditError> {
    serde_json::from_slice(bytes).map_err(|_| undecodable(seq))
}

#[derive(Deserialize)]
struct TimeOnly {
    time_ms: u64,
}

/// The first stored seq whose record's time is `>= t`.
fn first_at_or_after(records: &Raw, t: u64) -> Result<Option<u64>, AuditError> {
    let (Some(first), Some(last)) = (records.first()?, records.last()?) else {
        return Ok(None);
    };
    let (mut lo, mut hi) = (u64::decode(first.0.value())?, u64::decode(last.0.value())?);
    let mut found = None;
    // Invariant: every stored seq below `lo` is older than `t`; `found` is the best
    // candidate at or above `hi`.
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let Some(item) = records.range::<&[u8]>(mid.encode().as_slice()..)?.next() else {
            break;
        };
        let (k, v) = item?;
        let seq = u64::decode(k.value())?;
        let time = serde_json::from_slice::<TimeOnly>(v.value())
            .map(|x| x.time_ms)
            .map_err(|_| undecodable(seq))?;
        if time >= t {
            found = Some(seq);
            match mid.checked_sub(1) {
                Some(h) => hi = h,
                None => break,
            }
        } else {
            lo = seq + 1;
        }
    }
    Ok(found)
}

/// The inclusive seq range holding records with times in `[from, to)`.
pub(crate) fn seq_bounds(
    records: &Raw,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) -> Result<Option<(u64, u64)>, AuditError> {
    let (Some(first), Some(last)) = (records.first()?, records.last()?) else {
        return Ok(None);
    };
    let (mut lo, mut hi) = (u64::decode(first.0.value())?, u64::decode(last.0.value())?);
    if let Some(from) = from_ms {
        match first_at_or_after(records, from)? {
            Some(s) => lo = s,
            None => return Ok(None),
        }
    }
    if let Some(to) = to_ms
        && let Some(s) = first_at_or_after(records, to)?
    {
        match s.checked_sub(1) {
            Some(h) => hi = h,
            None => return Ok(None),
        }
    }
    Ok((lo <= hi).then_some((lo, hi)))
}

/// One page of records `q` selects.
pub fn query(store: &Store, q: &AuditQuery) -> Result<AuditPage, AuditError> {
    if q.limit == 0 || q.limit > MAX_QUERY_LIMIT {
        return Err(AuditError::InvalidQuery {
            what: format!("limit must be 1 to {MAX_QUERY_LIMIT}"),
        });
    }
    let txn = store.begin_read()?;
    let txn = txn.raw();
    let Some(records) = open(txn, RECORDS.def())? else {
        return Ok(AuditPage::default());
    };
    let Some((mut lo, mut hi)) = seq_bounds(&records, q.from_ms, q.to_ms)? else {
        return Ok(AuditPage::default());
    };
    match (q.order, q.after_seq) {
        (Order::OldestFirst, Some(a)) => lo = lo.max(a.saturating_add(1)),
        (Order::NewestFirst, Some(a)) => match a.checked_sub(1) {
            Some(a) => hi = hi.min(a),
            None => return Ok(AuditPage::default()),
        },
        (_, None) => {}
    }
    if lo > hi {
        return Ok(AuditPage::default());
    }
    let mut page = Pager::new(q);
    let newest = q.order == Order::NewestFirst;
    match &q.tenant {
        TenantScope::All => {
            let range = records.range::<&[u8]>(lo.encode().as_slice()..=hi.encode().as_slice())?;
            let iter: Box<dyn Iterator<Item = _>> = if newest {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            for item in iter {
                let (k, v) = item?;
                let seq = u64::decode(k.value())?;
                if page.offer(seq, decode(seq, v.value())?) {
                    break;
                }
            }
        }
        TenantScope::One(tenant) => {
            let Some(index) = open(txn, BY_TENANT.def())? else {
                return Ok(AuditPage::default());
            };
            let (start, end) = ((tenant.clone(), lo).encode(), (tenant.clone(), hi).encode());
            let range = index.range::<&[u8]>(start.as_slice()..=end.as_slice())?;
            let iter: Box<dyn Iterator<Item = _>> = if newest {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            for item in iter {
                let (k, _) = item?;
                let (_, seq) = <(TenantId, u64)>::decode(k.value())?;
                let Some(v) = records.get(seq.encode().as_slice())? else {
                    continue;
                };
                if page.offer(seq, decode(seq, v.value())?) {
                    break;
                }
            }
        }
    }
    Ok(page.finish())
}

struct Pager<'q> {
    q: &'q AuditQuery,
    out: Vec<AuditRecord>,
    examined: usize,
    next: Option<u64>,
}

impl<'q> Pager<'q> {
    fn new(q: &'q AuditQuery) -> Self {
        Self {
            q,
            out: Vec::new(),
            examined: 0,
            next: None,
        }
    }

    /// Takes one candidate; `true` when the page is complete.
    fn offer(&mut self, seq: u64, record: AuditRecord) -> bool {
        self.examined += 1;
        // The index could have been tampered with: the record's own tenant decides.
        if self.q.matches(&record) {
            self.out.push(record);
        }
        if self.out.len() >= self.q.limit || self.examined >= SCAN_BUDGET {
            self.next = Some(seq);
            return true;
        }
        false
    }

    fn finish(self) -> AuditPage {
        AuditPage {
            records: self.out,
            next_after_seq: self.next,
        }
    }
}
