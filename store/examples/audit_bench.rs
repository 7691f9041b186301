//! Durable audit appends per second with group commit, measured next to single-record
//! durable redb commits on the same disk in the same run, and the records lost when the
//! appending process is killed with SIGKILL (must be 0).
//!
//! `cargo run --release -p kopa-store --example audit_bench -- DIR [--tasks 64] [--secs 5]`
//! prints one JSON object. DIR should be on the disk the appliance uses.

use kopa_core::{SystemClock, TenantId};
use kopa_store::audit::{
    self, AUDIT_SCHEMA, AuditEvent, AuditLog, AuditOptions, AuditSigner, Category, Outcome,
};
use kopa_store::{Migration, Schema, Store, Table};
use serde_json::json;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const RAW: Table<u64, AuditEvent> = Table::new("raw");
static RAW_SCHEMA: Schema = Schema {
    service: "raw",
    cache_bytes: None,
    migrations: &[Migration {
        version: 1,
        description: "one table",
        apply: |t| t.open_table(&RAW),
    }],
};

struct Args {
    dir: PathBuf,
    tasks: usize,
    secs: u64,
    child: bool,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        dir: PathBuf::new(),
        tasks: 64,
        secs: 5,
        child: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tasks" => args.tasks = it.next().ok_or("--tasks needs a number")?.parse()?,
            "--secs" => args.secs = it.next().ok_or("--secs needs a number")?.parse()?,
            "--child" => args.child = true,
            _ if args.dir.as_os_str().is_empty() => args.dir = PathBuf::from(a),
            other => return Err(format!("unexpected argument {other}").into()),
        }
    }
    if args.dir.as_os_str().is_empty() {
        return Err("usage: audit_bench DIR [--tasks N] [--secs S]".into());
    }
    Ok(args)
}

/// A typical failed login: the size of record the appliance writes most.
fn event(n: u64) -> Res<AuditEvent> {
    Ok(
        AuditEvent::new(Category::Authentication, "login", Outcome::Failure)
            .tenant(Some(TenantId::new("ventspils")?))
            .reason("wrong_password")
            .user_typed(format!("jānis.bērziņš{n}@ventspils.lv"))
            .user_resolved(format!("uid=jberzins{n},ou=people,dc=ventspils,dc=lv"))
            .source_ip(format!("10.1.{}.{}", (n >> 8) & 255, n & 255).parse()?)
            .user_agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36")
            .method("ldap")
            .client("https://portal.ventspils.lv"),
    )
}

fn open_log(dir: &Path) -> Res<AuditLog> {
    let store = Store::open(dir, &AUDIT_SCHEMA)?;
    let signer = AuditSigner::load_or_generate(&dir.join("audit-ed25519.pem"))?;
    Ok(AuditLog::open(
        store,
        signer,
        Arc::new(SystemClock),
        AuditOptions::default(),
    )?)
}

/// Single-record durable commits: what every append would cost without group commit.
fn raw_commits_per_sec(dir: &Path, secs: u64) -> Res<f64> {
    let store = Store::open(dir, &RAW_SCHEMA)?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        let e = event(n)?;
        store.write_blocking(|t| t.insert(&RAW, &n, &e).map(drop))?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

struct GroupResult {
    appends: u64,
    elapsed: f64,
    latencies_us: Vec<u64>,
}

async fn appenders(log: &AuditLog, tasks: usize, secs: u64) -> Res<GroupResult> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks as u64 {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = task << 32;
            while Instant::now() < deadline {
                let t = Instant::now();
                log.append(event(n)?).await?;
                lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                n += 1;
            }
            Res::Ok(lat)
        }));
    }
    let mut latencies_us = Vec::new();
    for h in handles {
        latencies_us.extend(h.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    Ok(GroupResult {
        appends: latencies_us.len() as u64,
        elapsed,
        latencies_us,
    })
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() - 1) as f64 * p).round() as usize;
    sorted_us.get(i).copied().unwrap_or_default() as f64 / 1000.0
}

/// The child of the SIGKILL run: appends forever, printing each seq once it is durable.
async fn child(dir: &Path, tasks: usize) -> Res<()> {
    let log = open_log(dir)?;
    let mut handles = Vec::new();
    for task in 0..tasks as u64 {
        handles.push(tokio::spawn(child_task(log.clone(), task)));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

async fn child_task(log: AuditLog, task: u64) -> Res<()> {
    let mut n = task << 32;
    loop {
        let seq = log.append(event(n)?).await?;
        // stdout is line-buffered: a printed seq was acknowledged before the print.
        writeln!(std::io::stdout().lock(), "{seq}")?;
        n += 1;
    }
}

struct KillResult {
    acknowledged: u64,
    missing: u64,
    intact: bool,
    recovered_records: u64,
}

/// Starts the child, kills it with SIGKILL mid-load, reopens the log and looks for every
/// seq the child reported.
fn sigkill_run(dir: &Path, tasks: usize) -> Res<KillResult> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(dir)
        .arg("--tasks")
        .arg(tasks.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(seq) = line.trim().parse::<u64>() {
                seqs.push(seq);
            }
        }
        seqs
    });
    std::thread::sleep(Duration::from_millis(2500));
    child.kill()?; // SIGKILL
    child.wait()?;
    let acked = reader.join().map_err(|_| "reader thread failed")?;
    let store = Store::open(dir, &AUDIT_SCHEMA)?;
    let mut missing = 0;
    for seq in &acked {
        if audit::record(&store, *seq)?.is_none() {
            missing += 1;
        }
    }
    let report = audit::verify(&store, None)?;
    Ok(KillResult {
        acknowledged: acked.len() as u64,
        missing,
        intact: report.is_intact(),
        recovered_records: report.records,
    })
}

fn run(args: Args) -> Res<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.child {
        runtime.block_on(child(&args.dir, args.tasks))?;
        return Ok(serde_json::Value::Null);
    }
    let root = args.dir.join(format!("audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;

    let raw = raw_commits_per_sec(&root.join("raw"), args.secs)?;

    let log = open_log(&root.join("group"))?;
    let group = runtime.block_on(appenders(&log, args.tasks, args.secs))?;
    let stats = log.stats();
    runtime.block_on(log.close());
    let t = Instant::now();
    let report = audit::verify(log.store(), Some(&log.public_key()))?;
    let verify_secs = t.elapsed().as_secs_f64();
    drop(log);

    let killed = sigkill_run(&root.join("sigkill"), args.tasks)?;
    let appends_per_s = group.appends as f64 / group.elapsed;
    let out = json!({
        "raw_single_record_commits_per_s": raw.round(),
        "group_commit_appends_per_s": appends_per_s.round(),
        "speedup": (appends_per_s / raw * 10.0).round() / 10.0,
        "tasks": args.tasks,
        "seconds": args.secs,
        "appends": group.appends,
        "commits": stats.commits,
        "avg_records_per_commit": (stats.records as f64 / stats.commits.max(1) as f64 * 10.0).round() / 10.0,
        "append_latency_p50_ms": percentile_ms(&group.latencies_us, 0.50),
        "append_latency_p99_ms": percentile_ms(&group.latencies_us, 0.99),
        "verify_records_per_s": (report.records as f64 / verify_secs).round(),
        "verify_intact": report.is_intact(),
        "sigkill_acknowledged": killed.acknowledged,
        "sigkill_recovered_records": killed.recovered_records,
        "sigkill_missing": killed.missing,
        "sigkill_chain_intact": killed.intact,
    });
    std::fs::remove_dir_all(&root)?;
    Ok(out)
}

fn main() -> ExitCode {
    let result = parse_args().and_then(run);
    match result {
        Ok(serde_json::Value::Null) => ExitCode::SUCCESS,
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audit_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
