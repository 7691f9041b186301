//! Group commit for small independent writes (sessions and the like): concurrent callers
//! queue their operation, one of them becomes the leader and runs everything queued in
//! ONE write transaction with one fsync, then answers all. Each caller still returns only
//! after its change is durable. If anything in a batch fails, every operation of that
//! batch is re-run in a transaction of its own, so one bad operation never takes the
//! others down and each caller gets its own answer.

use crate::{Store, StoreError, WriteTxn};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// An operation that may run twice (once in a batch, once alone after a batch failure):
/// it must only write, deterministically, from what it captured.
pub type GroupOp = Box<dyn Fn(&WriteTxn<'_>) -> Result<(), StoreError> + Send>;

struct Queued {
    op: GroupOp,
    done: mpsc::SyncSender<Result<(), StoreError>>,
}

/// The per-database queue and leader lock.
#[derive(Default)]
pub(crate) struct Group {
    queue: Mutex<Vec<Queued>>,
    leader: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves only a Vec or (): safe to keep using.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Runs `op` in a group-committed write transaction; blocking. `Ok` means durable.
    pub fn write_grouped_blocking(&self, op: GroupOp) -> Result<(), StoreError> {
        let group = self.group();
        let (done, result) = mpsc::sync_channel(1);
        lock(&group.queue).push(Queued { op, done });
        loop {
            if let Ok(r) = result.try_recv() {
                return r;
            }
            let _leader = lock(&group.leader);
            // A leader answers everything it took before letting go of the lock, so if we
            // are still unanswered, our operation is in the queue now.
            if let Ok(r) = result.try_recv() {
                return r;
            }
            let batch = std::mem::take(&mut *lock(&group.queue));
            if batch.is_empty() {
                continue;
            }
            self.run_batch(batch);
        }
    }

    /// [`Self::write_grouped_blocking`] on the blocking pool.
    pub async fn write_grouped(&self, op: GroupOp) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_grouped_blocking(op))
            .await
            .map_err(StoreError::Join)?
    }

    fn run_batch(&self, batch: Vec<Queued>) {
        let together = self.write_blocking(|txn| {
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
                    let r = self.write_blocking(|txn| (q.op)(txn));
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
        migrations: &[Migration {
            version: 1,
            description: "t",
            apply: create,
        }],
    };

    #[test]
    fn concurrent_writes_share_commits_and_a_failure_stays_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &SCHEMA).unwrap();
        let threads: Vec<_> = (0..16u64)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let k = t * 1000 + i;
                        let r = store.write_grouped_blocking(Box::new(move |txn| {
                            if k == 7 {
                                return Err(crate::StoreError::corrupt("refused on purpose"));
                            }
                            txn.insert(&T, &k, &k).map(|_| ())
                        }));
                        assert_eq!(r.is_err(), k == 7, "{k}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = store.read_blocking(|txn| txn.len(&T)).unwrap();
        assert_eq!(n, 16 * 50 - 1);
    }
}
