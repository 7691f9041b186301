//! The portal at scale: imports N cases (default 1 000 000) with their clients into a
//! fresh `portal.redb`, reopens it (the index is rebuilt from the database), then times
//! the case lists, searches and reports that staff use, through `CaseWork` as the API
//! calls it. The baseline, measured in the same run, is one full read of the cases table
//! (what answering without the index would cost at least). Prints one JSON object.
//!
//! `cargo run --release -p kopa-portal-server --example portal_bench -- DIR [--cases N]`

// A benchmark stops at the first failure: there is nothing to serve or recover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kopa_core::{Clock, FixedClock, Role};
use kopa_portal_server::case::{Channel, Stages, State};
use kopa_portal_server::client::{ClientKind, ClientRecord};
use kopa_portal_server::index::{Dimension, Filter, View};
use kopa_portal_server::work::{CaseRecord, CaseWork, Viewer};
use kopa_store::Store;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const DAY: u64 = 86_400_000;
const CENTRES: u64 = 160;
const INSTITUTIONS: u64 = 20;
const SERVICES: u64 = 200;
const GIVEN: [&str; 16] = [
    "Jānis",
    "Anna",
    "Pēteris",
    "Līga",
    "Andris",
    "Ilze",
    "Mārtiņš",
    "Inese",
    "Kārlis",
    "Dace",
    "Edgars",
    "Žanna",
    "Gints",
    "Rūta",
    "Aivars",
    "Sandra",
];
const FAMILY: [&str; 24] = [
    "Bērziņš",
    "Kalniņš",
    "Ozols",
    "Jansons",
    "Liepiņš",
    "Krūmiņš",
    "Zariņš",
    "Vītols",
    "Ķeniņš",
    "Šmits",
    "Pētersons",
    "Eglītis",
    "Kļaviņš",
    "Balodis",
    "Siliņš",
    "Zvirbulis",
    "Lācis",
    "Vanags",
    "Dūmiņš",
    "Strazds",
    "Jēkabsons",
    "Grīnbergs",
    "Ābols",
    "Rozītis",
];

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

async fn timed<F, Fut, T>(reps: usize, mut f: F) -> (f64, f64, usize)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
    T: Len,
{
    let mut ms = Vec::with_capacity(reps);
    let mut n = 0;
    for i in 0..reps {
        let t = Instant::now();
        n = f(i).await.len();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 50.0), percentile(&ms, 99.0), n)
}

trait Len {
    fn len(&self) -> usize;
}
impl<T> Len for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

fn viewer(subject: &str, roles: &[Role], centres: &[String], institutions: &[String]) -> Viewer {
    Viewer {
        subject: subject.into(),
        roles: roles.to_vec(),
        centres: centres.to_vec(),
        institutions: institutions.to_vec(),
    }
}

/// The institutions, centres and services the generated cases refer to.
async fn catalogue(work: &CaseWork) {
    use kopa_portal_server::catalogue::{Bilingual, Service};
    use kopa_portal_server::org::{Centre, Institution, InstitutionKind};
    let admin = viewer("admin", &[Role::PlatformAdmin], &[], &[]);
    let both = |s: String| Bilingual {
        lv: s.clone(),
        en: s,
    };
    for i in 0..INSTITUTIONS {
        let id = format!("i{i:02}");
        let inst = Institution {
            id: id.clone(),
            name: both(id),
            kind: InstitutionKind::State,
        };
        work.put_institution(&admin, inst).await.unwrap();
    }
    let all: Vec<String> = (0..INSTITUTIONS).map(|i| format!("i{i:02}")).collect();
    for c in 0..CENTRES {
        let id = format!("c{c:03}");
        let centre = Centre {
            id: id.clone(),
            name: both(id),
            institution: "i00".into(),
            serves: all.clone(),
        };
        work.put_centre(&admin, centre).await.unwrap();
    }
    for s in 0..SERVICES {
        let code = format!("S{s:03}");
        let service = Service {
            code: code.clone(),
            name: both(format!("Pakalpojums {s}")),
            owner: format!("i{:02}", s % INSTITUTIONS),
            channels: Channel::ALL.to_vec(),
            deadline_days: Some(10 + (s % 3) as u32 * 10),
            required_documents: vec![],
            instructions: None,
        };
        work.put_service(&admin, service).await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: portal_bench DIR [--cases N]"));
    let total: u64 = args
        .iter()
        .position(|a| a == "--cases")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let now = 1_796_169_600_000_u64; // 2026-11-30
    let clock = Arc::new(FixedClock::at(now));
    let span = 3 * 365 * DAY;
    let start = now - span;

    // ---- import ----
    let mut rng = kopa_core::sample::Sample::new(0x0b5e_55ed_2026);
    let clients_total = total * 2 / 5;
    let store = Store::open(&dir, &kopa_portal_server::SCHEMA).unwrap();
    let work = CaseWork::new(store, clock.clone()).unwrap();
    catalogue(&work).await;
    let t = Instant::now();
    let chunk = 50_000_u64;
    let mut next_client = 1_u64;
    let mut next_case = 1_u64;
    while next_case <= total {
        let mut clients = Vec::new();
        let client_goal = (next_case + chunk - 1).min(total) * clients_total / total;
        while next_client <= client_goal {
            let given = GIVEN[rng.below(GIVEN.len() as u64) as usize];
            let family = FAMILY[rng.below(FAMILY.len() as u64) as usize];
            clients.push(ClientRecord {
                id: next_client,
                kind: ClientKind::Natural,
                name: format!("{given} {family}"),
                code: format!(
                    "32{:04}-{:05}",
                    next_client / 100_000 % 10_000,
                    next_client % 100_000
                ),
                centre: format!("c{:03}", rng.below(CENTRES)),
                registered: start,
            });
            next_client += 1;
        }
        let mut cases = Vec::new();
        for id in next_case..(next_case + chunk).min(total + 1) {
            let registered = start + (id - 1) * span / total;
            let service = rng.below(SERVICES);
            let owner = service % INSTITUTIONS;
            let age = now - registered;
            let decided =
                (age > 30 * DAY || rng.below(3) == 0).then(|| registered + rng.below(20 * DAY));
            let delivered = decided
                .filter(|_| age > 40 * DAY)
                .map(|d| d + rng.below(5 * DAY));
            let state = match (decided, delivered) {
                (_, Some(_)) => State::ResultDelivered,
                (Some(_), None) => State::Decided,
                _ => State::InProgress,
            };
            let centre = rng.below(CENTRES);
            cases.push(CaseRecord {
                id,
                service: format!("S{service:03}"),
                owner: format!("i{owner:02}"),
                centre: format!("c{centre:03}"),
                channel: Channel::ALL[rng.below(5) as usize],
                client: Some(1 + rng.below(next_client - 1)),
                assignee: Some(format!("staff{:04}", centre * 6 + rng.below(6))),
                state,
                stages: Stages {
                    request_started: Some(registered - rng.below(3_600_000)),
                    registered,
                    decided,
                    delivered,
                },
                deadline_days: Some(10 + (service % 3) as u32 * 10),
            });
        }
        next_case += chunk;
        work.import(clients, cases).await.unwrap();
    }
    let import_s = t.elapsed().as_secs_f64();
    drop(work);

    // ---- reopen: the index is rebuilt from the database ----
    let rss_before = rss_mib();
    let t = Instant::now();
    let store = Store::open(&dir, &kopa_portal_server::SCHEMA).unwrap();
    let work = CaseWork::new(store.clone(), clock.clone()).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let rss_after = rss_mib();

    // ---- baseline: one full read of the cases table ----
    let t = Instant::now();
    let mut scanned = 0_usize;
    let mut from = 0_u64;
    loop {
        let chunk: Vec<(u64, CaseRecord)> = store
            .read_blocking(|txn| {
                txn.range_from(&kopa_portal_server::work::CASES_TABLE, &from, 20_000)
            })
            .unwrap();
        let Some((last, _)) = chunk.last() else { break };
        from = last + 1;
        scanned += chunk.len();
    }
    let scan_ms = t.elapsed().as_secs_f64() * 1000.0;

    // ---- queries ----
    let centre = |c: u64| vec![format!("c{c:03}")];
    let specialist = viewer("staff0042", &[Role::Specialist], &centre(7), &[]);
    let supervisor = viewer("staff0043", &[Role::Supervisor], &centre(7), &[]);
    let owner = viewer("owner", &[Role::ServiceOwner], &[], &["i03".into()]);
    let admin = viewer("admin", &[Role::PlatformAdmin], &[], &[]);
    let page = |view: View, text: Option<&str>| Filter {
        view,
        text: text.map(str::to_owned),
        limit: 50,
        ..Filter::default()
    };
    let reps = 200;
    let mut results = serde_json::Map::new();
    let cases_of = |w: &CaseWork, v: &Viewer, f: Filter| {
        let (w, v) = (w.clone(), v.clone());
        async move { w.list(&v, f).await.unwrap() }
    };
    let lists: [(&str, &Viewer, Filter); 9] = [
        ("specialist: my cases", &specialist, page(View::Mine, None)),
        (
            "specialist: centre queue",
            &specialist,
            page(View::Queue, None),
        ),
        (
            "supervisor: deadline within 3 days or passed",
            &supervisor,
            page(View::Deadline { days: 3 }, None),
        ),
        (
            "service owner: all of the institution",
            &owner,
            page(View::All, None),
        ),
        ("platform: all", &admin, page(View::All, None)),
        (
            "specialist: search \"berzins\"",
            &specialist,
            page(View::All, Some("berzins")),
        ),
        (
            "specialist: search \"janis ozol\"",
            &specialist,
            page(View::All, Some("janis ozol")),
        ),
        (
            "platform: search \"berzins\" (every centre)",
            &admin,
            page(View::All, Some("berzins")),
        ),
        (
            "specialist: search a service code",
            &specialist,
            page(View::All, Some("s042")),
        ),
    ];
    let mut worst_p99 = 0.0_f64;
    for (name, v, f) in lists {
        let (p50, p99, n) = timed(reps, |_| cases_of(&work, v, f.clone())).await;
        worst_p99 = worst_p99.max(p99);
        results.insert(
            name.into(),
            json!({"p50_ms": p50, "p99_ms": p99, "rows": n}),
        );
    }
    // Client search by name (diacritics ignored) and by whole code.
    let (p50, p99, n) = timed(reps, |i| {
        let (w, v) = (work.clone(), specialist.clone());
        let q = if i % 2 == 0 {
            "berzins".to_owned()
        } else {
            format!("320000-{:05}", 1 + i)
        };
        async move { w.search_clients(&v, &q, 50).await.unwrap() }
    })
    .await;
    worst_p99 = worst_p99.max(p99);
    results.insert(
        "specialist: client search (name or code)".into(),
        json!({"p50_ms": p50, "p99_ms": p99, "rows": n}),
    );

    let year = (now - 365 * DAY, now);
    let mut reports = serde_json::Map::new();
    let mut worst_report = 0.0_f64;
    for (name, by) in [
        ("service", Dimension::Service),
        ("institution", Dimension::Institution),
        ("centre", Dimension::Centre),
        ("specialist", Dimension::Specialist),
        ("month", Dimension::Month),
    ] {
        let (p50, p99, n) = timed(5, |_| {
            let (w, v) = (work.clone(), admin.clone());
            async move { w.report(&v, year.0, year.1, by).await.unwrap() }
        })
        .await;
        worst_report = worst_report.max(p50);
        reports.insert(
            name.into(),
            json!({"median_ms": p50, "max_ms": p99, "groups": n}),
        );
    }
    let year_cases: u64 = work
        .report(&admin, year.0, year.1, Dimension::Institution)
        .await
        .unwrap()
        .iter()
        .map(|r| r.summary.cases)
        .sum();
    let _ = clock.now_millis();
    println!(
        "{}",
        json!({
            "cases": total,
            "clients": clients_total,
            "import_s": import_s,
            "import_per_s": total as f64 / import_s,
            "index_load_s": load_s,
            "index_rss_mib": rss_after - rss_before,
            "baseline_full_scan_ms": scan_ms,
            "baseline_scanned": scanned,
            "lists": results,
            "worst_list_p99_ms": worst_p99,
            "year_report": reports,
            "year_cases": year_cases,
            "worst_year_report_ms": worst_report,
        })
    );
}
