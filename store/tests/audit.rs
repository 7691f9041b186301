//! The audit log through its public API, and tampering with `audit.redb` behind its back:
//! every edit made with redb directly must be named by `verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kopa_core::{FixedClock, TenantId};
use kopa_store::Store;
use kopa_store::audit::{
    self, AUDIT_SCHEMA, AuditEvent, AuditLog, AuditOptions, AuditQuery, AuditRecord, AuditSigner,
    BreakKind, Category, ExportFormat, Order, Outcome, TenantScope, VerifyReport,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

const RAW_RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("audit_records");
const RAW_STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("audit_state");
const T0: u64 = 1_772_352_000_000;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn login(n: u64) -> AuditEvent {
    let (t, outcome) = if n.is_multiple_of(2) {
        ("ventspils", Outcome::Success)
    } else {
        ("talsi", Outcome::Failure)
    };
    let mut e = AuditEvent::new(Category::Authentication, "login", outcome)
        .tenant(Some(tenant(t)))
        .user_typed(format!("Jānis{n}@{t}.lv"))
        .source_ip(format!("192.0.2.{}", n % 200).parse().unwrap())
        .method("ldap");
    if outcome == Outcome::Failure {
        e = e.reason("wrong_password");
    }
    e
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<FixedClock>,
    signer_path: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let signer_path = dir.path().join("audit-ed25519.pem");
        Self {
            dir,
            clock: Arc::new(FixedClock::at(T0)),
            signer_path,
        }
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    fn open_with(&self, options: AuditOptions) -> AuditLog {
        let store = Store::open(self.data(), &AUDIT_SCHEMA).unwrap();
        let signer = AuditSigner::load_or_generate(&self.signer_path).unwrap();
        AuditLog::open(store, signer, self.clock.clone(), options).unwrap()
    }

    fn open(&self) -> AuditLog {
        self.open_with(AuditOptions::default())
    }

    fn verify_offline(&self) -> VerifyReport {
        let store = Store::open(self.data(), &AUDIT_SCHEMA).unwrap();
        let key = AuditSigner::load_or_generate(&self.signer_path)
            .unwrap()
            .public_key();
        audit::verify(&store, Some(&key)).unwrap()
    }

    /// Runs `f` on audit.redb opened with redb itself, as an attacker with the file would.
    fn tamper(&self, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>)) {
        let db = redb::Database::open(self.data().join("audit.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(RAW_RECORDS).unwrap();
            f(&mut table);
        }
        txn.commit().unwrap();
    }

    fn raw(&self, seq: u64) -> Vec<u8> {
        let db = redb::Database::open(self.data().join("audit.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(RAW_RECORDS).unwrap();
        table
            .get(seq.to_be_bytes().as_slice())
            .unwrap()
            .unwrap()
            .value()
            .to_vec()
    }
}

/// A closed log with `n` login records, appended one at a time a second apart.
async fn filled(n: u64) -> Fixture {
    let fx = Fixture::new();
    let log = fx.open();
    for i in 1..=n {
        assert_eq!(log.append(login(i)).await.unwrap(), i);
        fx.clock.advance(1000);
    }
    log.close().await;
    fx
}

fn broken(report: &VerifyReport) -> (u64, BreakKind, String) {
    let b = report
        .broken
        .clone()
        .unwrap_or_else(|| panic!("chain reported intact: {report:?}"));
    (b.seq, b.kind, b.detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_gapless_seqs_and_share_commits() {
    let fx = Fixture::new();
    let log = fx.open();
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                seqs.push(log.append(login(task * 100 + i)).await.unwrap());
            }
            seqs
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        for s in t.await.unwrap() {
            assert!(all.insert(s), "seq {s} handed out twice");
        }
    }
    assert_eq!(all, (1..=800).collect::<BTreeSet<_>>());
    let stats = log.stats();
    assert_eq!(stats.records, 800);
    assert!(
        stats.commits < 800,
        "no batch held more than one record: {stats:?}"
    );
    let report = log.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.head_seq), (800, Some(800)));

    // Every acknowledged record is on disk after a close and a reopen.
    log.close().await;
    assert!(matches!(
        log.append(login(1)).await,
        Err(kopa_store::AuditError::Closed)
    ));
    drop(log);
    let report = fx.verify_offline();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.last_seq, Some(800));
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let fx = filled(3).await;
    let log = fx.open();
    assert_eq!(log.append(login(4)).await.unwrap(), 4);
    let r4 = audit::record(log.store(), 4).unwrap().unwrap();
    let r3 = audit::record(log.store(), 3).unwrap().unwrap();
    assert_eq!(r4.prev_hash, r3.hash);
    assert!(log.verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn callers_cannot_write_reserved_or_malformed_events() {
    let fx = Fixture::new();
    let log = fx.open();
    for action in [audit::RETENTION_ACTION, audit::ANOMALY_ACTION, "Bad Action"] {
        let e = AuditEvent::new(Category::Process, action, Outcome::Success);
        assert!(log.append(e).await.is_err(), "{action}");
    }
    let secret = AuditEvent::new(Category::Iam, "password-reset", Outcome::Success)
        .detail("new_password", "hunter2");
    assert!(log.append(secret).await.is_err());
    assert_eq!(log.stats().records, 0);
}

#[tokio::test]
async fn verify_names_a_record_whose_bytes_were_rewritten() {
    let fx = filled(10).await;
    let original = String::from_utf8(fx.raw(5)).unwrap();
    assert!(original.contains("\"outcome\":\"failure\""), "{original}");
    let forged = original.replace("\"outcome\":\"failure\"", "\"outcome\":\"success\"");
    fx.tamper(|t| {
        t.insert(5u64.to_be_bytes().as_slice(), forged.as_bytes())
            .unwrap();
    });
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (5, BreakKind::Altered), "{detail}");

    // Garbage instead of JSON is named too.
    fx.tamper(|t| {
        t.insert(5u64.to_be_bytes().as_slice(), b"\x00garbage".as_slice())
            .unwrap();
    });
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (5, BreakKind::Altered), "{detail}");
}

#[tokio::test]
async fn verify_names_a_deleted_record() {
    let fx = filled(10).await;
    fx.tamper(|t| {
        t.remove(6u64.to_be_bytes().as_slice()).unwrap();
    });
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (6, BreakKind::Missing), "{detail}");
}

#[tokio::test]
async fn verify_names_swapped_records() {
    let fx = filled(10).await;
    let (a, b) = (fx.raw(4), fx.raw(7));
    fx.tamper(|t| {
        t.insert(4u64.to_be_bytes().as_slice(), b.as_slice())
            .unwrap();
        t.insert(7u64.to_be_bytes().as_slice(), a.as_slice())
            .unwrap();
    });
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (4, BreakKind::Reordered), "{detail}");
}

#[tokio::test]
async fn verify_notices_records_cut_from_either_end() {
    let fx = filled(10).await;
    fx.tamper(|t| {
        t.remove(10u64.to_be_bytes().as_slice()).unwrap();
        t.remove(9u64.to_be_bytes().as_slice()).unwrap();
    });
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (9, BreakKind::Missing), "{detail}");

    let fx = filled(10).await;
    fx.tamper(|t| {
        t.remove(1u64.to_be_bytes().as_slice()).unwrap();
        t.remove(2u64.to_be_bytes().as_slice()).unwrap();
    });
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (2, BreakKind::Missing), "{detail}");
}

#[tokio::test]
async fn a_rewritten_chain_with_recomputed_hashes_fails_the_signed_head() {
    let fx = filled(10).await;
    let mut forged: Vec<AuditRecord> = (1..=10)
        .map(|s| serde_json::from_slice(&fx.raw(s)).unwrap())
        .collect();
    forged[4].event.outcome = Outcome::Success;
    for i in 4..10 {
        if i > 0 {
            forged[i].prev_hash = forged[i - 1].hash;
        }
        forged[i].hash = forged[i].compute_hash();
    }
    fx.tamper(|t| {
        for r in &forged[4..] {
            let bytes = serde_json::to_vec(r).unwrap();
            t.insert(r.seq.to_be_bytes().as_slice(), bytes.as_slice())
                .unwrap();
        }
    });
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (10, BreakKind::Altered), "{detail}");
    assert!(detail.contains("signed head"), "{detail}");

    // Moving the head along without the key breaks its signature instead.
    let db = redb::Database::open(fx.data().join("audit.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut state = txn.open_table(RAW_STATE).unwrap();
        let mut head: serde_json::Value =
            serde_json::from_slice(state.get(b"head".as_slice()).unwrap().unwrap().value())
                .unwrap();
        head["hash"] = forged[9].hash.to_hex().into();
        let bytes = serde_json::to_vec(&head).unwrap();
        state.insert(b"head".as_slice(), bytes.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (10, BreakKind::BadSignature), "{detail}");
}

#[tokio::test]
async fn reopening_a_truncated_log_records_the_anomaly_and_keeps_the_gap() {
    let fx = filled(6).await;
    fx.tamper(|t| {
        t.remove(6u64.to_be_bytes().as_slice()).unwrap();
    });
    let log = fx.open();
    let seq = log.append(login(7)).await.unwrap();
    assert_eq!(
        seq, 8,
        "the chain continues after the signed head, not the last record"
    );
    let anomaly = audit::record(log.store(), 7).unwrap().unwrap();
    assert_eq!(anomaly.event.action, audit::ANOMALY_ACTION);
    assert_eq!(anomaly.event.reason.as_deref(), Some("head_mismatch"));
    let report = log.verify().await.unwrap();
    let (seq, kind, _) = broken(&report);
    assert_eq!((seq, kind), (6, BreakKind::Missing));
}

#[tokio::test]
async fn another_signing_key_is_recorded_and_rejected_by_verify() {
    let fx = filled(3).await;
    std::fs::remove_file(&fx.signer_path).unwrap();
    let log = fx.open();
    let anomaly = audit::record(log.store(), 4).unwrap().unwrap();
    assert_eq!(anomaly.event.reason.as_deref(), Some("signing_key_changed"));
    // The new key now signs the head.
    assert!(log.verify().await.unwrap().is_intact());
    let old = AuditSigner::ephemeral().unwrap().public_key();
    let report = audit::verify(log.store(), Some(&old)).unwrap();
    assert_eq!(broken(&report).1, BreakKind::BadSignature);
}

#[tokio::test]
async fn retention_drops_old_records_behind_a_signed_cut() {
    let fx = Fixture::new();
    let log = fx.open_with(AuditOptions {
        retention_chunk: 4,
        ..AuditOptions::default()
    });
    for i in 1..=10 {
        log.append(login(i)).await.unwrap();
        fx.clock.advance(1000);
    }
    // Records 1-6 are older than T0 + 6 s.
    let report = log.apply_retention(T0 + 6000).await.unwrap();
    assert_eq!(report.dropped, 6);
    assert_eq!(
        (report.first_dropped, report.last_dropped),
        (Some(1), Some(6))
    );
    assert_eq!(
        report.cut_seqs,
        vec![11, 12],
        "two transactions of at most 4"
    );
    assert!(report.complete);
    let cut = audit::record(log.store(), 12).unwrap().unwrap();
    assert_eq!(cut.event.action, audit::RETENTION_ACTION);
    assert_eq!(cut.event.details["dropped_from"], "5");
    assert_eq!(cut.event.details["dropped_to"], "6");

    let v = log.verify().await.unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(
        (v.first_seq, v.last_seq, v.cut_records),
        (Some(7), Some(12), 2)
    );
    // Nothing more is old enough.
    assert_eq!(log.apply_retention(T0 + 6000).await.unwrap().dropped, 0);
    log.append(login(13)).await.unwrap();
    log.close().await;
    drop(log);

    // A cut by another key, a forged cut, or a record removed after the cut are named.
    let other = AuditSigner::ephemeral().unwrap().public_key();
    let store = Store::open(fx.data(), &AUDIT_SCHEMA).unwrap();
    assert_eq!(
        broken(&audit::verify(&store, Some(&other)).unwrap()).1,
        BreakKind::BadSignature
    );
    drop(store);
    fx.tamper(|t| {
        t.remove(7u64.to_be_bytes().as_slice()).unwrap();
    });
    let (seq, kind, detail) = broken(&fx.verify_offline());
    assert_eq!((seq, kind), (7, BreakKind::Missing), "{detail}");
}

#[tokio::test]
async fn retention_refuses_to_drop_an_altered_record() {
    let fx = filled(5).await;
    let forged = String::from_utf8(fx.raw(2))
        .unwrap()
        .replace("Jānis2", "Pēteris");
    fx.tamper(|t| {
        t.insert(2u64.to_be_bytes().as_slice(), forged.as_bytes())
            .unwrap();
    });
    let log = fx.open();
    let err = log.apply_retention(T0 + 3500).await.unwrap_err();
    assert!(err.to_string().contains("record 2"), "{err}");
    assert_eq!(audit::record(log.store(), 1).unwrap().unwrap().seq, 1);
}

#[tokio::test]
async fn scheduled_retention_runs_in_the_writer() {
    let fx = filled(4).await;
    fx.clock.advance(10 * 86_400_000);
    let log = fx.open_with(AuditOptions {
        retention: Some(std::time::Duration::from_secs(86_400)),
        retention_delay: std::time::Duration::from_millis(10),
        ..AuditOptions::default()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while audit::record(log.store(), 1).unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let cut = audit::record(log.store(), 5).unwrap().unwrap();
    assert_eq!(cut.event.details["dropped_count"], "4");
    assert!(log.verify().await.unwrap().is_intact());
}

#[tokio::test]
async fn queries_are_tenant_scoped_filtered_and_paged() {
    let fx = filled(40).await;
    let log = fx.open();
    let all = |q: AuditQuery| {
        let store = log.store().clone();
        let mut q = q;
        let mut out = Vec::new();
        loop {
            let page = audit::query(&store, &q).unwrap();
            out.extend(page.records.iter().map(|r| r.seq));
            match page.next_after_seq {
                Some(n) => q.after_seq = Some(n),
                None => return out,
            }
        }
    };
    let talsi = TenantScope::One(tenant("talsi"));
    let mut q = AuditQuery::new(talsi.clone());
    q.limit = 7;
    let seqs = all(q.clone());
    assert_eq!(seqs, (1..=39).step_by(2).collect::<Vec<_>>());
    q.order = Order::NewestFirst;
    assert_eq!(all(q), (1..=39).rev().step_by(2).collect::<Vec<_>>());

    // Another tenant's records never show, whatever the filters.
    let mut q = AuditQuery::new(talsi.clone());
    q.user = Some("JĀNIS4@VENTSPILS.LV".into());
    assert!(all(q).is_empty());
    let mut q = AuditQuery::new(TenantScope::All);
    q.user = Some("JĀNIS4@VENTSPILS.LV".into());
    assert_eq!(all(q), vec![4]);

    let mut q = AuditQuery::new(TenantScope::All);
    q.outcome = Some(Outcome::Success);
    q.from_ms = Some(T0 + 10_000);
    q.to_ms = Some(T0 + 20_000);
    assert_eq!(all(q), vec![12, 14, 16, 18, 20]);

    let mut q = AuditQuery::new(TenantScope::One(tenant("ventspils")));
    q.source_ip = Some("192.0.2.8".parse().unwrap());
    assert_eq!(all(q), vec![8]);

    let mut q = AuditQuery::new(TenantScope::All);
    q.limit = 1001;
    assert!(log.query(q).await.is_err());
    let q = AuditQuery::new(TenantScope::One(tenant("riga")));
    assert!(log.query(q).await.unwrap().records.is_empty());
}

#[tokio::test]
async fn exports_are_ecs_jsonl_and_csv_with_correct_escaping() {
    let fx = Fixture::new();
    let log = fx.open();
    let tricky = AuditEvent::new(Category::Authentication, "login", Outcome::Failure)
        .tenant(Some(tenant("ventspils")))
        .reason("unknown_user")
        .user_typed("Ģirts, \"Šķēle\"\nžūrija")
        .user_agent("=cmd|' /C calc'!A0")
        .source_ip("2001:db8::7".parse().unwrap());
    log.append(login(1)).await.unwrap();
    fx.clock.advance(1000);
    log.append(tricky).await.unwrap();
    fx.clock.advance(1000);
    log.append(login(3)).await.unwrap();

    let mut out = Vec::new();
    let n = audit::export(
        log.store(),
        Some(T0 + 1000),
        None,
        ExportFormat::Jsonl,
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 2);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event.sequence"], 2);
    assert_eq!(lines[0]["user.name"], "Ģirts, \"Šķēle\"\nžūrija");
    assert_eq!(lines[0]["source.ip"], "2001:db8::7");
    assert_eq!(lines[0]["organization.id"], "ventspils");
    assert_eq!(lines[1]["event.sequence"], 3);

    let mut out = Vec::new();
    audit::export(
        log.store(),
        None,
        Some(T0 + 2000),
        ExportFormat::Csv,
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 3, "header and two records: {text}");
    assert_eq!(rows[0], audit::CSV_COLUMNS.map(String::from).to_vec());
    assert_eq!(rows[2][1], "2");
    assert_eq!(rows[2][7], "Ģirts, \"Šķēle\"\nžūrija");
    assert_eq!(rows[2][10], "'=cmd|' /C calc'!A0");

    // Pages add up to the whole export.
    let mut paged = String::new();
    let mut after = None;
    loop {
        let page =
            audit::export_page(log.store(), None, None, ExportFormat::Csv, after, 1).unwrap();
        paged.push_str(&page.data);
        match page.next_after_seq {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut whole = Vec::new();
    audit::export(log.store(), None, None, ExportFormat::Csv, &mut whole).unwrap();
    assert_eq!(paged.as_bytes(), whole.as_slice());
}

/// A small RFC 4180 reader, enough to prove the writer's quoting.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut cell) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    rows
}
