//! Group commit for small independent writes (sessions and the like): concurrent callers
//! queue their operation, one of them becomes the leader and runs everything queued in
//! ONE write transaction, made durable with one journal append and sync (see
//! [`crate::journal`]), then answers all. Each caller still returns only
//! after its change is durable. If anything in a batch fails, every operation of that
//! batch is re-run in a transaction of its own, so one bad operation never takes the
//! others down and each caller gets its own answer.

use crate::{Store, StoreError, WriteTxn};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a committer that saw concurrent writes in its last batch waits for more
/// before the next one (PostgreSQL's `commit_delay`, applied only under load): a sync
/// costs tens of microseconds of CPU, so fewer, fuller batches leave more CPU for the
/// requests. A lone writer never waits.
pub(crate) const COMMIT_DELAY: Duration = Duration::from_micros(500);

/// The wait for company while the process is busy (see [`commit_delay`]).
pub(crate) const BUSY_COMMIT_DELAY: Duration = Duration::from_millis(2);

/// Requests in flight per core from which the process counts as busy: 48 on the two
/// cores where the rule was measured (ADR 5, fifth follow-up), as the requests that keep
/// the cores busy while commits wait grow with the cores.
pub(crate) const BUSY_REQUESTS_PER_CORE: usize = 24;

/// Requests in flight from which this process counts as busy.
fn busy_requests() -> usize {
    static BUSY: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUSY.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        BUSY_REQUESTS_PER_CORE * cores
    })
}

/// How long a committer whose last batch held more than one write waits for more before
/// the next commit (PostgreSQL's `commit_delay`, gated like its `commit_siblings`).
///
/// The wait trades latency for CPU: each commit costs a journal write and a redb commit
/// whatever its size, so a longer wait means fewer, larger commits. That pays only while
/// enough other requests are being served to keep the cores busy meanwhile; with fewer,
/// the cores idle and the waiting requests answer later. `in_flight` is the number of
/// requests being served by the process (`kopa_core::load`), `busy` the count from which
/// it counts as busy.
pub(crate) fn commit_delay(in_flight: usize, busy: usize) -> Duration {
    if in_flight >= busy {
        BUSY_COMMIT_DELAY
    } else {
        COMMIT_DELAY
    }
}

/// Sleeps for the commit delay that the process's current load calls for.
pub(crate) fn wait_for_company() {
    std::thread::sleep(commit_delay(kopa_core::load::in_flight(), busy_requests()));
}

/// An operation that may run twice (once in a batch, once alone after a batch failure):
/// it must only write, deterministically, from what it captured.
pub type GroupOp = Box<dyn Fn(&WriteTxn<'_>) -> Result<(), StoreError> + Send>;

struct Queued {
    op: GroupOp,
    done: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Default)]
struct Queue {
    ops: Vec<Queued>,
    /// A leader is running on the blocking pool and will take what is queued.
    leading: bool,
}

/// The per-database queue. Waiting callers hold no thread: they await their answer, and
/// only the leader occupies one blocking thread while it commits.
#[derive(Default)]
pub(crate) struct Group {
    queue: Mutex<Queue>,
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // A panic while holding the lock leaves only a Vec and a flag: safe to keep using.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Runs `op` in a group-committed write transaction. `Ok` means durable.
    pub async fn write_grouped(&self, op: GroupOp) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        let lead = {
            let mut q = lock(&self.group().queue);
            q.ops.push(Queued { op, done });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.lead());
        }
        answer
            .await
            .map_err(|_| StoreError::corrupt("group commit ended without an answer"))?
    }

    /// Commits batches until the queue is empty, then steps down.
    fn lead(&self) {
        // Operations in this leader's previous batch: more than one means concurrent writers.
        let mut last_batch = 0;
        loop {
            if last_batch > 1 {
                wait_for_company();
            }
            let batch = {
                let mut q = lock(&self.group().queue);
                if q.ops.is_empty() {
                    q.leading = false;
                    return;
                }
                std::mem::take(&mut q.ops)
            };
            last_batch = batch.len();
            self.run_batch(batch);
        }
    }

    fn run_batch(&self, batch: Vec<Queued>) {
        let together = self.write_journaled(|txn| {
            for q in &batch {
                (q.op)(txn)?;
            }
            Ok(())
        });
        match together {
            Ok(()) => {
                for q in batch {
                    let _ = q.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, ops = batch.len(), "group commit failed; retrying one by one");
                for q in batch {
                    let r = self.write_journaled(|txn| (q.op)(txn));
                    let _ = q.done.send(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Migration, Schema, Store, Table};

    const T: Table<u64, u64> = Table::new("t");
    fn create(txn: &crate::WriteTxn<'_>) -> Result<(), crate::StoreError> {
        txn.open_table(&T)
    }
    static SCHEMA: Schema = Schema {
        service: "grouptest",
        cache_bytes: None,
        migrations: &[Migration {
            version: 1,
            description: "t",
            apply: create,
        }],
    };

    #[test]
    fn commits_wait_longer_only_while_the_process_is_busy() {
        use super::{BUSY_COMMIT_DELAY, COMMIT_DELAY, busy_requests, commit_delay};
        assert!(BUSY_COMMIT_DELAY > COMMIT_DELAY);
        assert_eq!(commit_delay(0, 48), COMMIT_DELAY);
        assert_eq!(commit_delay(47, 48), COMMIT_DELAY);
        assert_eq!(commit_delay(48, 48), BUSY_COMMIT_DELAY);
        assert_eq!(commit_delay(usize::MAX, 48), BUSY_COMMIT_DELAY);
        // The mark grows with the cores: 24 requests per core.
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(busy_requests(), 24 * cores);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_writes_share_commits_and_a_failure_stays_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &SCHEMA).unwrap();
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..50u64 {
                        let k = t * 1000 + i;
                        let r = store
                            .write_grouped(Box::new(move |txn| {
                                if k == 7 {
                                    return Err(crate::StoreError::corrupt("refused on purpose"));
                                }
                                txn.insert(&T, &k, &k).map(|_| ())
                            }))
                            .await;
                        assert_eq!(r.is_err(), k == 7, "{k}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let n = store.read_blocking(|txn| txn.len(&T)).unwrap();
        assert_eq!(n, 16 * 50 - 1);
    }
}
