//! Alert rules over the latest values: a threshold, the increase of a counter over a
//! window, or the absence of data; each must hold for `for_secs` before it fires. One
//! alert per rule and series (so repeated evaluations de-duplicate), kept in
//! `monitor.redb` with its history; acknowledgements and silences carry a reason.

use crate::controls::{Op, Severity};
use crate::latest::{Latest, Recent};
use crate::series::Labels;
use kopa_config::{AlertRuleConfig, RuleKind};
use kopa_store::{Store, StoreError, Table, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A rule, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub title_lv: String,
    pub title_en: String,
    pub kind: RuleKind,
    pub series: String,
    pub op: Op,
    pub value: f64,
    pub window_ms: u64,
    pub for_ms: u64,
    pub severity: Severity,
}

impl Rule {
    pub fn from_config(c: &AlertRuleConfig) -> Option<Self> {
        Some(Self {
            id: c.id.clone(),
            title_lv: c.title_lv.clone(),
            title_en: c.title_en.clone(),
            kind: c.kind,
            series: c.series.clone(),
            op: Op::parse(&c.op)?,
            value: c.value,
            window_ms: c.window_secs.saturating_mul(1000),
            for_ms: c.for_secs.saturating_mul(1000),
            severity: serde_json::from_value(serde_json::Value::String(c.severity.clone())).ok()?,
        })
    }
}

/// The rules every appliance has (unless `monitor.disabled_rules` names them).
pub fn builtin_rules() -> Vec<Rule> {
    let r = |id: &str,
             lv: &str,
             en: &str,
             kind,
             series: &str,
             op,
             value,
             window_s: u64,
             for_s: u64,
             severity| Rule {
        id: id.into(),
        title_lv: lv.into(),
        title_en: en.into(),
        kind,
        series: series.into(),
        op,
        value,
        window_ms: window_s * 1000,
        for_ms: for_s * 1000,
        severity,
    };
    use RuleKind::{Absence, Increase, Threshold};
    vec![
        r(
            "auth-brute-force",
            "Daudz neveiksmīgu pieteikšanos",
            "Many failed sign-ins",
            Increase,
            "auth.failed_logins_total",
            Op::Ge,
            10.0,
            300,
            0,
            Severity::High,
        ),
        r(
            "auth-lockouts",
            "Vairāki konti bloķēti",
            "Several accounts locked",
            Increase,
            "auth.lockouts_total",
            Op::Ge,
            3.0,
            900,
            0,
            Severity::Medium,
        ),
        r(
            "cert-expiring",
            "Sertifikāta derīgums drīz beigsies",
            "Certificate expires soon",
            Threshold,
            "cert.days_left",
            Op::Lt,
            14.0,
            0,
            0,
            Severity::High,
        ),
        r(
            "service-down",
            "Pakalpojums nedarbojas",
            "Service not ready",
            Threshold,
            "appliance.service_healthy",
            Op::Lt,
            1.0,
            0,
            60,
            Severity::Critical,
        ),
        r(
            "audit-chain",
            "Audita žurnāla ķēde nav pārbaudāma",
            "Audit chain head does not verify",
            Threshold,
            "appliance.audit_chain_ok",
            Op::Lt,
            1.0,
            0,
            0,
            Severity::Critical,
        ),
        r(
            "data-disk-low",
            "Datu diskā maz brīvas vietas",
            "Data disk nearly full",
            Threshold,
            "appliance.data_disk_free_ratio",
            Op::Lt,
            0.1,
            0,
            300,
            Severity::High,
        ),
        r(
            "backup-old",
            "Rezerves kopija ir veca",
            "Last backup is old",
            Threshold,
            "appliance.backup_age_hours",
            Op::Gt,
            26.0,
            0,
            0,
            Severity::Medium,
        ),
        r(
            "host-silent",
            "Nav resursdatora datu",
            "No host metrics",
            Absence,
            "host.cpu.usage_ratio",
            Op::Gt,
            0.0,
            120,
            0,
            Severity::Medium,
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

/// Who did something to an alert, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub by: String,
    pub at_ms: u64,
    pub reason: String,
}

/// One alert: a rule on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id: a hash of the rule and the series' labels.
    pub id: String,
    pub rule: String,
    pub title_lv: String,
    pub title_en: String,
    pub severity: Severity,
    pub labels: Labels,
    pub state: AlertState,
    /// The value that made it fire (or last held it).
    pub value: Option<f64>,
    pub since_ms: u64,
    pub fired_ms: Option<u64>,
    pub resolved_ms: Option<u64>,
    pub ack: Option<Note>,
    pub silence: Option<Note>,
    pub silenced_until_ms: Option<u64>,
}

impl Alert {
    pub fn tenant(&self) -> Option<&str> {
        self.labels.get("tenant").map(String::as_str)
    }

    pub fn silenced(&self, now: u64) -> bool {
        self.silenced_until_ms.is_some_and(|t| t > now)
    }
}

/// A change of an alert, for the history and the notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub at_ms: u64,
    pub alert: String,
    /// `firing`, `resolved`, `acknowledged`, `silenced`, `notified`, `notify-failed`.
    pub what: String,
    pub detail: String,
}

const ALERTS: Table<String, Alert> = Table::new("alerts");
const HISTORY: Table<(u64, u64), AlertEvent> = Table::new("alert_history");

pub(crate) fn create_tables(txn: &WriteTxn) -> Result<(), StoreError> {
    txn.open_table(&ALERTS)?;
    txn.open_table(&HISTORY)
}

/// Drops history older than `cutoff_ms`, and resolved alerts that ended before it.
pub(crate) fn trim_history(txn: &WriteTxn, cutoff_ms: u64) -> Result<(), StoreError> {
    txn.remove_range(&HISTORY, &(0, 0), &(cutoff_ms, 0), 100_000)?;
    for (id, a) in txn.iter(&ALERTS)? {
        if a.state == AlertState::Resolved && a.resolved_ms.is_some_and(|t| t < cutoff_ms) {
            txn.remove(&ALERTS, &id)?;
        }
    }
    Ok(())
}

fn alert_id(rule: &str, labels: &Labels) -> String {
    let key = crate::series::series_key(rule, labels);
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    hex::encode(&d.as_ref()[..8])
}

/// Whether the rule's condition holds for one series, and the value it saw.
fn condition(rule: &Rule, r: &Recent, now: u64) -> (bool, Option<f64>) {
    match rule.kind {
        RuleKind::Threshold => match r.last() {
            Some((t, v)) if now.saturating_sub(t) <= crate::controls::STALE_MS => {
                (rule.op.holds(v, rule.value), Some(v))
            }
            _ => (false, None),
        },
        RuleKind::Increase => match r.increase(now, rule.window_ms) {
            Some(v) => (rule.op.holds(v, rule.value), Some(v)),
            None => (false, None),
        },
        RuleKind::Absence => {
            let last = r.last().map(|(t, _)| t);
            (
                last.is_none_or(|t| now.saturating_sub(t) > rule.window_ms),
                None,
            )
        }
    }
}

/// The alerts and their store.
#[derive(Debug, Clone)]
pub struct Alerts {
    store: Store,
}

/// Alerts that changed in one evaluation and should be told about.
pub type Changes = Vec<Alert>;

impl Alerts {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Evaluates every rule; stores what changed; returns the alerts that started firing
    /// or resolved (and are not silenced).
    pub async fn evaluate(
        &self,
        rules: &[Rule],
        latest: &Latest,
        now: u64,
    ) -> Result<Changes, StoreError> {
        let mut seen: BTreeMap<String, (Rule, Labels, bool, Option<f64>)> = BTreeMap::new();
        // Whether each rule's series has reported anything yet (after a start, a slow
        // collector's alerts wait for it rather than resolve).
        let reporting: BTreeMap<String, bool> = rules
            .iter()
            .map(|r| (r.id.clone(), latest.reports(&r.series)))
            .collect();
        for rule in rules {
            let series = latest.select(&|r| r.name == rule.series);
            for r in &series {
                let (holds, value) = condition(rule, r, now);
                seen.insert(
                    alert_id(&rule.id, &r.labels),
                    (rule.clone(), r.labels.clone(), holds, value),
                );
            }
            if series.is_empty() && rule.kind == RuleKind::Absence {
                seen.insert(
                    alert_id(&rule.id, &Labels::new()),
                    (rule.clone(), Labels::new(), true, None),
                );
            }
        }
        self.store
            .write(move |txn| {
                let mut changes = Vec::new();
                let existing: BTreeMap<String, Alert> = txn.iter(&ALERTS)?.into_iter().collect();
                let mut seq = txn.last(&HISTORY)?.map_or(0, |((_, s), _)| s);
                let mut log = |txn: &WriteTxn, a: &Alert, what: &str| -> Result<(), StoreError> {
                    seq += 1;
                    let detail = a.value.map(|v| format!("value {v}")).unwrap_or_default();
                    txn.insert(
                        &HISTORY,
                        &(now, seq),
                        &AlertEvent {
                            at_ms: now,
                            alert: a.id.clone(),
                            what: what.into(),
                            detail,
                        },
                    )?;
                    Ok(())
                };
                // An active alert whose rule was removed, or whose series is no longer
                // reported, resolves rather than firing forever.
                for (id, a) in &existing {
                    if seen.contains_key(id)
                        || a.state == AlertState::Resolved
                        || reporting.get(&a.rule) == Some(&false)
                    {
                        continue;
                    }
                    if a.state == AlertState::Pending {
                        txn.remove(&ALERTS, id)?;
                        continue;
                    }
                    let mut a = a.clone();
                    a.state = AlertState::Resolved;
                    a.resolved_ms = Some(now);
                    txn.insert(&ALERTS, id, &a)?;
                    log(txn, &a, "resolved")?;
                    if !a.silenced(now) {
                        changes.push(a);
                    }
                }
                for (id, (rule, labels, holds, value)) in seen {
                    let old = existing.get(&id).cloned();
                    let active = old.as_ref().filter(|a| a.state != AlertState::Resolved);
                    let next = match (active, holds) {
                        (None, false) => continue,
                        (None, true) => {
                            let state = if rule.for_ms == 0 {
                                AlertState::Firing
                            } else {
                                AlertState::Pending
                            };
                            Alert {
                                id: id.clone(),
                                rule: rule.id.clone(),
                                title_lv: rule.title_lv.clone(),
                                title_en: rule.title_en.clone(),
                                severity: rule.severity,
                                labels,
                                state,
                                value,
                                since_ms: now,
                                fired_ms: (state == AlertState::Firing).then_some(now),
                                resolved_ms: None,
                                // A new episode starts unacknowledged; a silence lasts
                                // until it ends.
                                ack: None,
                                silence: old.as_ref().and_then(|o| o.silence.clone()),
                                silenced_until_ms: old.as_ref().and_then(|o| o.silenced_until_ms),
                            }
                        }
                        (Some(a), true) => {
                            let mut a = a.clone();
                            a.value = value.or(a.value);
                            if a.state == AlertState::Pending
                                && now.saturating_sub(a.since_ms) >= rule.for_ms
                            {
                                a.state = AlertState::Firing;
                                a.fired_ms = Some(now);
                            } else if old.as_ref() == Some(&a) {
                                continue;
                            }
                            a
                        }
                        (Some(a), false) => {
                            let mut a = a.clone();
                            let was_firing = a.state == AlertState::Firing;
                            a.state = AlertState::Resolved;
                            a.resolved_ms = Some(now);
                            if !was_firing {
                                // A pending alert that never fired leaves no trace.
                                txn.remove(&ALERTS, &id)?;
                                continue;
                            }
                            a
                        }
                    };
                    let changed_state = old.as_ref().is_none_or(|o| o.state != next.state);
                    txn.insert(&ALERTS, &id, &next)?;
                    if changed_state && next.state != AlertState::Pending {
                        let what = if next.state == AlertState::Firing {
                            "firing"
                        } else {
                            "resolved"
                        };
                        log(txn, &next, what)?;
                        if !next.silenced(now) {
                            changes.push(next);
                        }
                    }
                }
                Ok(changes)
            })
            .await
    }

    /// Every alert, firing first, newest first.
    pub async fn list(&self) -> Result<Vec<Alert>, StoreError> {
        let mut all: Vec<Alert> = self
            .store
            .read(|txn| txn.iter(&ALERTS))
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        let rank = |s: AlertState| match s {
            AlertState::Firing => 0,
            AlertState::Pending => 1,
            AlertState::Resolved => 2,
        };
        all.sort_by(|a, b| {
            rank(a.state)
                .cmp(&rank(b.state))
                .then(b.since_ms.cmp(&a.since_ms))
        });
        Ok(all)
    }

    /// The history of changes, newest first.
    pub async fn history(&self, limit: usize) -> Result<Vec<AlertEvent>, StoreError> {
        let mut all: Vec<AlertEvent> = self
            .store
            .read(|txn| txn.iter(&HISTORY))
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    /// Acknowledges (`silence_until` = None) or silences an alert; `allowed` may refuse
    /// it (tenant scoping). Returns the alert as changed, or `None` when there is no such
    /// alert the caller may see.
    pub async fn annotate(
        &self,
        id: String,
        note: Note,
        silence_until: Option<u64>,
        allowed: impl Fn(&Alert) -> bool + Send + 'static,
    ) -> Result<Option<Alert>, StoreError> {
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            store.write_or_abort(move |txn| {
                let Some(mut a) = txn.get(&ALERTS, &id)?.filter(|a| allowed(a)) else {
                    return Ok(Err(()));
                };
                let what = match silence_until {
                    None => {
                        a.ack = Some(note.clone());
                        "acknowledged"
                    }
                    Some(until) => {
                        a.silence = Some(note.clone());
                        a.silenced_until_ms = Some(until);
                        "silenced"
                    }
                };
                txn.insert(&ALERTS, &id, &a)?;
                let seq = txn.last(&HISTORY)?.map_or(0, |((_, s), _)| s) + 1;
                txn.insert(
                    &HISTORY,
                    &(note.at_ms, seq),
                    &AlertEvent {
                        at_ms: note.at_ms,
                        alert: id.clone(),
                        what: what.into(),
                        detail: format!("{}: {}", note.by, note.reason),
                    },
                )?;
                Ok(Ok(a))
            })
        })
        .await
        .map_err(StoreError::Join)?;
        written.map(Result::ok)
    }

    /// Records how a notification went.
    pub async fn record_delivery(&self, alert: String, at_ms: u64, ok: bool, detail: String) {
        let written = self
            .store
            .write(move |txn| {
                let seq = txn.last(&HISTORY)?.map_or(0, |((_, s), _)| s) + 1;
                txn.insert(
                    &HISTORY,
                    &(at_ms, seq),
                    &AlertEvent {
                        at_ms,
                        alert,
                        what: if ok { "notified" } else { "notify-failed" }.into(),
                        detail,
                    },
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "alert history not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Sample;

    #[tokio::test]
    async fn a_brute_force_series_fires_once_and_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::SCHEMA).unwrap();
        let alerts = Alerts::new(store);
        let rules: Vec<Rule> = builtin_rules()
            .into_iter()
            .filter(|r| r.id == "auth-brute-force")
            .collect();
        let latest = Latest::new(3_600_000);
        let l = [("tenant", "talsi")];
        let t0 = 10_000_000;
        latest.record(&[Sample::new("auth.failed_logins_total", &l, 3.0, t0)]);
        assert!(
            alerts
                .evaluate(&rules, &latest, t0)
                .await
                .unwrap()
                .is_empty()
        );
        latest.record(&[Sample::new(
            "auth.failed_logins_total",
            &l,
            15.0,
            t0 + 60_000,
        )]);
        let fired = alerts.evaluate(&rules, &latest, t0 + 60_000).await.unwrap();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].state, AlertState::Firing);
        assert_eq!(fired[0].value, Some(12.0));
        assert_eq!(fired[0].tenant(), Some("talsi"));
        // Still firing: no second notification.
        latest.record(&[Sample::new(
            "auth.failed_logins_total",
            &l,
            16.0,
            t0 + 70_000,
        )]);
        assert!(
            alerts
                .evaluate(&rules, &latest, t0 + 70_000)
                .await
                .unwrap()
                .is_empty()
        );
        let id = fired[0].id.clone();
        let note = Note {
            by: "drosiba".into(),
            at_ms: t0 + 80_000,
            reason: "pārbaudām".into(),
        };
        let refused = alerts
            .annotate(id.clone(), note.clone(), None, |a| {
                a.tenant() == Some("ventspils")
            })
            .await
            .unwrap();
        assert!(refused.is_none());
        let acked = alerts
            .annotate(id.clone(), note, None, |_| true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(acked.ack.unwrap().reason, "pārbaudām");
        // Five quiet minutes later the increase is below the bound: resolved.
        let later = t0 + 70_000 + 301_000;
        latest.record(&[Sample::new("auth.failed_logins_total", &l, 16.0, later)]);
        let resolved = alerts.evaluate(&rules, &latest, later).await.unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        let whats: Vec<_> = alerts
            .history(10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.what)
            .collect();
        assert_eq!(whats, ["resolved", "acknowledged", "firing"]);
    }

    #[tokio::test]
    async fn an_alert_whose_series_is_gone_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let alerts = Alerts::new(Store::open(dir.path(), &crate::SCHEMA).unwrap());
        let rules: Vec<Rule> = builtin_rules()
            .into_iter()
            .filter(|r| r.id == "cert-expiring")
            .collect();
        let latest = Latest::new(3_600_000);
        latest.record(&[
            Sample::new("cert.days_left", &[("cert", "old")], 3.0, 1_000),
            Sample::new("cert.days_left", &[("cert", "kopa-tls")], 300.0, 1_000),
        ]);
        assert_eq!(
            alerts.evaluate(&rules, &latest, 1_000).await.unwrap().len(),
            1
        );
        // The certificate is no longer watched; the collector reports the others.
        latest.retain_of("cert.days_left", &|l| l["cert"] != "old");
        let gone = alerts.evaluate(&rules, &latest, 2_000).await.unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].state, AlertState::Resolved);
        // And so is a rule that was switched off.
        latest.record(&[Sample::new(
            "cert.days_left",
            &[("cert", "new")],
            3.0,
            3_000,
        )]);
        assert_eq!(
            alerts.evaluate(&rules, &latest, 3_000).await.unwrap().len(),
            1
        );
        let off = alerts.evaluate(&[], &latest, 4_000).await.unwrap();
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].state, AlertState::Resolved);
    }

    #[tokio::test]
    async fn pending_waits_for_its_duration_and_absence_fires_without_data() {
        let dir = tempfile::tempdir().unwrap();
        let alerts = Alerts::new(Store::open(dir.path(), &crate::SCHEMA).unwrap());
        let rules: Vec<Rule> = builtin_rules()
            .into_iter()
            .filter(|r| r.id == "service-down" || r.id == "host-silent")
            .collect();
        let latest = Latest::new(3_600_000);
        let down = [("service", "portal")];
        latest.record(&[Sample::new("appliance.service_healthy", &down, 0.0, 1_000)]);
        let first = alerts.evaluate(&rules, &latest, 1_000).await.unwrap();
        // No host data at all: host-silent fires; service-down is only pending.
        assert_eq!(
            first.iter().map(|a| a.rule.as_str()).collect::<Vec<_>>(),
            ["host-silent"]
        );
        latest.record(&[Sample::new("appliance.service_healthy", &down, 0.0, 62_000)]);
        let second = alerts.evaluate(&rules, &latest, 62_000).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].rule, "service-down");
    }
}
