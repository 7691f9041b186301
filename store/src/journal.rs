//! The journal: a write-ahead log that makes group commits durable with one contiguous write.
//!
//! A redb commit with `Durability::Immediate` writes each changed page where it lives in the
//! file and then syncs; on the benchmark machine a sync after a dozen scattered pages costs
//! four times one after the same bytes written in one piece (docs/adr/0005). A journaled
//! transaction therefore records its changes (puts and removals of raw keys and values) as
//! it runs, appends them as one entry to `<service>.journal`, syncs that, and only then
//! commits to redb with `Durability::None`, which writes nothing to the file. Now and then
//! (every second, or when the journal is full) a transaction commits with
//! `Durability::Immediate` instead, which makes every earlier commit durable in the database
//! itself, and the journal starts again from its beginning.
//!
//! Every journaled transaction also stores its entry's number in `kopa_meta`, in the same
//! transaction, so the database always knows the last entry it holds durably. Opening a
//! database replays the entries after that number, in order, then empties the journal.
//!
//! Entry layout, each starting on a 4 KiB boundary so that writing one never rewrites a
//! block that holds an earlier, acknowledged entry:
//! `"KJ01" ‖ seq u64 LE ‖ len u32 LE ‖ check [16] ‖ payload[len]`, where `check` is the
//! first 16 bytes of SHA-256 over everything before it and the payload. The file grows in
//! zero-filled 1 MiB steps, synced with its size, so later appends change no metadata and
//! their syncs write only the entry's blocks.
//!
//! The file is opened with `O_DSYNC`, so an append is one `pwrite` that returns once the
//! entry is durable, and, where the file system allows it, with `O_DIRECT`: an entry,
//! padded with zeros to whole blocks, goes from an aligned buffer straight to the device,
//! without the page cache's copy and writeback (a third less kernel CPU per durable append
//! on the benchmark machine, ADR 5). A file system that refuses `O_DIRECT` (`EINVAL`, as
//! older tmpfs does) gets buffered writes, still with `O_DSYNC`.

use crate::StoreError;
use crate::fsutil;
use crate::table::raw;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 4] = b"KJ01";
const HEADER: usize = 4 + 8 + 4 + 16;
const BLOCK: u64 = 4096;
const GROW: u64 = 1 << 20;
/// The largest write buffer a journal keeps between appends.
const SCRATCH_KEEP: usize = 64 << 10;
/// Past this size the next transaction commits to the database durably instead.
const CAPACITY: u64 = 16 << 20;
/// The longest the database itself lags behind the journal.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The `kopa_meta` key holding the number of the last journal entry the database holds.
pub(crate) const SEQ_KEY: &str = "journal_seq";

const PUT: u8 = 1;
const REMOVE: u8 = 2;
const REMOVE_RANGE: u8 = 3;
const CREATE_TABLE: u8 = 4;
const DELETE_TABLE: u8 = 5;

/// The journal file of `service` under `data_dir`.
pub fn journal_file(data_dir: &Path, service: &str) -> PathBuf {
    data_dir.join(format!("{service}.journal"))
}

/// The changes one write transaction made, in order, as raw bytes.
#[derive(Default)]
pub(crate) struct Recorder {
    buf: RefCell<Vec<u8>>,
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    // Keys, values and table names are far below 4 GiB: redb itself caps values at 3 GiB.
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

impl Recorder {
    /// Starts a change of kind `op` to `table`, leaving the buffer for its operands.
    fn change(&self, op: u8, table: &str) -> std::cell::RefMut<'_, Vec<u8>> {
        let mut buf = self.buf.borrow_mut();
        buf.push(op);
        put_bytes(&mut buf, table.as_bytes());
        buf
    }

    pub(crate) fn put(&self, table: &str, k: &[u8], v: &[u8]) {
        let mut buf = self.change(PUT, table);
        put_bytes(&mut buf, k);
        put_bytes(&mut buf, v);
    }

    pub(crate) fn remove(&self, table: &str, k: &[u8]) {
        put_bytes(&mut self.change(REMOVE, table), k);
    }

    /// The first `count` keys in `from..to` were removed.
    pub(crate) fn remove_range(&self, table: &str, from: &[u8], to: &[u8], count: usize) {
        let mut buf = self.change(REMOVE_RANGE, table);
        put_bytes(&mut buf, from);
        put_bytes(&mut buf, to);
        buf.extend_from_slice(&(count as u64).to_le_bytes());
    }

    pub(crate) fn create_table(&self, table: &str) {
        self.change(CREATE_TABLE, table);
    }

    pub(crate) fn delete_table(&self, table: &str) {
        self.change(DELETE_TABLE, table);
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.buf.borrow_mut())
    }
}

/// Reads a payload back, field by field.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(StoreError::corrupt(
                "a journal entry ends in the middle of a change",
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn table(&mut self) -> Result<&'a str, StoreError> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| StoreError::corrupt("a journal entry names a table that is not UTF-8"))
    }
}

/// Applies one recorded payload to `txn`, exactly as the original transaction changed it.
pub(crate) fn apply(txn: &redb::WriteTransaction, payload: &[u8]) -> Result<(), StoreError> {
    let mut c = Cursor { rest: payload };
    while let Some((&op, rest)) = c.rest.split_first() {
        c.rest = rest;
        match op {
            PUT => {
                let (t, k, v) = (c.table()?, c.bytes()?, c.bytes()?);
                txn.open_table(raw(t))?.insert(k, v)?;
            }
            REMOVE => {
                let (t, k) = (c.table()?, c.bytes()?);
                txn.open_table(raw(t))?.remove(k)?;
            }
            REMOVE_RANGE => {
                let (t, from, to) = (c.table()?, c.bytes()?, c.bytes()?);
                let count = usize::try_from(c.u64()?).unwrap_or(usize::MAX);
                let mut table = txn.open_table(raw(t))?;
                let doomed = table.extract_from_if::<&[u8], _>(from..to, |_, _| true)?;
                for item in doomed.take(count) {
                    item?;
                }
            }
            CREATE_TABLE => {
                txn.open_table(raw(c.table()?))?;
            }
            DELETE_TABLE => {
                txn.delete_table(raw(c.table()?))?;
            }
            other => {
                return Err(StoreError::corrupt(format!(
                    "a journal entry holds an unknown change kind {other}"
                )));
            }
        }
    }
    Ok(())
}

fn check(seq: u64, payload: &[u8]) -> [u8; 16] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(MAGIC);
    ctx.update(&seq.to_le_bytes());
    ctx.update(&(payload.len() as u32).to_le_bytes());
    ctx.update(payload);
    let mut out = [0; 16];
    out.copy_from_slice(&ctx.finish().as_ref()[..16]);
    out
}

/// Entry `seq` as written to the file, without its padding to the next block.
fn encode(seq: u64, payload: &[u8]) -> Result<Vec<u8>, StoreError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| StoreError::corrupt("a transaction too large for the journal"))?;
    let mut entry = Vec::with_capacity(HEADER + payload.len());
    entry.extend_from_slice(MAGIC);
    entry.extend_from_slice(&seq.to_le_bytes());
    entry.extend_from_slice(&len.to_le_bytes());
    entry.extend_from_slice(&check(seq, payload));
    entry.extend_from_slice(payload);
    Ok(entry)
}

fn align(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

/// The valid entries at the start of a journal file: consecutive numbers, intact checks.
/// Stops at the first block that does not hold the next entry (zeros, a torn write, or an
/// older entry left from before the journal last started again).
pub(crate) fn entries(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out: Vec<(u64, &[u8])> = Vec::new();
    let mut at = 0usize;
    while at + HEADER <= bytes.len() {
        let h = &bytes[at..at + HEADER];
        if &h[..4] != MAGIC {
            break;
        }
        let mut seq = [0; 8];
        seq.copy_from_slice(&h[4..12]);
        let seq = u64::from_le_bytes(seq);
        let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize;
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if h[16..32] != check(seq, payload) {
            break;
        }
        if out
            .last()
            .is_some_and(|(prev, _)| prev.checked_add(1) != Some(seq))
        {
            break;
        }
        out.push((seq, payload));
        at = usize::try_from(align((at + HEADER + len) as u64)).unwrap_or(usize::MAX);
    }
    out
}

/// The journal of one database: where the next entry goes and when to checkpoint.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: Option<File>,
    /// Bytes of the file known to be allocated (zero-filled or written) and synced.
    len: u64,
    /// Where the next entry is written.
    offset: u64,
    /// The number of the next entry.
    pub(crate) next_seq: u64,
    last_checkpoint: Instant,
    /// An append failed: from now on every transaction commits durably to the database.
    broken: bool,
    /// Where the last entry written begins, until the next checkpoint.
    last_start: Option<u64>,
    /// [`CAPACITY`] and [`CHECKPOINT_EVERY`], smaller in tests.
    pub(crate) capacity: u64,
    pub(crate) checkpoint_every: Duration,
    /// Open with `O_DIRECT` if the file system allows it; cleared once it refuses.
    direct: bool,
    /// Room for one block-aligned, zero-padded copy of what is written (up to
    /// [`SCRATCH_KEEP`] is kept between writes).
    scratch: Vec<u8>,
}

impl Journal {
    /// A journal whose file `path` is empty or absent, continuing after entry `last_seq`.
    pub(crate) fn new(path: PathBuf, last_seq: u64) -> Self {
        Self {
            path,
            file: None,
            len: 0,
            offset: 0,
            next_seq: last_seq + 1,
            last_checkpoint: Instant::now(),
            broken: false,
            last_start: None,
            capacity: CAPACITY,
            checkpoint_every: CHECKPOINT_EVERY,
            direct: true,
            scratch: Vec::new(),
        }
    }

    /// Whether a transaction recording `payload_len` bytes should commit durably to the
    /// database instead of going through the journal.
    pub(crate) fn should_checkpoint(&self, payload_len: usize) -> bool {
        self.broken
            || self.offset + (HEADER + payload_len) as u64 > self.capacity
            || self.last_checkpoint.elapsed() >= self.checkpoint_every
    }

    /// The database has just committed durably: every entry is now redundant.
    pub(crate) fn checkpointed(&mut self) {
        self.offset = 0;
        self.last_start = None;
        self.last_checkpoint = Instant::now();
    }

    /// Writes entry `seq` and syncs it. On failure the journal is not used again.
    pub(crate) fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), StoreError> {
        let result = self.try_append(seq, payload);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn try_append(&mut self, seq: u64, payload: &[u8]) -> Result<(), StoreError> {
        let entry = encode(seq, payload)?;
        let end = self.offset + entry.len() as u64;
        self.grow_to(end)?;
        // The file is open with O_DSYNC: the write returns once the entry is durable.
        self.write_blocks(&entry, self.offset)
            .map_err(|e| StoreError::io("append to", &self.path, e))?;
        self.last_start = Some(self.offset);
        self.offset = align(end);
        Ok(())
    }

    /// Undoes the last append after the database refused its transaction: that entry must
    /// never be replayed. Zeroing its header ends the valid run there.
    pub(crate) fn retract(&mut self) {
        let Some(start) = self.last_start.take() else {
            return;
        };
        if self.file.is_none() {
            return;
        }
        let zeroed = self.write_blocks(&[0; HEADER], start);
        match zeroed {
            Ok(()) => self.offset = start,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot retract a journal entry; the journal is no longer used");
                self.broken = true;
            }
        }
    }

    fn open(&mut self) -> std::io::Result<&File> {
        if self.file.is_none() {
            // O_DSYNC: each write returns once it is durable, one system call per append
            // instead of a write and an fdatasync.
            let mut options = OpenOptions::new();
            options
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_DSYNC);
            let mut direct = options.clone();
            direct.custom_flags(libc::O_DSYNC | libc::O_DIRECT);
            let file = match self.direct.then(|| direct.open(&self.path)) {
                Some(Ok(file)) => file,
                Some(Err(e)) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
                // Refused, or refused before: through the page cache.
                _ => {
                    self.direct = false;
                    options.open(&self.path)?
                }
            };
            fsutil::fsync_dir(fsutil::parent_dir(&self.path))?;
            self.file = Some(file);
        }
        self.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the journal file is not open"))
    }

    /// Writes `bytes` at `offset` (a block boundary), zero-padded to whole blocks. A
    /// direct write the file system refuses is retried through the page cache, which is
    /// then used from there on.
    fn write_blocks(&mut self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        let block = BLOCK as usize;
        let len = bytes.len().div_ceil(block) * block;
        let mut scratch = std::mem::take(&mut self.scratch);
        if scratch.len() < len + block {
            scratch.resize(len + block, 0);
        }
        // The first block boundary in memory within the scratch buffer.
        let at = (block - scratch.as_ptr().addr() % block) % block;
        scratch[at..at + bytes.len()].copy_from_slice(bytes);
        scratch[at + bytes.len()..at + len].fill(0);
        let aligned = &scratch[at..at + len];
        let mut written = self.open().and_then(|f| f.write_all_at(aligned, offset));
        if self.direct
            && written
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL))
        {
            self.direct = false;
            self.file = None;
            written = self.open().and_then(|f| f.write_all_at(aligned, offset));
        }
        // Keep the buffer for the next entry unless a growth step or a large entry made it big.
        if scratch.len() <= SCRATCH_KEEP {
            self.scratch = scratch;
        }
        written
    }

    /// Makes sure `end` bytes of the file exist on disk, zero-filled, before an entry is
    /// written into them, so that the entry's sync does not also have to record a new size.
    fn grow_to(&mut self, end: u64) -> Result<(), StoreError> {
        if end <= self.len {
            return Ok(());
        }
        let target = end.div_ceil(GROW) * GROW;
        let zeros = vec![0u8; GROW as usize];
        let mut at = self.len;
        while at < target {
            let n = (target - at).min(GROW) as usize;
            self.write_blocks(&zeros[..n], at)
                .map_err(|e| StoreError::io("extend", &self.path, e))?;
            at += n as u64;
        }
        self.open()
            .and_then(File::sync_all)
            .map_err(|e| StoreError::io("sync", &self.path, e))?;
        self.len = target;
        Ok(())
    }
}

/// The bytes of the journal at `path`; an absent journal is empty.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("read", path, e)),
    }
}

/// Empties the journal file once its entries are in the database durably.
pub(crate) fn truncate(path: &Path) -> Result<(), StoreError> {
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => f
            .set_len(0)
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io("empty", path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("open", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut e = encode(seq, payload).unwrap();
        e.resize(align(e.len() as u64) as usize, 0);
        e
    }

    #[test]
    fn entries_stop_at_a_gap_a_torn_entry_or_an_older_one() {
        let mut file = [entry(7, b"a"), entry(8, b"bb"), entry(9, b"ccc")].concat();
        assert_eq!(
            entries(&file),
            vec![(7, &b"a"[..]), (8, &b"bb"[..]), (9, &b"ccc"[..])]
        );
        // A stale entry from an earlier round is not the next number.
        file.extend(entry(3, b"old"));
        assert_eq!(entries(&file).len(), 3);
        // A torn write fails its check.
        let mut torn = file.clone();
        torn[2 * BLOCK as usize + HEADER] ^= 1;
        assert_eq!(entries(&torn).len(), 2);
        // Zeros end it.
        assert!(entries(&[0u8; 8192]).is_empty());
    }

    /// Appends, a retraction and growth past the first 1 MiB read back the same whether the
    /// entries went around the page cache or through it.
    #[test]
    fn direct_and_buffered_appends_read_back_alike() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.journal");
            let mut j = Journal::new(path.clone(), 0);
            j.direct = direct;
            let big = vec![0xA5u8; 1000 * 1024];
            j.append(1, b"one").unwrap();
            j.append(2, &big).unwrap();
            j.append(3, b"three").unwrap();
            j.retract();
            j.append(3, b"drei").unwrap();
            j.append(4, &big[..20_000]).unwrap();
            let bytes = read(&path).unwrap();
            let got = entries(&bytes);
            let want: Vec<(u64, &[u8])> =
                vec![(1, b"one"), (2, &big), (3, b"drei"), (4, &big[..20_000])];
            assert_eq!(got, want, "direct: {direct}");
            assert_eq!(bytes.len() as u64, 2 * GROW);
        }
    }
}
