//! Time series in `monitor.redb`: raw samples, and 5-minute and 1-hour rollups written in
//! the same transaction, each kept for its own retention. The number of series is
//! bounded, so the database is too.

use kopa_store::{Store, StoreError, Table, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Label names and values of one series.
pub type Labels = BTreeMap<String, String>;

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
    pub time_ms: u64,
}

impl Sample {
    pub fn new(name: &str, labels: &[(&str, &str)], value: f64, time_ms: u64) -> Self {
        Self {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
            time_ms,
        }
    }

    /// The series this sample belongs to, as `name{a="x",b="y"}`.
    pub fn series_key(&self) -> String {
        series_key(&self.name, &self.labels)
    }
}

pub fn series_key(name: &str, labels: &Labels) -> String {
    let mut key = name.to_owned();
    if !labels.is_empty() {
        key.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(k);
            key.push_str("=\"");
            key.push_str(&v.replace('\\', "\\\\").replace('"', "\\\""));
            key.push('"');
        }
        key.push('}');
    }
    key
}

/// A series' identity as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesMeta {
    pub id: u32,
    pub name: String,
    pub labels: Labels,
}

/// Several samples of one bucket summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u32,
    pub last: f64,
}

impl Agg {
    fn of(v: f64) -> Self {
        Self {
            min: v,
            max: v,
            sum: v,
            count: 1,
            last: v,
        }
    }

    fn add(&mut self, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
        self.last = v;
    }

    pub fn mean(&self) -> f64 {
        self.sum / f64::from(self.count.max(1))
    }
}

const SERIES: Table<String, SeriesMeta> = Table::new("ts_series");
const RAW: Table<(u32, u64), f64> = Table::new("ts_raw");
const M5: Table<(u32, u64), Agg> = Table::new("ts_5m");
const H1: Table<(u32, u64), Agg> = Table::new("ts_1h");

/// Creates the tables (migration 1 of the monitor database).
pub(crate) fn create_tables(txn: &WriteTxn) -> Result<(), StoreError> {
    txn.open_table(&SERIES)?;
    txn.open_table(&RAW)?;
    txn.open_table(&M5)?;
    txn.open_table(&H1)
}

const FIVE_MIN_MS: u64 = 300_000;
const HOUR_MS: u64 = 3_600_000;

/// How long each resolution is kept, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: u64,
    pub m5_ms: u64,
    pub h1_ms: u64,
}

impl Retention {
    pub fn from_config(c: &kopa_config::MonitorConfig) -> Self {
        Self {
            raw_ms: u64::from(c.raw_retention_hours) * HOUR_MS,
            m5_ms: u64::from(c.rollup_5m_retention_days) * 24 * HOUR_MS,
            h1_ms: u64::from(c.rollup_1h_retention_days) * 24 * HOUR_MS,
        }
    }
}

/// Resolution of a query's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Raw,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    Hour,
}

impl Resolution {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(Self::Raw),
            "5m" => Some(Self::FiveMinutes),
            "1h" => Some(Self::Hour),
            _ => None,
        }
    }

    /// The finest resolution that still holds `from` and gives at most a few thousand
    /// points over `[from, to)`.
    pub fn choose(from: u64, to: u64, now: u64, r: &Retention) -> Self {
        let span = to.saturating_sub(from);
        if from >= now.saturating_sub(r.raw_ms) && span <= 6 * HOUR_MS {
            Self::Raw
        } else if from >= now.saturating_sub(r.m5_ms) && span <= 3 * 24 * HOUR_MS {
            Self::FiveMinutes
        } else {
            Self::Hour
        }
    }
}

/// One point of a query answer; for rollups `value` is the mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub t: u64,
    pub value: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

/// Which series a query reads: a name and label values every series must have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl Selector {
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        name == self.name
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
    }
}

/// The points of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesData {
    pub name: String,
    pub labels: Labels,
    pub resolution: Resolution,
    pub points: Vec<Point>,
}

/// Most points one series returns from a query.
pub const MAX_POINTS: usize = 20_000;

/// The time-series database.
#[derive(Debug, Clone)]
pub struct Series {
    store: Store,
    metas: Arc<Mutex<HashMap<String, SeriesMeta>>>,
    max_series: usize,
    retention: Retention,
    refused: Arc<AtomicU64>,
    ingested: Arc<AtomicU64>,
}

impl Series {
    /// Loads the series directory.
    pub fn open(store: Store, max_series: usize, retention: Retention) -> Result<Self, StoreError> {
        let metas = store
            .read_blocking(|txn| txn.iter(&SERIES))?
            .into_iter()
            .collect();
        Ok(Self {
            store,
            metas: Arc::new(Mutex::new(metas)),
            max_series,
            retention,
            refused: Arc::default(),
            ingested: Arc::default(),
        })
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Samples dropped because the series limit was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Samples stored since start.
    pub fn ingested(&self) -> u64 {
        self.ingested.load(Ordering::Relaxed)
    }

    pub fn series_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SeriesMeta>> {
        self.metas.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `samples` (raw and both rollups) in one durable transaction; returns how many
    /// were stored. Non-finite values and samples of series beyond the limit are dropped.
    pub fn ingest_blocking(&self, samples: &[Sample]) -> Result<usize, StoreError> {
        if samples.is_empty() {
            return Ok(0);
        }
        // Writers are serialised by redb; the directory lock is held across the commit so
        // that ids are handed out in the order they are stored.
        let mut metas = self.lock();
        let mut created = Vec::new();
        let stored = self.store.write_blocking(|txn| {
            let mut stored = 0;
            for s in samples.iter().filter(|s| s.value.is_finite()) {
                let key = s.series_key();
                let id = match metas.get(&key) {
                    Some(m) => m.id,
                    None => {
                        if metas.len() >= self.max_series {
                            self.refused.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let id = u32::try_from(metas.len() + 1).unwrap_or(u32::MAX);
                        let meta = SeriesMeta {
                            id,
                            name: s.name.clone(),
                            labels: s.labels.clone(),
                        };
                        txn.insert(&SERIES, &key, &meta)?;
                        metas.insert(key.clone(), meta);
                        created.push(key);
                        id
                    }
                };
                txn.insert(&RAW, &(id, s.time_ms), &s.value)?;
                for (table, width) in [(M5, FIVE_MIN_MS), (H1, HOUR_MS)] {
                    let bucket = (id, s.time_ms - s.time_ms % width);
                    let agg = match txn.get(&table, &bucket)? {
                        Some(mut a) => {
                            a.add(s.value);
                            a
                        }
                        None => Agg::of(s.value),
                    };
                    txn.insert(&table, &bucket, &agg)?;
                }
                stored += 1;
            }
            Ok(stored)
        });
        match stored {
            Ok(n) => {
                self.ingested.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                // Nothing was committed: forget the ids handed out in this transaction.
                for key in created {
                    metas.remove(&key);
                }
                Err(e)
            }
        }
    }

    /// Drops data older than each resolution's retention, at most `budget` records per
    /// table and call (call again while it returns more than zero); returns how many
    /// were dropped.
    pub fn sweep_blocking(&self, now_ms: u64, budget: usize) -> Result<usize, StoreError> {
        let ids: Vec<u32> = self.lock().values().map(|m| m.id).collect();
        let r = self.retention;
        self.store.write_blocking(|txn| {
            let mut total = 0;
            let raw_cutoff = now_ms.saturating_sub(r.raw_ms);
            let mut dropped = 0;
            for id in &ids {
                if dropped >= budget {
                    break;
                }
                dropped +=
                    txn.remove_range(&RAW, &(*id, 0), &(*id, raw_cutoff), budget - dropped)?;
            }
            total += dropped;
            for (table, keep) in [(M5, r.m5_ms), (H1, r.h1_ms)] {
                let cutoff = now_ms.saturating_sub(keep);
                let mut dropped = 0;
                for id in &ids {
                    if dropped >= budget {
                        break;
                    }
                    dropped +=
                        txn.remove_range(&table, &(*id, 0), &(*id, cutoff), budget - dropped)?;
                }
                total += dropped;
            }
            Ok(total)
        })
    }

    /// Every series `sel` matches, with its points in `[from, to)` at `resolution` (chosen
    /// from the span when `None`); `keep` may refuse a series (tenant scoping).
    pub fn query_blocking(
        &self,
        sel: &Selector,
        from: u64,
        to: u64,
        now: u64,
        resolution: Option<Resolution>,
        keep: &dyn Fn(&Labels) -> bool,
    ) -> Result<Vec<SeriesData>, StoreError> {
        let resolution =
            resolution.unwrap_or_else(|| Resolution::choose(from, to, now, &self.retention));
        let mut metas: Vec<SeriesMeta> = self
            .lock()
            .values()
            .filter(|m| sel.matches(&m.name, &m.labels) && keep(&m.labels))
            .cloned()
            .collect();
        metas.sort_by(|a, b| a.labels.cmp(&b.labels));
        self.store.read_blocking(|txn| {
            let mut out = Vec::with_capacity(metas.len());
            for m in metas {
                let (start, end) = ((m.id, from), (m.id, to));
                let points = match resolution {
                    Resolution::Raw => txn
                        .range_between(&RAW, &start, &end, MAX_POINTS)?
                        .into_iter()
                        .map(|((_, t), v)| Point {
                            t,
                            value: v,
                            min: v,
                            max: v,
                            last: v,
                        })
                        .collect(),
                    Resolution::FiveMinutes | Resolution::Hour => {
                        let (table, width) = if resolution == Resolution::Hour {
                            (H1, HOUR_MS)
                        } else {
                            (M5, FIVE_MIN_MS)
                        };
                        let start = (m.id, from - from % width);
                        txn.range_between(&table, &start, &end, MAX_POINTS)?
                            .into_iter()
                            .map(|((_, t), a)| Point {
                                t,
                                value: a.mean(),
                                min: a.min,
                                max: a.max,
                                last: a.last,
                            })
                            .collect()
                    }
                };
                out.push(SeriesData {
                    name: m.name,
                    labels: m.labels,
                    resolution,
                    points,
                });
            }
            Ok(out)
        })
    }

    /// How many raw records, 5-minute and hourly buckets are stored.
    pub fn sizes_blocking(&self) -> Result<[u64; 3], StoreError> {
        self.store
            .read_blocking(|txn| Ok([txn.len(&RAW)?, txn.len(&M5)?, txn.len(&H1)?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn open(dir: &std::path::Path, max: usize) -> Series {
        let store = Store::open(dir, &crate::SCHEMA).unwrap();
        Series::open(
            store,
            max,
            Retention {
                raw_ms: 2 * HOUR_MS,
                m5_ms: 24 * HOUR_MS,
                h1_ms: 30 * 24 * HOUR_MS,
            },
        )
        .unwrap()
    }

    #[test]
    fn rollups_summarise_and_retention_drops_old_data() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 100);
        let t0 = 1_000 * HOUR_MS;
        let samples: Vec<_> = (0..60u64)
            .map(|i| Sample::new("host.load1", &[], i as f64, t0 + i * 10_000))
            .collect();
        assert_eq!(s.ingest_blocking(&samples).unwrap(), 60);
        let sel = Selector {
            name: "host.load1".into(),
            labels: vec![],
        };
        let all = |_: &Labels| true;
        let raw = s
            .query_blocking(&sel, t0, t0 + HOUR_MS, t0 + HOUR_MS, None, &all)
            .unwrap();
        assert_eq!(raw[0].resolution, Resolution::Raw);
        assert_eq!(raw[0].points.len(), 60);
        let m5 = s
            .query_blocking(
                &sel,
                t0,
                t0 + HOUR_MS,
                t0 + HOUR_MS,
                Some(Resolution::FiveMinutes),
                &all,
            )
            .unwrap();
        // 600 s of samples every 10 s: two 5-minute buckets of 30 samples.
        let p = &m5[0].points;
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].min, p[0].max, p[0].last), (0.0, 29.0, 29.0));
        assert!((p[0].value - 14.5).abs() < 1e-9);
        assert_eq!((p[1].min, p[1].max), (30.0, 59.0));

        // Three hours later the raw data is past its retention; the rollups remain.
        let later = t0 + 3 * HOUR_MS;
        assert_eq!(s.sweep_blocking(later, 1000).unwrap(), 60);
        let raw = s
            .query_blocking(&sel, t0, later, later, Some(Resolution::Raw), &all)
            .unwrap();
        assert!(raw[0].points.is_empty());
        let hour = s
            .query_blocking(&sel, t0, later, later, None, &all)
            .unwrap();
        assert_eq!(hour[0].resolution, Resolution::FiveMinutes);
        assert_eq!(hour[0].points.len(), 2);
        assert_eq!(s.sizes_blocking().unwrap(), [0, 2, 1]);
    }

    #[test]
    fn the_series_limit_holds_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 2);
        let batch: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|t| Sample::new("auth.failed_logins_total", &[("tenant", t)], 1.0, 1_000))
            .chain([Sample::new("x", &[], f64::NAN, 1_000)])
            .collect();
        assert_eq!(s.ingest_blocking(&batch).unwrap(), 2);
        assert_eq!(s.refused(), 1);
        drop(s);
        let s = open(dir.path(), 2);
        assert_eq!(s.series_count(), 2);
        let sel = Selector {
            name: "auth.failed_logins_total".into(),
            labels: vec![("tenant".into(), "b".into())],
        };
        let got = s
            .query_blocking(&sel, 0, 2_000, 2_000, None, &|_| true)
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels["tenant"], "b");
        // Tenant scoping refuses what `keep` refuses.
        let none = s
            .query_blocking(&sel, 0, 2_000, 2_000, None, &|l| {
                l.get("tenant").is_some_and(|t| t == "a")
            })
            .unwrap();
        assert!(none.is_empty());
    }
}
