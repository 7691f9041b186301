//! Journaled commits against a real crash. A child process (this test binary, run again)
//! commits under load from eight tasks and prints each change once it is acknowledged; the
//! parent kills it with SIGKILL, reopens the database and finds exactly the acknowledged
//! changes (plus, at most, each task's one change in flight).

use crate::{Migration, Schema, Store, StoreError, Table, WriteTxn, backup};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KV: Table<(u64, u64), u64> = Table::new("kv");
static SCHEMA: Schema = Schema {
    service: "journaltest",
    cache_bytes: None,
    migrations: &[Migration {
        version: 1,
        description: "kv",
        apply: |t| t.open_table(&KV),
    }],
};
const CHILD: &str = "KOPA_JOURNAL_TEST_CHILD";
const TASKS: u64 = 8;

/// Change `i` of task `t`: insert `(t, i)`; every fifth also removes the task's key of three
/// changes before; every fiftieth removes the first four keys left in `i-40..i-30`.
fn change(txn: &WriteTxn<'_>, t: u64, i: u64) -> Result<(), StoreError> {
    txn.insert(&KV, &(t, i), &(i * 7))?;
    if i.is_multiple_of(5) && i >= 3 {
        txn.remove(&KV, &(t, i - 3))?;
    }
    if i.is_multiple_of(50) && i >= 40 {
        txn.remove_range(&KV, &(t, i - 40), &(t, i - 30), 4)?;
    }
    Ok(())
}

/// The same changes on a map: what task `t`'s keys are after changes `0..=last`.
fn expected(t: u64, last: Option<u64>) -> BTreeMap<(u64, u64), u64> {
    let mut m = BTreeMap::new();
    for i in last.map_or(0..0, |l| 0..l + 1) {
        m.insert((t, i), i * 7);
        if i.is_multiple_of(5) && i >= 3 {
            m.remove(&(t, i - 3));
        }
        if i.is_multiple_of(50) && i >= 40 {
            let doomed: Vec<_> = m
                .range((t, i - 40)..(t, i - 30))
                .map(|(k, _)| *k)
                .take(4)
                .collect();
            for k in doomed {
                m.remove(&k);
            }
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the child process of the crash tests below"]
async fn child_commits_until_killed() {
    let spec = std::env::var(CHILD).expect("run by a crash test");
    let mut parts = spec.split('|');
    let (dir, capacity, every_ms) = (
        parts.next().unwrap(),
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    );
    let store = Store::open(Path::new(dir), &SCHEMA).unwrap();
    {
        let mut j = store.journal();
        j.capacity = capacity;
        j.checkpoint_every = Duration::from_millis(every_ms);
    }
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    store
                        .write_grouped(Box::new(move |txn| change(txn, t, i)))
                        .await
                        .unwrap();
                    println!("ack {t} {i}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Runs the child on `dir` for `run_for` after its first acknowledgement, kills it, and
/// returns each task's last acknowledged change.
fn crash(dir: &Path, capacity: u64, every_ms: u64, run_for: Duration) -> Vec<Option<u64>> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "journal_tests::child_commits_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{}|{capacity}|{every_ms}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = vec![None; TASKS as usize];
    let mut started: Option<Instant> = None;
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest's own "test ... " has no newline of its own, so an ack may follow it.
        let Some(ack) = line.rfind("ack ").map(|at| &line[at + 4..]) else {
            continue;
        };
        let (t, i) = ack.split_once(' ').unwrap();
        let (t, i): (usize, u64) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(last[t].map_or(0, |l| l + 1), i, "task {t} skipped a change");
        last[t] = Some(i);
        if !killed && started.get_or_insert_with(Instant::now).elapsed() >= run_for {
            child.kill().unwrap(); // SIGKILL; the lines already printed still arrive
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child stopped by itself: {status}");
    last
}

fn keys(store: &Store) -> BTreeMap<(u64, u64), u64> {
    store
        .read_blocking(|txn| txn.iter(&KV))
        .unwrap()
        .into_iter()
        .collect()
}

/// Every task's keys are those of its acknowledged changes, or of one more.
fn assert_survived(store: &Store, last: &[Option<u64>]) {
    let all = keys(store);
    for (t, acked) in last.iter().enumerate() {
        let t = t as u64;
        let found: BTreeMap<_, _> = all
            .range((t, 0)..(t + 1, 0))
            .map(|(k, v)| (*k, *v))
            .collect();
        let next = acked.map_or(0, |l| l + 1);
        assert!(
            found == expected(t, *acked) || found == expected(t, Some(next)),
            "task {t}: acknowledged up to {acked:?}, found {} keys, the last {:?}",
            found.len(),
            found.keys().next_back()
        );
    }
}

fn copy_files(from: &Path, to: &Path, names: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for name in names {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

#[test]
fn a_kill_loses_nothing_the_journal_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    // A backup taken before the load, to restore over the crashed database below.
    let store = Store::open(&dir, &SCHEMA).unwrap();
    store
        .write_journaled(|t| t.insert(&KV, &(99, 0), &1).map(|_| ()))
        .unwrap();
    let bk = root.path().join("bk");
    backup::backup(std::slice::from_ref(&store), &bk, "test", 1).unwrap();
    drop(store);

    // No checkpoint during the run (a journal too large to fill, entries of 4 KiB at most
    // 10 000 commits a second): after the kill, only the journal holds the changes.
    let last = crash(&dir, 1 << 30, 3_600_000, Duration::from_millis(500));
    assert!(last.iter().all(|l| l.is_some_and(|n| n > 20)), "{last:?}");
    let files = ["journaltest.redb", "journaltest.journal"];
    copy_files(&dir, &root.path().join("without"), &files[..1]);
    copy_files(&dir, &root.path().join("restored"), &files);

    let without = Store::open(&root.path().join("without"), &SCHEMA).unwrap();
    assert_eq!(
        keys(&without).len(),
        1,
        "the database alone has only the first change"
    );

    let store = Store::open(&dir, &SCHEMA).unwrap();
    assert_survived(&store, &last);
    assert_eq!(keys(&store).get(&(99, 0)), Some(&1));
    let len = std::fs::metadata(dir.join(files[1])).unwrap().len();
    assert_eq!(len, 0, "replayed entries are dropped from the journal");
    drop(store);
    let again = Store::open(&dir, &SCHEMA).unwrap();
    assert_survived(&again, &last);

    // Restoring the backup moves the journal aside with the database it belongs to, so
    // changes made after the backup are not replayed onto it.
    let restored = root.path().join("restored");
    let report = backup::restore(&bk, &restored, &[&SCHEMA]).unwrap();
    assert!(
        report.moved_aside.iter().any(|p| p
            .to_string_lossy()
            .contains("journaltest.journal.pre-restore")),
        "{:?}",
        report.moved_aside
    );
    let store = Store::open(&restored, &SCHEMA).unwrap();
    assert_eq!(keys(&store).into_iter().collect::<Vec<_>>(), [((99, 0), 1)]);
}

#[test]
fn checkpoints_and_a_full_journal_lose_nothing_either() {
    let dir = tempfile::tempdir().unwrap();
    // A 64 KiB journal fills within a few dozen commits; checkpoints every 20 ms as well.
    let last = crash(dir.path(), 64 << 10, 20, Duration::from_millis(1500));
    assert!(last.iter().all(|l| l.is_some_and(|n| n > 20)), "{last:?}");
    let len = std::fs::metadata(dir.path().join("journaltest.journal"))
        .unwrap()
        .len();
    assert!(len <= 1 << 20, "the journal grew to {len} bytes");
    let store = Store::open(dir.path(), &SCHEMA).unwrap();
    assert_survived(&store, &last);
}

#[test]
fn a_refused_transaction_leaves_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &SCHEMA).unwrap();
    store.journal().checkpoint_every = Duration::from_secs(3600);
    store
        .write_journaled(|t| t.insert(&KV, &(1, 1), &1).map(|_| ()))
        .unwrap();
    let refused = store.write_journaled(|t| {
        t.insert(&KV, &(1, 2), &2)?;
        Err::<(), _>(StoreError::corrupt("refused on purpose"))
    });
    assert!(refused.is_err());
    store
        .write_journaled(|t| t.remove(&KV, &(1, 1)).map(|_| ()))
        .unwrap();
    assert!(keys(&store).is_empty());
    // The entries written: the insert and the removal, numbered 1 and 2, nothing between.
    let bytes = crate::journal::read(&dir.path().join("journaltest.journal")).unwrap();
    let seqs: Vec<u64> = crate::journal::entries(&bytes)
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(seqs, [1, 2]);
}
