//! [`AuditLog`], the handle services append through, and the one writer thread that owns
//! every write to `audit.redb`.
//!
//! The writer blocks for a first request, takes whatever else is queued (up to
//! `max_batch`), seals the records in order and commits them in one durable write
//! transaction together with the signed head; only then does it answer the waiters. While
//! it waits for the disk, new requests queue up and form the next batch, so the number of
//! fsyncs stays flat as concurrency grows.

use super::chain::{self, ChainHead, CutProof, is_reserved};
use super::record::{AuditRecord, ChainHash};
use super::signer::{AuditSigner, PublicKey};
use super::{
    AUDIT_SCHEMA, AuditError, AuditEvent, AuditPage, AuditQuery, BY_TENANT, Category, HEAD_KEY,
    Outcome, RECORDS, STATE, VerifyReport,
};
use crate::{Store, StoreError};
use kopa_core::Clock;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How the log runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Most records committed in one transaction.
    pub max_batch: usize,
    /// Keep records this long, then drop them with a signed cut; `None` keeps everything.
    pub retention: Option<Duration>,
    /// How often the retention is applied.
    pub retention_interval: Duration,
    /// Wait after opening before the first retention run.
    pub retention_delay: Duration,
    /// Most records one retention transaction drops: bounds how long appends wait behind it.
    pub retention_chunk: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            retention: None,
            retention_interval: Duration::from_secs(3600),
            retention_delay: Duration::from_secs(60),
            retention_chunk: 10_000,
        }
    }
}

/// Counters of the writer since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStats {
    /// Durable write transactions that succeeded.
    pub commits: u64,
    /// Records they appended (cut records included).
    pub records: u64,
    /// Write transactions that failed (their waiters got an error).
    pub failed_commits: u64,
}

/// What one retention run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    /// Records dropped.
    pub dropped: u64,
    /// The first dropped seq.
    pub first_dropped: Option<u64>,
    /// The last dropped seq.
    pub last_dropped: Option<u64>,
    /// The cut records appended (one per transaction of at most `retention_chunk` records).
    pub cut_seqs: Vec<u64>,
    /// False when the log closed before every old record was dropped.
    pub complete: bool,
}

type Reply<T> = oneshot::Sender<Result<T, AuditError>>;

// Nearly every message is an append: boxing it would add an allocation to the hot path.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Append(AuditEvent, Reply<u64>),
    Retention(u64, Reply<RetentionReport>),
    Stop,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    records: AtomicU64,
    failed: AtomicU64,
}

/// The audit log of a running appliance. Cheap to clone; the writer thread stops when
/// [`AuditLog::close`] is called or the last clone is dropped (which waits for it).
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    store: Store,
    public_key: PublicKey,
    counters: Arc<Counters>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("store", &self.shared.store)
            .field("public_key", &self.shared.public_key)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and return.
        drop(self.tx.take());
        let handle = match self.thread.get_mut() {
            Ok(h) => h.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("the audit writer thread panicked");
        }
    }
}

impl AuditLog {
    /// Starts the log on `store` (opened with [`AUDIT_SCHEMA`]). If the stored head and the
    /// last record disagree, or the head was signed by another key, the log continues from
    /// the head and first appends an `audit-chain-anomaly` record saying so.
    pub fn open(
        store: Store,
        signer: AuditSigner,
        clock: Arc<dyn Clock>,
        options: AuditOptions,
    ) -> Result<Self, AuditError> {
        if store.service() != AUDIT_SCHEMA.service {
            return Err(AuditError::Unreadable {
                what: format!("{} is not the audit database", store.path().display()),
            });
        }
        let start = chain_start(&store, &signer)?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let public_key = signer.public_key();
        let mut writer = Writer {
            store: store.clone(),
            signer,
            clock,
            options: AuditOptions {
                max_batch: options.max_batch.max(1),
                retention_chunk: options.retention_chunk.max(1),
                ..options
            },
            rx,
            pending: VecDeque::new(),
            next_seq: start.next_seq,
            prev_hash: start.prev_hash,
            last_time: start.last_time,
            job: None,
            next_retention: options
                .retention
                .map(|_| Instant::now() + options.retention_delay),
            counters: counters.clone(),
            last_batch: 0,
        };
        if let Some(event) = start.anomaly {
            tracing::error!(
                reason = event.reason.as_deref().unwrap_or_default(),
                "the audit chain head does not match its records; recording the anomaly"
            );
            writer
                .commit(vec![(event, None)])
                .map_err(AuditError::Commit)?;
        }
        let thread = std::thread::Builder::new()
            .name("kopa-audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Io {
                action: "start the writer thread of",
                path: store.path().to_path_buf(),
                source: e,
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                tx: Some(tx),
                thread: Mutex::new(Some(thread)),
                store,
                public_key,
                counters,
            }),
        })
    }

    fn send(&self, msg: Msg) -> Result<(), AuditError> {
        let tx = self.shared.tx.as_ref().ok_or(AuditError::Closed)?;
        tx.send(msg).map_err(|_| AuditError::Closed)
    }

    /// Appends `event` and returns its seq once the record is durable. An error means the
    /// record was not appended.
    pub async fn append(&self, event: AuditEvent) -> Result<u64, AuditError> {
        if is_reserved(&event.action) {
            return Err(AuditError::InvalidEvent {
                what: format!("action {} is written only by the audit log", event.action),
            });
        }
        let event = event.prepare()?;
        let (reply, answer) = oneshot::channel();
        self.send(Msg::Append(event, reply))?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    /// Drops every record older than `before_ms` (a prefix of the chain, since times never
    /// decrease) and appends a signed cut record per transaction. Records that do not
    /// match their hashes are never dropped: the run stops with an error instead.
    pub async fn apply_retention(&self, before_ms: u64) -> Result<RetentionReport, AuditError> {
        let (reply, answer) = oneshot::channel();
        self.send(Msg::Retention(before_ms, reply))?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    /// Checks the whole chain against this log's signing key.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        let store = self.shared.store.clone();
        let key = self.shared.public_key;
        blocking(move || super::verify(&store, Some(&key))).await
    }

    /// One page of records; see [`AuditQuery`].
    pub async fn query(&self, q: AuditQuery) -> Result<AuditPage, AuditError> {
        let store = self.shared.store.clone();
        blocking(move || super::query(&store, &q)).await
    }

    /// The database the log writes.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The key its head and cuts are signed with.
    pub fn public_key(&self) -> PublicKey {
        self.shared.public_key
    }

    /// Writer counters since opening.
    pub fn stats(&self) -> AuditStats {
        let c = &self.shared.counters;
        AuditStats {
            commits: c.commits.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            failed_commits: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Commits what is queued, stops the writer and waits for it. Later appends, from any
    /// clone, fail with [`AuditError::Closed`].
    pub async fn close(&self) {
        let _ = self.send(Msg::Stop);
        let handle = match self.shared.thread.lock() {
            Ok(mut h) => h.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(h) = handle {
            match tokio::task::spawn_blocking(move || h.join()).await {
                Ok(Ok(())) => {}
                _ => tracing::error!("the audit writer thread did not stop cleanly"),
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuditError::Store(StoreError::Join(e)))?
}

/// Where the chain continues, and whether opening found something to record.
struct Start {
    next_seq: u64,
    prev_hash: ChainHash,
    last_time: u64,
    anomaly: Option<AuditEvent>,
}

fn readable<T>(r: Result<Option<T>, StoreError>) -> Result<(Option<T>, bool), AuditError> {
    match r {
        Ok(v) => Ok((v, false)),
        Err(StoreError::Decode { .. } | StoreError::Key { .. }) => Ok((None, true)),
        Err(e) => Err(e.into()),
    }
}

fn chain_start(store: &Store, signer: &AuditSigner) -> Result<Start, AuditError> {
    let (head, last) =
        store.read_blocking(|t| Ok((t.get(&STATE, &HEAD_KEY.to_string()), t.last(&RECORDS))))?;
    let (head, head_unreadable) = readable(head)?;
    let (last, last_unreadable) = readable(last)?;
    let anomaly = |reason: &str| {
        AuditEvent::new(Category::Process, chain::ANOMALY_ACTION, Outcome::Failure)
            .reason(reason)
            .user_resolved("kopa")
    };
    let Some(head) = head else {
        return match (last, head_unreadable || last_unreadable) {
            (None, false) => Ok(Start {
                next_seq: 1,
                prev_hash: ChainHash::GENESIS,
                last_time: 0,
                anomaly: None,
            }),
            (Some((seq, r)), _) => Ok(Start {
                next_seq: seq + 1,
                prev_hash: r.hash,
                last_time: r.time_ms,
                anomaly: Some(
                    anomaly(if head_unreadable {
                        "head_unreadable"
                    } else {
                        "head_missing"
                    })
                    .detail("last_seq", seq.to_string()),
                ),
            }),
            (None, true) => Err(AuditError::Unreadable {
                what: "neither the chain head nor the last record can be read; run `kopa audit verify`"
                    .into(),
            }),
        };
    };
    let mut reason = None;
    match &last {
        Some((seq, r)) if *seq == head.seq && r.hash == head.hash => {}
        Some((seq, _)) => {
            reason = Some(anomaly("head_mismatch").detail("last_seq", seq.to_string()));
        }
        None if last_unreadable => {
            reason = Some(anomaly("last_record_unreadable"));
        }
        None => reason = Some(anomaly("records_missing")),
    }
    if reason.is_none() && !head.signature_valid() {
        reason = Some(anomaly("head_signature_invalid"));
    }
    if reason.is_none() && head.public_key != signer.public_key() {
        reason = Some(
            anomaly("signing_key_changed")
                .detail("previous_key", head.public_key.to_hex())
                .detail("current_key", signer.public_key().to_hex()),
        );
    }
    Ok(Start {
        next_seq: head.seq + 1,
        prev_hash: head.hash,
        last_time: head
            .time_ms
            .max(last.map(|(_, r)| r.time_ms).unwrap_or_default()),
        anomaly: reason.map(|e| e.detail("head_seq", head.seq.to_string())),
    })
}

struct RetentionJob {
    before_ms: u64,
    reply: Option<Reply<RetentionReport>>,
    report: RetentionReport,
    last_hash: Option<ChainHash>,
}

struct Writer {
    store: Store,
    signer: AuditSigner,
    clock: Arc<dyn Clock>,
    options: AuditOptions,
    rx: mpsc::Receiver<Msg>,
    /// Requests taken off the channel while filling a batch, handled next.
    pending: VecDeque<Msg>,
    next_seq: u64,
    prev_hash: ChainHash,
    last_time: u64,
    job: Option<RetentionJob>,
    next_retention: Option<Instant>,
    counters: Arc<Counters>,
    /// Records in the last committed batch: more than one means appends are concurrent.
    last_batch: usize,
}

type Batch = Vec<(AuditEvent, Option<Reply<u64>>)>;

impl Writer {
    fn run(mut self) {
        while let Some(msg) = self.next_message() {
            match msg {
                Msg::Append(event, reply) => {
                    let mut batch = vec![(event, Some(reply))];
                    self.fill(&mut batch);
                    self.commit_and_answer(batch);
                }
                Msg::Retention(before_ms, reply) => self.start_retention(before_ms, Some(reply)),
                Msg::Stop => break,
            }
            // One retention transaction between batches: neither starves the other.
            self.retention_step();
        }
        if let Some(mut job) = self.job.take() {
            job.report.complete = false;
            if let Some(reply) = job.reply {
                let _ = reply.send(Ok(job.report));
            }
        }
        tracing::debug!("audit writer stopped");
    }

    /// The next request; runs pending retention work and schedules while none is queued.
    /// `None` once every handle is gone.
    fn next_message(&mut self) -> Option<Msg> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            if self.job.is_some() {
                match self.rx.try_recv() {
                    Ok(m) => return Some(m),
                    Err(TryRecvError::Empty) => {
                        self.retention_step();
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => return None,
                }
            }
            let Some(at) = self.next_retention else {
                return self.rx.recv().ok();
            };
            match self
                .rx
                .recv_timeout(at.saturating_duration_since(Instant::now()))
            {
                Ok(m) => return Some(m),
                Err(RecvTimeoutError::Timeout) => self.scheduled_retention(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Adds whatever appends are already queued, up to `max_batch`.
    fn fill(&mut self, batch: &mut Batch) {
        // Under concurrent load, wait briefly for more appends so that one sync serves more.
        // One sleep, then take what arrived: waking per arriving append would cost a context
        // switch each, which is what the delay is meant to save.
        if self.last_batch > 1 {
            crate::group::wait_for_company();
        }
        while batch.len() < self.options.max_batch {
            match self.rx.try_recv() {
                Ok(Msg::Append(event, reply)) => batch.push((event, Some(reply))),
                Ok(other) => {
                    self.pending.push_back(other);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_millis().max(self.last_time)
    }

    fn commit_and_answer(&mut self, batch: Batch) {
        if let Err(e) = self.commit(batch) {
            tracing::error!(error = %e, "audit commit failed");
        }
    }

    /// Seals `batch` after the current head and commits it with the new signed head in one
    /// durable transaction, then answers each waiter with its seq. On failure every waiter
    /// gets the error and the chain position is re-read from the database.
    fn commit(&mut self, batch: Batch) -> Result<(), Arc<AuditError>> {
        let time_ms = self.now();
        let mut records = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut prev = self.prev_hash;
        for (i, (event, reply)) in batch.into_iter().enumerate() {
            let record = AuditRecord::seal(self.next_seq + i as u64, time_ms, event, prev);
            prev = record.hash;
            records.push(record);
            replies.push(reply);
        }
        match self.write(&records, &[]) {
            Ok(()) => {
                for (record, reply) in records.iter().zip(replies) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(record.seq));
                    }
                }
                Ok(())
            }
            Err(e) => {
                let shared = Arc::new(e);
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(AuditError::Commit(shared.clone())));
                }
                Err(shared)
            }
        }
    }

    /// One durable transaction: drop `dropped`, append `records`, sign the new head.
    fn write(
        &mut self,
        records: &[AuditRecord],
        dropped: &[AuditRecord],
    ) -> Result<(), AuditError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let result = ChainHead::sign(last, &self.signer).and_then(|head| {
            self.store
                .write_journaled(|txn| {
                    for r in dropped {
                        txn.remove(&RECORDS, &r.seq)?;
                        if let Some(t) = &r.event.tenant {
                            txn.remove(&BY_TENANT, &(t.clone(), r.seq))?;
                        }
                    }
                    for r in records {
                        txn.insert(&RECORDS, &r.seq, r)?;
                        if let Some(t) = &r.event.tenant {
                            txn.insert(&BY_TENANT, &(t.clone(), r.seq), &())?;
                        }
                    }
                    txn.insert(&STATE, &HEAD_KEY.to_string(), &head)?;
                    Ok(())
                })
                .map_err(AuditError::from)
        });
        match result {
            Ok(()) => {
                self.next_seq = last.seq + 1;
                self.last_batch = records.len();
                self.prev_hash = last.hash;
                self.last_time = last.time_ms;
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .records
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                // The commit may or may not have reached the disk: continue from what is there.
                match chain_start(&self.store, &self.signer) {
                    Ok(start) => {
                        self.next_seq = start.next_seq;
                        self.prev_hash = start.prev_hash;
                        self.last_time = self.last_time.max(start.last_time);
                    }
                    Err(reload) => {
                        tracing::error!(error = %reload, "cannot re-read the audit chain head")
                    }
                }
                Err(e)
            }
        }
    }

    fn scheduled_retention(&mut self) {
        self.next_retention = Some(Instant::now() + self.options.retention_interval);
        if let Some(keep) = self.options.retention
            && self.job.is_none()
        {
            let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
            let before_ms = self.clock.now_millis().saturating_sub(keep_ms);
            self.start_retention(before_ms, None);
        }
    }

    fn start_retention(&mut self, before_ms: u64, reply: Option<Reply<RetentionReport>>) {
        if self.job.is_some() {
            if let Some(reply) = reply {
                let _ = reply.send(Err(AuditError::Retention {
                    what: "another retention run is in progress".into(),
                }));
            }
            return;
        }
        self.job = Some(RetentionJob {
            before_ms,
            reply,
            report: RetentionReport::default(),
            last_hash: None,
        });
    }

    /// Runs one transaction of the current retention job, finishing the job when nothing
    /// older than its cut-off is left or when it fails.
    fn retention_step(&mut self) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        match self.retention_chunk(&mut job) {
            Ok(true) => self.job = Some(job),
            Ok(false) => {
                job.report.complete = true;
                if job.report.dropped > 0 {
                    tracing::info!(
                        dropped = job.report.dropped,
                        first = job.report.first_dropped,
                        last = job.report.last_dropped,
                        "audit retention dropped old records"
                    );
                }
                if let Some(reply) = job.reply {
                    let _ = reply.send(Ok(job.report));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit retention stopped");
                if let Some(reply) = job.reply {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Drops up to `retention_chunk` records older than the cut-off; `Ok(true)` when more
    /// may be left.
    fn retention_chunk(&mut self, job: &mut RetentionJob) -> Result<bool, AuditError> {
        let (before_ms, chunk) = (job.before_ms, self.options.retention_chunk);
        let victims: Vec<AuditRecord> = self
            .store
            .read_blocking(|t| t.range_from(&RECORDS, &0u64, chunk))?
            .into_iter()
            .map(|(_, r)| r)
            .take_while(|r| r.time_ms < before_ms)
            .collect();
        let full = victims.len() == chunk;
        if victims.is_empty() {
            return Ok(false);
        }
        // Dropping a record that was altered would erase the evidence: check first.
        let mut expected = job.last_hash;
        let mut prev_seq = None;
        for r in &victims {
            let broken = r.compute_hash() != r.hash
                || prev_seq.is_some_and(|p: u64| r.seq != p + 1)
                || expected.is_some_and(|h| r.prev_hash != h);
            if broken || CutProof::is_cut(r) && CutProof::parse(r).is_err() {
                return Err(AuditError::Retention {
                    what: format!(
                        "record {} does not verify; run `kopa audit verify` before dropping anything",
                        r.seq
                    ),
                });
            }
            expected = Some(r.hash);
            prev_seq = Some(r.seq);
        }
        let time_ms = self.now();
        let seq = self.next_seq;
        let event = chain::cut_event(seq, time_ms, before_ms, &victims, &self.signer)?;
        let cut = AuditRecord::seal(seq, time_ms, event, self.prev_hash);
        self.write(std::slice::from_ref(&cut), &victims)?;
        job.report.dropped += victims.len() as u64;
        if let Some(first) = victims.first() {
            job.report.first_dropped.get_or_insert(first.seq);
        }
        job.report.last_dropped = victims.last().map(|r| r.seq);
        job.report.cut_seqs.push(cut.seq);
        job.last_hash = victims.last().map(|r| r.hash);
        Ok(full)
    }
}
