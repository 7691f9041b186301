//! The monitor's costs, in one run on this machine, each next to a baseline:
//! - the host collector's CPU time per reading (sysinfo plus storing its samples), as a
//!   share of one core at the default 10-second interval;
//! - samples ingested per second (raw plus both rollups, durable), next to plain durable
//!   inserts of the same values into one redb table;
//! - dashboard queries over 30 days of data (ten tenants' counters every 10 s), next to a
//!   read of one series' 30 days of raw points.
//!
//! Prints one JSON object. `cargo run --release -p kopa-monitor --example monitor_bench -- DIR`

// A benchmark stops at the first failure: there is nothing to serve or recover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kopa_monitor::collect::host::Host;
use kopa_monitor::series::{Labels, Resolution, Retention, Sample, Selector, Series};
use kopa_store::{Store, Table};
use serde_json::json;
use std::time::Instant;

const DAY: u64 = 86_400_000;

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state field (3) here.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn timed(runs: usize, mut f: impl FnMut()) -> serde_json::Value {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    json!({"p50_ms": percentile(ms.clone(), 0.5), "p99_ms": percentile(ms, 0.99)})
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let retention = Retention {
        raw_ms: 2 * DAY,
        m5_ms: 35 * DAY,
        h1_ms: 400 * DAY,
    };

    // 1. The host collector at its default interval.
    let host_dir = dir.join("host");
    let store = Store::open(&host_dir, &kopa_monitor::SCHEMA).unwrap();
    let series = Series::open(store, 20_000, retention).unwrap();
    let mut host = Host::new();
    let readings = 200;
    let cpu0 = cpu_secs();
    let wall0 = Instant::now();
    let mut per_reading = 0;
    for i in 0..readings {
        let samples = host.sample(1_000_000 + i * 10_000);
        per_reading = samples.len();
        series.ingest_blocking(&samples).unwrap();
    }
    let cpu_per_reading = (cpu_secs() - cpu0) / readings as f64;
    let wall_per_reading = wall0.elapsed().as_secs_f64() / readings as f64;

    // 2. Ingest: batches of 1000 samples (100 series), durable, with rollups.
    let ingest_dir = dir.join("ingest");
    let store = Store::open(&ingest_dir, &kopa_monitor::SCHEMA).unwrap();
    let series = Series::open(store.clone(), 20_000, retention).unwrap();
    let batches = 200u64;
    let t = Instant::now();
    for b in 0..batches {
        let batch: Vec<Sample> = (0..1000u64)
            .map(|i| {
                let tenant = format!("t{}", i % 100);
                Sample::new(
                    "bench.gauge",
                    &[("tenant", &tenant)],
                    (b * i) as f64,
                    b * 10_000 + i,
                )
            })
            .collect();
        series.ingest_blocking(&batch).unwrap();
    }
    let ingest_rate = (batches * 1000) as f64 / t.elapsed().as_secs_f64();
    const PLAIN: Table<(u32, u64), f64> = Table::new("bench_plain");
    let t = Instant::now();
    for b in 0..batches {
        store
            .write_blocking(|txn| {
                for i in 0..1000u64 {
                    txn.insert(
                        &PLAIN,
                        &((i % 100) as u32, b * 10_000 + i),
                        &((b * i) as f64),
                    )?;
                }
                Ok(())
            })
            .unwrap();
    }
    let plain_rate = (batches * 1000) as f64 / t.elapsed().as_secs_f64();

    // 3. Thirty days of ten tenants' counters every 10 s, then the dashboards' queries.
    let month_dir = dir.join("month");
    let store = Store::open(&month_dir, &kopa_monitor::SCHEMA).unwrap();
    let series = Series::open(store, 20_000, retention).unwrap();
    let now = 100 * DAY;
    let start = now - 30 * DAY;
    let tenants: Vec<String> = (0..10).map(|i| format!("tenant{i}")).collect();
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    let mut count = 0u64;
    let mut ts = start;
    while ts < now {
        for (i, tenant) in tenants.iter().enumerate() {
            let v = ((ts - start) / 60_000 + i as u64) as f64;
            batch.push(Sample::new(
                "auth.failed_logins_total",
                &[("tenant", tenant)],
                v,
                ts,
            ));
        }
        if batch.len() >= 10_000 {
            count += batch.len() as u64;
            series.ingest_blocking(&batch).unwrap();
            batch.clear();
        }
        ts += 10_000;
    }
    count += batch.len() as u64;
    series.ingest_blocking(&batch).unwrap();
    let load_secs = t.elapsed().as_secs_f64();
    let all = |_: &Labels| true;
    let one = Selector {
        name: "auth.failed_logins_total".into(),
        labels: vec![("tenant".into(), "tenant3".into())],
    };
    let every = Selector {
        name: "auth.failed_logins_total".into(),
        labels: vec![],
    };
    // Baseline: one series' 30 days of raw points (what a query without rollups reads).
    // One query returns at most MAX_POINTS points, so it is read a day at a time.
    let baseline = timed(5, || {
        let mut points = 0;
        for d in 0..30 {
            let from = start + d * DAY;
            let got = series
                .query_blocking(&one, from, from + DAY, now, Some(Resolution::Raw), &all)
                .unwrap();
            points += got[0].points.len();
        }
        assert_eq!(points, 30 * 8640);
    });
    let q30_one = timed(20, || {
        let got = series
            .query_blocking(&one, start, now, now, None, &all)
            .unwrap();
        assert_eq!(got[0].resolution, Resolution::Hour);
    });
    let q30_all = timed(20, || {
        let got = series
            .query_blocking(&every, start, now, now, None, &all)
            .unwrap();
        assert_eq!(got.len(), 10);
    });
    let q24_all = timed(20, || {
        series
            .query_blocking(&every, now - DAY, now, now, None, &all)
            .unwrap();
    });
    let q1h_all = timed(20, || {
        series
            .query_blocking(&every, now - DAY / 24, now, now, None, &all)
            .unwrap();
    });
    let t = Instant::now();
    let mut swept = 0;
    loop {
        let n = series.sweep_blocking(now, 200_000).unwrap();
        swept += n;
        if n == 0 {
            break;
        }
    }
    let sweep_secs = t.elapsed().as_secs_f64();
    let sizes = series.sizes_blocking().unwrap();

    println!(
        "{}",
        json!({
            "host_collector": {
                "samples_per_reading": per_reading,
                "cpu_ms_per_reading": cpu_per_reading * 1000.0,
                "wall_ms_per_reading": wall_per_reading * 1000.0,
                "share_of_one_core_at_10s": cpu_per_reading / 10.0,
            },
            "ingest": {"samples_per_s": ingest_rate, "baseline_plain_inserts_per_s": plain_rate},
            "month": {
                "samples": count,
                "load_s": load_secs,
                "baseline_raw_30d_one_series": baseline,
                "q_30d_one_series": q30_one,
                "q_30d_ten_series": q30_all,
                "q_24h_ten_series": q24_all,
                "q_1h_ten_series": q1h_all,
                "retention_sweep_s": sweep_secs,
                "swept": swept,
                "after_sweep_raw_5m_1h": sizes,
            },
        })
    );
}
