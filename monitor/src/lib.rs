//! The security monitor: collectors on schedules (host, certificates, the audit log, the
//! appliance itself, virtual servers) → time series in `monitor.redb` with rollups and
//! retention → controls from a data catalogue, evaluated into pass/fail with evidence →
//! alert rules with e-mail and signed webhooks → the security officers' API and
//! `/metrics`. See docs/monitor.md.

pub mod alerts;
pub mod collect;
pub mod controls;
pub mod http;
pub mod latest;
pub mod notify;
pub mod prom;
pub mod series;

use alerts::{Alert, Alerts, Rule};
use collect::audit::AuditFollower;
use collect::certs::{CertInfo, CertProblem, CertSource};
use controls::{Catalogue, ControlResult, Status};
use kopa_config::MonitorConfig;
use kopa_core::Clock;
use kopa_core::vm::VmMetricsSource;
use kopa_store::audit::AuditLog;
use kopa_store::{Migration, Schema, Store, StoreError, Table, WriteTxn};
use kopa_web::ReadinessProbe;
use latest::Latest;
use serde::{Deserialize, Serialize};
use series::{Retention, Sample, Series};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The monitor database.
pub static SCHEMA: Schema = Schema {
    service: "monitor",
    cache_bytes: None,
    migrations: &[Migration {
        version: 1,
        description: "time series, audit follower, alerts, control results",
        apply: create_tables,
    }],
};

const RESULTS: Table<(String, String), ControlResult> = Table::new("control_results");
const CHANGES: Table<(u64, u64), ControlChange> = Table::new("control_changes");

fn create_tables(txn: &WriteTxn) -> Result<(), StoreError> {
    series::create_tables(txn)?;
    collect::audit::create_tables(txn)?;
    alerts::create_tables(txn)?;
    txn.open_table(&RESULTS)?;
    txn.open_table(&CHANGES)
}

/// Every fact (series name) the collectors produce that a control may check.
pub const FACTS: [&str; 33] = [
    "config.login.lockout_threshold",
    "config.login.lockout_secs",
    "config.mfa.privileged_required",
    "config.session.idle_timeout_secs",
    "config.session.absolute_timeout_secs",
    "config.audit.retention_days",
    "config.local.password_min_length",
    "config.ldap.insecure_directories",
    "config.tls.min_version",
    "cert.days_left",
    "cert.weak_key",
    "cert.weak_signature",
    "auth.failed_logins_1h",
    "auth.lockouts_24h",
    "auth.success_after_failures_24h",
    "auth.privileged_logins_24h",
    "auth.privileged_mfa_ratio_24h",
    "auth.accounts_inactive",
    "appliance.service_healthy",
    "appliance.backup_age_hours",
    "appliance.backup_taken",
    "appliance.data_disk_free_ratio",
    "appliance.time_synchronized",
    "appliance.firewall_active",
    "appliance.security_updates_pending",
    "appliance.audit_chain_ok",
    "host.cpu.usage_ratio",
    "host.memory.used_ratio",
    "host.disk.free_ratio",
    "host.load1_per_core",
    "vm.count",
    "vm.quota_exceeded",
    "auth.failed_logins_total",
];

/// A control whose status changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlChange {
    pub at_ms: u64,
    pub control: String,
    pub scope: String,
    pub from: Option<Status>,
    pub to: Status,
    pub observed: Option<f64>,
}

/// What the monitor is given by the appliance.
pub struct Deps {
    pub config: MonitorConfig,
    /// `config.*` facts, computed once at start.
    pub config_facts: Vec<Sample>,
    /// Tenants with a directory: tenant controls are evaluated for each.
    pub tenants: BTreeSet<String>,
    pub store: Store,
    pub audit: AuditLog,
    pub clock: Arc<dyn Clock>,
    pub probes: Vec<Arc<dyn ReadinessProbe>>,
    pub data_dir: PathBuf,
    /// Kopa's own certificates, asked for at each check (the TLS one may be reloaded).
    pub own_certs: Arc<dyn Fn() -> Vec<CertSource> + Send + Sync>,
    pub vms: Option<Arc<dyn VmMetricsSource>>,
    pub notifier: notify::Notifier,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

/// How long and how often each collector ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectorStats {
    pub runs: u64,
    pub total_secs: f64,
    pub last_secs: f64,
    pub errors: u64,
}

struct Inner {
    config: MonitorConfig,
    config_facts: Vec<Sample>,
    series: Series,
    latest: Latest,
    alerts: Alerts,
    catalogue: Catalogue,
    rules: Vec<Rule>,
    store: Store,
    clock: Arc<dyn Clock>,
    tenants: RwLock<BTreeSet<String>>,
    follower: tokio::sync::Mutex<AuditFollower>,
    certs: RwLock<(Vec<CertInfo>, Vec<CertProblem>)>,
    results: RwLock<Vec<ControlResult>>,
    stats: Mutex<BTreeMap<String, CollectorStats>>,
    notifier: notify::Notifier,
    audit: AuditLog,
    own_certs: Arc<dyn Fn() -> Vec<CertSource> + Send + Sync>,
    vms: Option<Arc<dyn VmMetricsSource>>,
    appliance: tokio::sync::Mutex<collect::appliance::Appliance>,
    host: Mutex<collect::host::Host>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The running monitor; clones share it.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// The in-memory history the alert rules can look back over.
const LATEST_KEEP_MS: u64 = 3 * 3_600_000;

impl Monitor {
    /// Opens the monitor's state and catches up with the audit log; call [`Monitor::run`]
    /// to start the schedules.
    pub async fn open(d: Deps) -> Result<Self, String> {
        let catalogue = Catalogue::builtin()?;
        let mut rules: Vec<Rule> = alerts::builtin_rules()
            .into_iter()
            .filter(|r| !d.config.disabled_rules.contains(&r.id))
            .collect();
        rules.extend(d.config.alert_rules.iter().filter_map(Rule::from_config));
        let retention = Retention::from_config(&d.config);
        let max = usize::try_from(d.config.max_series).unwrap_or(usize::MAX);
        let series = {
            let store = d.store.clone();
            tokio::task::spawn_blocking(move || Series::open(store, max, retention))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        let now = d.clock.now_millis();
        let mut follower = AuditFollower::start(
            d.audit.clone(),
            d.store.clone(),
            d.config.inactive_account_days,
            &d.tenants,
            now,
        )
        .await?;
        let results: Vec<ControlResult> = d
            .store
            .read(|txn| txn.iter(&RESULTS))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let keep = rules
            .iter()
            .map(|r| r.window_ms.saturating_add(60_000))
            .max()
            .unwrap_or(0)
            .max(LATEST_KEEP_MS);
        let latest = Latest::new(keep);
        latest.record(&d.config_facts);
        // Records written while the monitor was not running (or before it ever ran) are
        // history, not a burst: read them before the baseline the increases start from.
        let baseline = follower.poll(now).await?;
        // The counters' recent history, from the database, so that an increase over a
        // window spanning the restart is still measured.
        for rule in rules
            .iter()
            .filter(|r| r.kind == kopa_config::RuleKind::Increase)
        {
            let sel = series::Selector {
                name: rule.series.clone(),
                labels: Vec::new(),
            };
            let (s, from) = (series.clone(), now.saturating_sub(rule.window_ms));
            let got = tokio::task::spawn_blocking(move || {
                s.query_blocking(&sel, from, now, now, Some(series::Resolution::Raw), &|_| {
                    true
                })
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            for data in got {
                let samples: Vec<Sample> = data
                    .points
                    .iter()
                    .map(|p| Sample {
                        name: data.name.clone(),
                        labels: data.labels.clone(),
                        value: p.value,
                        time_ms: p.t,
                    })
                    .collect();
                latest.record(&samples);
            }
        }
        latest.record(&baseline);
        let slow = Duration::from_secs(3600);
        let appliance =
            collect::appliance::Appliance::new(d.probes, d.data_dir, d.audit.clone(), slow);
        Ok(Self {
            inner: Arc::new(Inner {
                config_facts: d.config_facts,
                series,
                latest,
                alerts: Alerts::new(d.store.clone()),
                catalogue,
                rules,
                store: d.store,
                clock: d.clock,
                tenants: RwLock::new(
                    d.tenants
                        .into_iter()
                        .filter(|t| t != controls::PLATFORM)
                        .collect(),
                ),
                follower: tokio::sync::Mutex::new(follower),
                certs: RwLock::default(),
                results: RwLock::new(results),
                stats: Mutex::default(),
                notifier: d.notifier,
                audit: d.audit,
                own_certs: d.own_certs,
                vms: d.vms,
                appliance: tokio::sync::Mutex::new(appliance),
                host: Mutex::new(collect::host::Host::new()),
                tasks: Mutex::default(),
                config: d.config,
            }),
        })
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_millis()
    }

    pub fn series(&self) -> &Series {
        &self.inner.series
    }

    pub fn latest(&self) -> &Latest {
        &self.inner.latest
    }

    pub fn alerts(&self) -> &Alerts {
        &self.inner.alerts
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    pub fn profiles(&self) -> &[String] {
        &self.inner.config.profiles
    }

    pub fn results(&self) -> Vec<ControlResult> {
        read(&self.inner.results).clone()
    }

    pub fn certificates(&self) -> (Vec<CertInfo>, Vec<CertProblem>) {
        read(&self.inner.certs).clone()
    }

    pub fn tenants(&self) -> BTreeSet<String> {
        read(&self.inner.tenants).clone()
    }

    pub fn stats(&self) -> BTreeMap<String, CollectorStats> {
        self.inner
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The audit follower (offenders, hourly counts).
    pub async fn follower(&self) -> tokio::sync::MutexGuard<'_, AuditFollower> {
        self.inner.follower.lock().await
    }

    /// Stores samples and keeps them as the latest values.
    pub async fn ingest(&self, samples: Vec<Sample>) -> Result<usize, String> {
        self.inner.latest.record(&samples);
        let series = self.inner.series.clone();
        tokio::task::spawn_blocking(move || series.ingest_blocking(&samples))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn account(&self, collector: &str, started: Instant, ok: bool) {
        let secs = started.elapsed().as_secs_f64();
        let mut stats = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let s = stats.entry(collector.to_owned()).or_default();
        s.runs += 1;
        s.total_secs += secs;
        s.last_secs = secs;
        s.errors += u64::from(!ok);
    }

    /// Runs one collector once and stores what it read.
    pub async fn collect(&self, collector: &str) {
        let started = Instant::now();
        let now = self.now();
        let got: Result<Vec<Sample>, String> = match collector {
            "host" => {
                let mut host = self
                    .inner
                    .host
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                Ok(host.sample(now))
            }
            "audit" => self.inner.follower.lock().await.poll(now).await,
            "certificates" => {
                let mut sources = (self.inner.own_certs)();
                sources.extend(self.inner.config.certificate_files.iter().map(|f| {
                    CertSource::File {
                        name: f.name.clone(),
                        path: f.path.clone(),
                        tenant: None,
                    }
                }));
                sources.extend(self.inner.config.tls_endpoints.iter().map(|e| {
                    CertSource::Endpoint {
                        name: e.name.clone(),
                        address: e.address.clone(),
                    }
                }));
                let (certs, problems) = collect::certs::read_all(&sources, now).await;
                let samples = collect::certs::samples(&certs, now);
                let names: BTreeSet<String> = certs.iter().map(|c| c.name.clone()).collect();
                for fact in ["cert.days_left", "cert.weak_key", "cert.weak_signature"] {
                    self.inner
                        .latest
                        .retain_of(fact, &|l| l.get("cert").is_some_and(|c| names.contains(c)));
                }
                *write(&self.inner.certs) = (certs, problems);
                Ok(samples)
            }
            "appliance" => {
                let mut samples = self.inner.appliance.lock().await.sample(now).await;
                // The configuration facts are re-stamped so they never go stale.
                samples.extend(self.inner.config_facts.iter().map(|s| Sample {
                    time_ms: now,
                    ..s.clone()
                }));
                Ok(samples)
            }
            "vm" => match &self.inner.vms {
                Some(source) => collect::vm_samples(source.as_ref(), now),
                None => Ok(Vec::new()),
            },
            other => Err(format!("no collector {other}")),
        };
        let ok = match got {
            Ok(samples) => match self.ingest(samples).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(collector, error = %e, "monitor samples not stored");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(collector, error = %e, "monitor collector failed");
                false
            }
        };
        self.account(collector, started, ok);
    }

    /// Evaluates the controls and the alert rules once; sends notifications for alerts
    /// that started firing or resolved.
    pub async fn evaluate(&self) {
        let now = self.now();
        {
            let seen: Vec<String> = self
                .inner
                .latest
                .values_of("auth.logins_total")
                .into_iter()
                .filter_map(|(l, _, _)| l.get("tenant").cloned())
                .filter(|t| t != collect::audit::NO_TENANT && t != controls::PLATFORM)
                .collect();
            write(&self.inner.tenants).extend(seen);
        }
        let tenants = self.tenants();
        let results = controls::evaluate(
            &self.inner.catalogue,
            &self.inner.config.profiles,
            &self.inner.latest,
            &tenants,
            now,
        );
        let mut samples = Vec::new();
        for scope in std::iter::once(None).chain(
            std::iter::once(controls::PLATFORM)
                .chain(tenants.iter().map(String::as_str))
                .map(Some),
        ) {
            let scores = controls::scores(
                &self.inner.catalogue,
                &self.inner.config.profiles,
                &results,
                scope,
            );
            let scope_label = scope.unwrap_or("all");
            for (profile, score) in scores {
                samples.push(Sample::new(
                    "compliance.score",
                    &[("profile", &profile), ("scope", scope_label)],
                    score,
                    now,
                ));
            }
        }
        let previous: BTreeMap<(String, String), Status> = read(&self.inner.results)
            .iter()
            .map(|r| ((r.control.clone(), r.scope.clone()), r.status))
            .collect();
        let changes: Vec<ControlChange> = results
            .iter()
            .filter(|r| previous.get(&(r.control.clone(), r.scope.clone())) != Some(&r.status))
            .map(|r| ControlChange {
                at_ms: now,
                control: r.control.clone(),
                scope: r.scope.clone(),
                from: previous.get(&(r.control.clone(), r.scope.clone())).copied(),
                to: r.status,
                observed: r.observed,
            })
            .collect();
        let to_store = results.clone();
        let stored = self
            .inner
            .store
            .write(move |txn| {
                for r in &to_store {
                    txn.insert(&RESULTS, &(r.control.clone(), r.scope.clone()), r)?;
                }
                let mut seq = txn.last(&CHANGES)?.map_or(0, |((_, s), _)| s);
                for c in &changes {
                    seq += 1;
                    txn.insert(&CHANGES, &(c.at_ms, seq), c)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "control results not stored");
        }
        *write(&self.inner.results) = results;

        match self
            .inner
            .alerts
            .evaluate(&self.inner.rules, &self.inner.latest, now)
            .await
        {
            Ok(changed) => {
                for alert in changed {
                    self.spawn_notify(alert);
                }
            }
            Err(e) => tracing::warn!(error = %e, "alert evaluation failed"),
        }
        if let Ok(all) = self.inner.alerts.list().await {
            for sev in ["low", "medium", "high", "critical"] {
                let n = all
                    .iter()
                    .filter(|a| a.state == alerts::AlertState::Firing && a.severity.as_str() == sev)
                    .count();
                samples.push(Sample::new(
                    "alerts.firing",
                    &[("severity", sev)],
                    n as f64,
                    now,
                ));
            }
        }
        if let Err(e) = self.ingest(samples).await {
            tracing::warn!(error = %e, "compliance scores not stored");
        }
    }

    fn spawn_notify(&self, alert: Alert) {
        let me = self.clone();
        tokio::spawn(async move {
            let now = me.now();
            for (ok, line) in me.inner.notifier.send(&alert, now / 1000).await {
                if !ok {
                    tracing::warn!(alert = %alert.id, result = %line, "alert notification failed");
                }
                me.inner
                    .alerts
                    .record_delivery(alert.id.clone(), me.now(), ok, line)
                    .await;
            }
        });
    }

    /// Status changes of controls, newest first.
    pub async fn control_changes(&self, limit: usize) -> Result<Vec<ControlChange>, StoreError> {
        let mut all: Vec<ControlChange> = self
            .inner
            .store
            .read(|txn| txn.iter(&CHANGES))
            .await?
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    /// Starts every schedule: collectors, evaluation, retention sweeps.
    pub fn run(&self) {
        let c = &self.inner.config;
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, secs) in [
            ("host", c.host_interval_secs),
            ("audit", c.audit_interval_secs),
            ("certificates", c.certificate_interval_secs),
            ("appliance", c.appliance_interval_secs),
            ("vm", c.vm_interval_secs),
        ] {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(secs));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    me.collect(name).await;
                }
            }));
        }
        let me = self.clone();
        let every = Duration::from_secs(c.evaluate_interval_secs);
        tasks.push(tokio::spawn(async move {
            // Let the first readings arrive before the first verdict.
            tokio::time::sleep(every.min(Duration::from_secs(5))).await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.evaluate().await;
            }
        }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                let series = me.inner.series.clone();
                let now = me.now();
                // Transactions of at most 50 000 records per table, until nothing is left
                // to drop: the sweep keeps up with any inflow.
                let swept = tokio::task::spawn_blocking(move || {
                    for _ in 0..1000 {
                        if series.sweep_blocking(now, 50_000)? == 0 {
                            break;
                        }
                    }
                    Ok::<_, StoreError>(())
                })
                .await;
                if let Ok(Err(e)) = swept {
                    tracing::warn!(error = %e, "time series retention failed");
                }
                // Alert history and control changes are kept as long as hourly rollups.
                let keep = u64::from(me.inner.config.rollup_1h_retention_days) * 86_400_000;
                let cutoff = now.saturating_sub(keep);
                let trimmed = me
                    .inner
                    .store
                    .write(move |txn| {
                        txn.remove_range(&CHANGES, &(0, 0), &(cutoff, 0), 100_000)?;
                        alerts::trim_history(txn, cutoff)
                    })
                    .await;
                if let Err(e) = trimmed {
                    tracing::warn!(error = %e, "monitor history retention failed");
                }
            }
        }));
    }

    /// Stops every schedule.
    pub fn stop(&self) {
        for t in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }

    /// Everything `/metrics` shows: the latest values plus the monitor's own figures.
    pub fn exposition(&self) -> String {
        let mut values: Vec<(String, series::Labels, f64)> = self
            .inner
            .latest
            .snapshot()
            .into_iter()
            .filter(|(name, _, _)| !name.starts_with("config."))
            .collect();
        let one = |k: &str, v: &str| -> series::Labels {
            [(k.to_owned(), v.to_owned())].into_iter().collect()
        };
        for (name, s) in self.stats() {
            values.push((
                "monitor.collector_seconds_total".into(),
                one("collector", &name),
                s.total_secs,
            ));
            values.push((
                "monitor.collector_runs_total".into(),
                one("collector", &name),
                s.runs as f64,
            ));
        }
        let s = &self.inner.series;
        values.push((
            "monitor.series".into(),
            series::Labels::new(),
            s.series_count() as f64,
        ));
        values.push((
            "monitor.samples_ingested_total".into(),
            series::Labels::new(),
            s.ingested() as f64,
        ));
        values.push((
            "monitor.series_refused_total".into(),
            series::Labels::new(),
            s.refused() as f64,
        ));
        prom::render(&values)
    }
}
