//! Sign-in figures from the audit log: failed sign-ins per tenant, lockouts, successes
//! right after failures, privileged sign-ins and their second factor, accounts not seen
//! for a long time, and when the last backup was taken.
//!
//! The collector follows the log by sequence number. What must outlive a restart (the
//! cursor, the counters, when each account last signed in, the last backup) is kept in
//! `monitor.redb`; the 24-hour windows are rebuilt from the log at start.

use crate::series::Sample;
use kopa_store::audit::{AuditLog, AuditQuery, AuditRecord, Order, Outcome, TenantScope};
use kopa_store::{Store, StoreError, Table, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The tenant label of records that name no tenant (e.g. an unknown domain typed).
pub const NO_TENANT: &str = "unknown";
const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
/// Failures of one account within the hour before a success that make it suspicious.
const SUSPICIOUS_FAILURES: usize = 3;
/// Most sign-in events held for the 24-hour windows.
const MAX_WINDOW_EVENTS: usize = 500_000;
const PAGE: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// Last audit seq applied to the counters.
    pub after_seq: u64,
    pub failed: BTreeMap<String, u64>,
    pub logins: BTreeMap<String, u64>,
    pub lockouts: BTreeMap<String, u64>,
    pub last_backup_ms: Option<u64>,
}

const STATE: Table<String, Persisted> = Table::new("audit_follow");
const SEEN: Table<(String, String), u64> = Table::new("accounts_seen");

pub(crate) fn create_tables(txn: &WriteTxn) -> Result<(), StoreError> {
    txn.open_table(&STATE)?;
    txn.open_table(&SEEN)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Failed,
    Success {
        privileged: bool,
        mfa: bool,
        suspicious: bool,
    },
    Locked,
}

#[derive(Debug, Clone)]
struct WindowEvent {
    t: u64,
    tenant: String,
    kind: Kind,
    /// The account as typed, lower-cased.
    account: String,
    ip: Option<String>,
}

/// One offender in the top lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offender {
    /// An account as typed, or a source IP.
    pub key: String,
    pub tenant: String,
    pub failures: u64,
    pub last_ms: u64,
}

/// Failed sign-ins per hour, for the dashboards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourCount {
    pub hour_ms: u64,
    pub failed: u64,
    pub lockouts: u64,
}

/// Follows the audit log.
#[derive(Debug)]
pub struct AuditFollower {
    log: AuditLog,
    store: Store,
    state: Persisted,
    seen: HashMap<(String, String), u64>,
    seen_dirty: Vec<(String, String)>,
    window: VecDeque<WindowEvent>,
    recent_failures: RecentFailures,
    inactive_ms: u64,
}

/// Per account (as typed, lower-cased), the times of its last `SUSPICIOUS_FAILURES`
/// failed sign-ins, oldest first: enough to tell whether a success follows that many
/// failures within the hour without scanning the window, whose length grows with the
/// sign-in rate.
#[derive(Debug)]
struct RecentFailures {
    times: HashMap<String, VecDeque<u64>>,
    /// The most accounts remembered (as many as the window holds events).
    cap: usize,
}

impl Default for RecentFailures {
    fn default() -> Self {
        Self::with_cap(MAX_WINDOW_EVENTS)
    }
}

impl RecentFailures {
    fn with_cap(cap: usize) -> Self {
        Self {
            times: HashMap::new(),
            cap,
        }
    }

    fn record(&mut self, account: &str, t: u64) {
        if !self.times.contains_key(account) && self.times.len() >= self.cap {
            // Full: forget the accounts without a failure in the hour before `t`; should
            // that free nothing, this one goes unremembered.
            self.forget_before(t.saturating_sub(HOUR_MS));
            if self.times.len() >= self.cap {
                return;
            }
        }
        let times = self.times.entry(account.to_owned()).or_default();
        if times.len() >= SUSPICIOUS_FAILURES {
            times.pop_front();
        }
        times.push_back(t);
    }

    /// How many of the remembered failures of `account` are at or after `since` (at most
    /// `SUSPICIOUS_FAILURES`).
    fn since(&self, account: &str, since: u64) -> usize {
        self.times
            .get(account)
            .map_or(0, |times| times.iter().filter(|t| **t >= since).count())
    }

    /// Forgets accounts whose last failure is before `t`.
    fn forget_before(&mut self, t: u64) {
        self.times
            .retain(|_, times| times.back().is_some_and(|last| *last >= t));
    }
}

fn tenant_of(r: &AuditRecord) -> String {
    r.event
        .tenant
        .as_ref()
        .map_or_else(|| NO_TENANT.to_owned(), |t| t.as_str().to_owned())
}

const PRIVILEGED: [&str; 4] = [
    "platform_admin",
    "security_officer",
    "tenant_admin",
    "auditor",
];

impl AuditFollower {
    /// Loads what was kept and rebuilds the last 24 hours' windows from the log.
    /// `tenants` start with zero counters, so that the first failures after a start
    /// already count as an increase.
    pub async fn start(
        log: AuditLog,
        store: Store,
        inactive_days: u32,
        tenants: &std::collections::BTreeSet<String>,
        now: u64,
    ) -> Result<Self, String> {
        let (state, seen) = store
            .read(|txn| {
                let state = txn.get(&STATE, &"audit".to_owned())?.unwrap_or_default();
                let seen = txn.iter(&SEEN)?.into_iter().collect::<HashMap<_, _>>();
                Ok((state, seen))
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut state = state;
        for t in tenants.iter().map(String::as_str).chain([NO_TENANT]) {
            for counter in [&mut state.failed, &mut state.logins, &mut state.lockouts] {
                counter.entry(t.to_owned()).or_default();
            }
        }
        let mut me = Self {
            log,
            store,
            state,
            seen,
            seen_dirty: Vec::new(),
            window: VecDeque::new(),
            recent_failures: RecentFailures::default(),
            inactive_ms: u64::from(inactive_days) * DAY_MS,
        };
        // Records already counted, but recent enough for the windows.
        let mut q = AuditQuery::new(TenantScope::All);
        q.from_ms = Some(now.saturating_sub(DAY_MS));
        q.limit = PAGE;
        loop {
            let page = me.log.query(q.clone()).await.map_err(|e| e.to_string())?;
            let mut done = page.next_after_seq.is_none();
            for r in &page.records {
                if r.seq > me.state.after_seq {
                    done = true;
                    break;
                }
                me.add_to_window(r);
            }
            if done {
                break;
            }
            q.after_seq = page.next_after_seq;
        }
        Ok(me)
    }

    fn add_to_window(&mut self, r: &AuditRecord) -> Option<Kind> {
        let e = &r.event;
        let account = e
            .user_typed
            .as_deref()
            .or(e.user_resolved.as_deref())
            .unwrap_or_default()
            .to_lowercase();
        let kind = match (e.action.as_str(), e.outcome) {
            ("login", Outcome::Failure) => {
                self.recent_failures.record(&account, r.time_ms);
                Kind::Failed
            }
            ("login", Outcome::Success) => {
                let roles = e.details.get("roles").map(String::as_str).unwrap_or("");
                let privileged = roles.split(' ').any(|r| PRIVILEGED.contains(&r));
                let amr = e.details.get("amr").map(String::as_str).unwrap_or("");
                let mfa = amr.split(' ').any(|m| m == "otp" || m == "mfa")
                    || e.method.as_deref() == Some("totp");
                let since = r.time_ms.saturating_sub(HOUR_MS);
                let failures = self.recent_failures.since(&account, since);
                Kind::Success {
                    privileged,
                    mfa,
                    suspicious: failures >= SUSPICIOUS_FAILURES,
                }
            }
            ("account-locked", _) => Kind::Locked,
            _ => return None,
        };
        if self.window.len() >= MAX_WINDOW_EVENTS {
            self.window.pop_front();
        }
        self.window.push_back(WindowEvent {
            t: r.time_ms,
            tenant: tenant_of(r),
            kind,
            account,
            ip: e.source_ip.map(|ip| ip.to_string()),
        });
        Some(kind)
    }

    fn apply(&mut self, r: &AuditRecord) {
        let tenant = tenant_of(r);
        let e = &r.event;
        match self.add_to_window(r) {
            Some(Kind::Failed) => *self.state.failed.entry(tenant).or_default() += 1,
            Some(Kind::Success { .. }) => {
                *self.state.logins.entry(tenant.clone()).or_default() += 1;
                if let Some(subject) = &e.user_resolved {
                    let key = (tenant, subject.clone());
                    self.seen.insert(key.clone(), r.time_ms);
                    self.seen_dirty.push(key);
                }
            }
            Some(Kind::Locked) => *self.state.lockouts.entry(tenant).or_default() += 1,
            None => {
                if e.action == "backup-taken" && e.outcome == Outcome::Success {
                    self.state.last_backup_ms = Some(r.time_ms);
                }
            }
        }
        self.state.after_seq = r.seq;
    }

    /// Reads every new record, keeps the state, and returns the samples.
    pub async fn poll(&mut self, now: u64) -> Result<Vec<Sample>, String> {
        let before = self.state.after_seq;
        let mut q = AuditQuery::new(TenantScope::All);
        q.order = Order::OldestFirst;
        q.limit = PAGE;
        q.after_seq = Some(self.state.after_seq);
        // Bounded per poll, so a first start on a long log catches up over a few polls.
        for _ in 0..200 {
            let page = self.log.query(q.clone()).await.map_err(|e| e.to_string())?;
            for r in &page.records {
                self.apply(r);
            }
            match page.next_after_seq {
                Some(next) => q.after_seq = Some(next),
                None => break,
            }
        }
        if self.state.after_seq != before {
            let state = self.state.clone();
            let dirty: Vec<_> = std::mem::take(&mut self.seen_dirty)
                .into_iter()
                .filter_map(|k| self.seen.get(&k).map(|t| (k, *t)))
                .collect();
            self.store
                .write(move |txn| {
                    txn.insert(&STATE, &"audit".to_owned(), &state)?;
                    for (k, t) in &dirty {
                        txn.insert(&SEEN, k, t)?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        let horizon = now.saturating_sub(DAY_MS);
        while self.window.front().is_some_and(|w| w.t < horizon) {
            self.window.pop_front();
        }
        self.recent_failures
            .forget_before(now.saturating_sub(HOUR_MS));
        Ok(self.samples(now))
    }

    /// The samples of what is known now, without reading the log.
    pub fn samples(&self, now: u64) -> Vec<Sample> {
        #[derive(Default)]
        struct T {
            failed_1h: u64,
            lockouts: u64,
            suspicious: u64,
            privileged: u64,
            privileged_mfa: u64,
            seen: u64,
            inactive: u64,
        }
        let mut per: BTreeMap<String, T> = BTreeMap::new();
        for t in self
            .state
            .failed
            .keys()
            .chain(self.state.logins.keys())
            .chain(self.state.lockouts.keys())
        {
            per.entry(t.clone()).or_default();
        }
        let hour_ago = now.saturating_sub(HOUR_MS);
        for w in &self.window {
            let t = per.entry(w.tenant.clone()).or_default();
            match w.kind {
                Kind::Failed if w.t >= hour_ago => t.failed_1h += 1,
                Kind::Failed => {}
                Kind::Locked => t.lockouts += 1,
                Kind::Success {
                    privileged,
                    mfa,
                    suspicious,
                } => {
                    t.suspicious += u64::from(suspicious);
                    t.privileged += u64::from(privileged);
                    t.privileged_mfa += u64::from(privileged && mfa);
                }
            }
        }
        for ((tenant, _), last) in &self.seen {
            let t = per.entry(tenant.clone()).or_default();
            t.seen += 1;
            t.inactive += u64::from(now.saturating_sub(*last) > self.inactive_ms);
        }
        let mut out = Vec::new();
        let total = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0) as f64;
        for (tenant, t) in &per {
            let l = [("tenant", tenant.as_str())];
            let mut put = |name: &str, v: f64| out.push(Sample::new(name, &l, v, now));
            put(
                "auth.failed_logins_total",
                total(&self.state.failed, tenant),
            );
            put("auth.logins_total", total(&self.state.logins, tenant));
            put("auth.lockouts_total", total(&self.state.lockouts, tenant));
            put("auth.failed_logins_1h", t.failed_1h as f64);
            put("auth.lockouts_24h", t.lockouts as f64);
            put("auth.success_after_failures_24h", t.suspicious as f64);
            put("auth.privileged_logins_24h", t.privileged as f64);
            if t.privileged > 0 {
                put(
                    "auth.privileged_mfa_ratio_24h",
                    t.privileged_mfa as f64 / t.privileged as f64,
                );
            }
            if tenant != NO_TENANT {
                put("auth.accounts_seen", t.seen as f64);
                put("auth.accounts_inactive", t.inactive as f64);
            }
        }
        out.push(Sample::new(
            "appliance.backup_taken",
            &[],
            f64::from(u8::from(self.state.last_backup_ms.is_some())),
            now,
        ));
        if let Some(b) = self.state.last_backup_ms {
            out.push(Sample::new(
                "appliance.backup_age_hours",
                &[],
                now.saturating_sub(b) as f64 / HOUR_MS as f64,
                now,
            ));
        }
        out
    }

    /// The accounts and source IPs with the most failed sign-ins in `[now - window, now]`,
    /// of the tenants `keep` allows.
    pub fn offenders(
        &self,
        now: u64,
        window_ms: u64,
        limit: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> (Vec<Offender>, Vec<Offender>) {
        let since = now.saturating_sub(window_ms);
        let mut accounts: HashMap<(String, String), Offender> = HashMap::new();
        let mut ips: HashMap<(String, String), Offender> = HashMap::new();
        for w in self
            .window
            .iter()
            .filter(|w| w.t >= since && w.kind == Kind::Failed && keep(&w.tenant))
        {
            let bump = |map: &mut HashMap<(String, String), Offender>, key: &str| {
                let o = map
                    .entry((w.tenant.clone(), key.to_owned()))
                    .or_insert_with(|| Offender {
                        key: key.to_owned(),
                        tenant: w.tenant.clone(),
                        failures: 0,
                        last_ms: 0,
                    });
                o.failures += 1;
                o.last_ms = o.last_ms.max(w.t);
            };
            if !w.account.is_empty() {
                bump(&mut accounts, &w.account);
            }
            if let Some(ip) = &w.ip {
                bump(&mut ips, ip);
            }
        }
        let top = |m: HashMap<(String, String), Offender>| {
            let mut v: Vec<_> = m.into_values().collect();
            v.sort_by(|a, b| b.failures.cmp(&a.failures).then(b.last_ms.cmp(&a.last_ms)));
            v.truncate(limit);
            v
        };
        (top(accounts), top(ips))
    }

    /// Failed sign-ins and lockouts per hour over the last 24 hours.
    pub fn hourly(&self, now: u64, keep: &dyn Fn(&str) -> bool) -> Vec<HourCount> {
        let first = (now.saturating_sub(DAY_MS) / HOUR_MS + 1) * HOUR_MS;
        let mut hours: Vec<HourCount> = (0..24)
            .map(|i| HourCount {
                hour_ms: first + i * HOUR_MS,
                failed: 0,
                lockouts: 0,
            })
            .collect();
        for w in self.window.iter().filter(|w| keep(&w.tenant)) {
            let Some(i) = w.t.checked_sub(first).map(|d| (d / HOUR_MS) as usize) else {
                continue;
            };
            if let Some(h) = hours.get_mut(i) {
                match w.kind {
                    Kind::Failed => h.failed += 1,
                    Kind::Locked => h.lockouts += 1,
                    Kind::Success { .. } => {}
                }
            }
        }
        hours
    }
}

#[cfg(test)]
mod tests {
    use super::{HOUR_MS, RecentFailures, SUSPICIOUS_FAILURES};

    #[test]
    fn recent_failures_count_only_the_last_hour_of_one_account() {
        let mut f = RecentFailures::default();
        let t0 = 10 * HOUR_MS;
        for i in 0..5 {
            f.record("anna", t0 + i);
        }
        f.record("liga", t0);
        // At most the threshold is remembered, and only that account's.
        assert_eq!(f.since("anna", t0), SUSPICIOUS_FAILURES);
        assert_eq!(f.since("liga", t0), 1);
        assert_eq!(f.since("janis", t0), 0);
        // Failures older than the hour before the success no longer count.
        assert_eq!(f.since("anna", t0 + 3), 2);
        assert_eq!(f.since("anna", t0 + HOUR_MS), 0);
        f.forget_before(t0 + 1);
        assert_eq!(f.since("liga", 0), 0, "liga's only failure is forgotten");
        assert_eq!(f.since("anna", 0), SUSPICIOUS_FAILURES);
    }

    #[test]
    fn recent_failures_stay_within_their_cap() {
        let mut f = RecentFailures::with_cap(3);
        let t0 = 10 * HOUR_MS;
        for account in ["a", "b", "c"] {
            f.record(account, t0);
        }
        // Full, and every account failed within the hour: the newcomer is not remembered,
        // while the known ones still count.
        f.record("d", t0 + 10);
        f.record("a", t0 + 10);
        assert_eq!(f.since("d", 0), 0);
        assert_eq!(f.since("a", 0), 2);
        // An hour on, the accounts idle since then make room.
        f.record("e", t0 + HOUR_MS + 5);
        assert_eq!(f.since("e", 0), 1);
        assert_eq!(f.since("b", 0), 0, "b was forgotten to make room");
        assert_eq!(
            f.since("a", 0),
            2,
            "a failed within the hour before e's failure"
        );
        assert_eq!(f.times.len(), 2, "a and e remain");
    }
}
