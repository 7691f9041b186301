//! Online backup, verification and restore of whole service databases.
//!
//! A backup directory holds one redb file per service and `MANIFEST.json`, written last, whose
//! presence marks the backup complete. Every table is digested record by record, so a copy can
//! be checked without trusting the file it came in.

use crate::journal::journal_file;
use crate::migrate::{self, Schema, valid_service_name};
use crate::store::{db_file, ensure_private_file, map_open_error};
use crate::table::raw;
use crate::txn::ReadTxn;
use crate::{Store, StoreError, fsutil};
use aws_lc_rs::digest;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The name of the manifest inside a backup directory.
pub const MANIFEST: &str = "MANIFEST.json";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub kopa_version: String,
    pub created_at_ms: u64,
    pub databases: Vec<DatabaseEntry>,
    /// Plain files copied beside the databases (the data directory's `keys/`), absent in
    /// backups made before they were included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

/// One plain file of a backup: its path relative to the backup (and to the data
/// directory), `/`-separated, under one of the copied directories.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// A directory of the data directory copied into backups as plain files (e.g. `keys`).
#[derive(Debug, Clone, Copy)]
pub struct ExtraDir<'a> {
    /// Its name in the data directory and in the backup: lowercase letters only.
    pub name: &'a str,
    pub source: &'a Path,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseEntry {
    pub service: String,
    pub file: String,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    pub schema_version: u32,
    pub tables: BTreeMap<String, TableDigest>,
}

/// Record count and SHA-256 over `(u64 BE key length, key, u64 BE value length, value)` of
/// every record in key order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TableDigest {
    pub records: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub restored: Vec<String>,
    pub moved_aside: Vec<PathBuf>,
}

struct Digester {
    ctx: digest::Context,
    records: u64,
}

impl Digester {
    fn new() -> Self {
        Self {
            ctx: digest::Context::new(&digest::SHA256),
            records: 0,
        }
    }

    fn add(&mut self, k: &[u8], v: &[u8]) {
        for part in [k, v] {
            self.ctx.update(&(part.len() as u64).to_be_bytes());
            self.ctx.update(part);
        }
        self.records += 1;
    }

    fn finish(self) -> TableDigest {
        TableDigest {
            records: self.records,
            sha256: hex::encode(self.ctx.finish().as_ref()),
        }
    }
}

fn table_names(txn: &redb::ReadTransaction) -> Result<Vec<String>, StoreError> {
    if txn.list_multimap_tables()?.next().is_some() {
        return Err(StoreError::corrupt(
            "database has a multimap table, which Kopa never creates",
        ));
    }
    Ok(txn.list_tables()?.map(|t| t.name().to_string()).collect())
}

/// Digests one table, handing each record to `each` on the way.
fn walk_table(
    txn: &redb::ReadTransaction,
    name: &str,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<TableDigest, StoreError> {
    let table = txn.open_table(raw(name))?;
    let mut d = Digester::new();
    for item in table.iter()? {
        let (k, v) = item?;
        d.add(k.value(), v.value());
        each(k.value(), v.value())?;
    }
    if d.records != table.len()? {
        return Err(StoreError::corrupt(format!(
            "table {name} miscounts its records"
        )));
    }
    Ok(d.finish())
}

fn digest_txn(txn: &redb::ReadTransaction) -> Result<BTreeMap<String, TableDigest>, StoreError> {
    let mut out = BTreeMap::new();
    for name in table_names(txn)? {
        let d = walk_table(txn, &name, |_, _| Ok(()))?;
        out.insert(name, d);
    }
    Ok(out)
}

/// The digest of every table of `store`, from one snapshot.
pub fn digest_store(store: &Store) -> Result<BTreeMap<String, TableDigest>, StoreError> {
    digest_txn(store.begin_read()?.raw())
}

/// Copies every database into `dest` (which must be missing or empty), one snapshot per
/// database, then writes the manifest. Blocking: call it from a blocking thread.
pub fn backup(
    stores: &[Store],
    dest: &Path,
    kopa_version: &str,
    now_ms: u64,
) -> Result<Manifest, StoreError> {
    backup_with(stores, dest, kopa_version, now_ms, &[])
}

/// [`backup`], plus the regular files of each of `extra` (recursively; symlinks and other
/// special files are skipped), copied with mode 0600 and listed with their SHA-256.
pub fn backup_with(
    stores: &[Store],
    dest: &Path,
    kopa_version: &str,
    now_ms: u64,
    extra: &[ExtraDir<'_>],
) -> Result<Manifest, StoreError> {
    if let Some(bad) = extra.iter().find(|d| !valid_dir_name(d.name)) {
        return Err(StoreError::verify(format!(
            "{:?} cannot be a backed-up directory",
            bad.name
        )));
    }
    let mut seen = BTreeSet::new();
    for s in stores {
        if !seen.insert(s.service()) {
            return Err(StoreError::InvalidSchema {
                service: s.service(),
                reason: "service listed twice for backup",
            });
        }
    }
    prepare_dest(dest)?;
    let mut databases = Vec::with_capacity(stores.len());
    for store in stores {
        databases.push(backup_one(store, dest)?);
    }
    let mut files = Vec::new();
    for dir in extra {
        copy_tree(dir.source, dest, dir.name, &mut files)?;
    }
    let manifest = Manifest {
        format: FORMAT,
        kopa_version: kopa_version.to_string(),
        created_at_ms: now_ms,
        databases,
        files,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(|source| StoreError::Encode {
        table: MANIFEST,
        source,
    })?;
    json.push(b'\n');
    let path = dest.join(MANIFEST);
    // Written last and atomically: a backup without a manifest is incomplete by definition.
    fsutil::write_private_file_atomic(&path, &json)
        .map_err(|e| StoreError::io("write", &path, e))?;
    tracing::info!(dest = %dest.display(), databases = manifest.databases.len(), "backup complete");
    Ok(manifest)
}

fn prepare_dest(dest: &Path) -> Result<(), StoreError> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(StoreError::DestinationNotEmpty {
                    path: dest.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("read directory", dest, e)),
    }
    fsutil::ensure_private_dir(dest).map_err(|e| StoreError::io("create directory", dest, e))
}

fn backup_one(store: &Store, dest: &Path) -> Result<DatabaseEntry, StoreError> {
    // This read transaction is the snapshot: writers carry on, and the copy sees none of them.
    let snapshot = store.begin_read()?;
    let schema_version = migrate::read_version(&snapshot)?;
    let path = db_file(dest, store.service());
    ensure_private_file(&path)?;
    let db = redb::Database::create(&path).map_err(|e| map_open_error(&path, e))?;
    let mut tables = BTreeMap::new();
    let mut w = db.begin_write()?;
    w.set_durability(redb::Durability::Immediate)?;
    for name in table_names(snapshot.raw())? {
        let mut out = w.open_table(raw(&name))?;
        let d = walk_table(snapshot.raw(), &name, |k, v| {
            out.insert(k, v)?;
            Ok(())
        })?;
        tables.insert(name, d);
    }
    w.commit()?;
    drop(snapshot);
    db.close().map_err(|source| StoreError::Open {
        path: path.clone(),
        source,
    })?;
    File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io("sync", &path, e))?;
    Ok(DatabaseEntry {
        service: store.service().to_string(),
        file: file_name(store.service()),
        sha256: sha256_file(&path)?,
        schema_version,
        tables,
    })
}

fn valid_dir_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase())
}

/// The only directories a restore puts back (a crafted manifest must not replace others,
/// such as `tls/`).
pub const RESTORABLE_DIRS: [&str; 1] = ["keys"];

/// A manifest file path: `dir/…/file`, every part a plain name (no `.`, `..`, empty or
/// hidden parts), under one of [`RESTORABLE_DIRS`].
fn valid_file_path(path: &str) -> bool {
    let mut parts = path.split('/');
    let top_ok = parts
        .next()
        .is_some_and(|d| valid_dir_name(d) && RESTORABLE_DIRS.contains(&d));
    let rest: Vec<&str> = parts.collect();
    top_ok
        && !rest.is_empty()
        && rest.len() <= 8
        && rest.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.len() <= 255
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// Copies the regular files under `source` to `dest/name/…`, listing them in `out`.
fn copy_tree(
    source: &Path,
    dest: &Path,
    rel: &str,
    out: &mut Vec<FileEntry>,
) -> Result<(), StoreError> {
    let entries = match fs::read_dir(source) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("read directory", source, e)),
    };
    let target_dir = dest.join(rel);
    fsutil::ensure_private_dir(&target_dir)
        .map_err(|e| StoreError::io("create directory", &target_dir, e))?;
    let mut names: Vec<_> = entries.flatten().collect();
    names.sort_by_key(fs::DirEntry::file_name);
    for entry in names {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{rel}/{name}");
        let kind = entry
            .file_type()
            .map_err(|e| StoreError::io("stat", entry.path(), e))?;
        if !valid_file_path(&path) {
            tracing::warn!(path = %entry.path().display(), "not backed up: unusual name");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), dest, &path, out)?;
        } else if kind.is_file() {
            let sha256 = sha256_file(&entry.path())?;
            copy_verified(&entry.path(), &dest.join(&path), &sha256)?;
            out.push(FileEntry { path, sha256 });
        }
    }
    fsutil::fsync_dir(&target_dir).map_err(|e| StoreError::io("sync", &target_dir, e))
}

fn file_name(service: &str) -> String {
    format!("{service}.redb")
}

fn sha256_file(path: &Path) -> Result<String, StoreError> {
    let mut f = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| StoreError::io("read", path, e))?;
        if n == 0 {
            return Ok(hex::encode(ctx.finish().as_ref()));
        }
        ctx.update(&buf[..n]);
    }
}

// redb trusts files it believes it wrote and may panic on a crafted one; a backup comes from
// outside, so a panic while reading it becomes an error.
fn contain_panic<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(StoreError::corrupt(format!(
            "{what}: the database engine failed reading it"
        )))
    })
}

/// Checks a backup end to end without changing anything: manifest, file hashes, and every
/// table's records against its digest.
pub fn verify(src: &Path) -> Result<Manifest, StoreError> {
    let path = src.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::verify(format!(
                "{} has no {MANIFEST}, so it is not a complete backup",
                src.display()
            )));
        }
        Err(e) => return Err(StoreError::io("read", &path, e)),
    };
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let format: Format = serde_json::from_slice(&bytes).map_err(|source| StoreError::Decode {
        table: MANIFEST.to_string(),
        source,
    })?;
    if format.format != FORMAT {
        return Err(StoreError::verify(format!(
            "manifest format {} is not {FORMAT}, the one this Kopa reads",
            format.format
        )));
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Decode {
            table: MANIFEST.to_string(),
            source,
        })?;
    let mut seen = BTreeSet::new();
    for entry in &manifest.databases {
        // The manifest names files; only `<service>.redb` inside the backup is acceptable.
        if !valid_service_name(&entry.service) || entry.file != file_name(&entry.service) {
            return Err(StoreError::verify(format!(
                "manifest entry {:?} does not name a service database",
                entry.file
            )));
        }
        if !seen.insert(entry.service.as_str()) {
            return Err(StoreError::verify(format!(
                "service {} listed twice",
                entry.service
            )));
        }
    }
    for entry in &manifest.databases {
        verify_entry(src, entry)?;
    }
    let mut paths = BTreeSet::new();
    for f in &manifest.files {
        if !valid_file_path(&f.path) || !paths.insert(f.path.as_str()) {
            return Err(StoreError::verify(format!(
                "manifest file entry {:?} is not a usable path",
                f.path
            )));
        }
        let path = src.join(&f.path);
        let is_file = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        if !is_file || sha256_file(&path)? != f.sha256 {
            return Err(StoreError::verify(format!(
                "{} is missing or does not match its SHA-256 in the manifest",
                f.path
            )));
        }
    }
    Ok(manifest)
}

fn verify_entry(src: &Path, entry: &DatabaseEntry) -> Result<(), StoreError> {
    let path = src.join(&entry.file);
    if sha256_file(&path)? != entry.sha256 {
        return Err(StoreError::verify(format!(
            "{} does not match its SHA-256 in the manifest",
            entry.file
        )));
    }
    let (tables, service, version) = contain_panic(&entry.file, || {
        let db = redb::ReadOnlyDatabase::open(&path).map_err(|e| map_open_error(&path, e))?;
        let txn = ReadTxn::new(db.begin_read()?);
        let tables = digest_txn(txn.raw())?;
        Ok((
            tables,
            migrate::read_service(&txn)?,
            migrate::read_version(&txn)?,
        ))
    })?;
    if service.as_deref() != Some(entry.service.as_str()) {
        return Err(StoreError::verify(format!(
            "{} does not belong to service {}",
            entry.file, entry.service
        )));
    }
    if version != entry.schema_version {
        return Err(StoreError::verify(format!(
            "{} has schema version {version}, the manifest says {}",
            entry.file, entry.schema_version
        )));
    }
    if tables != entry.tables {
        let names: BTreeSet<_> = tables.keys().chain(entry.tables.keys()).collect();
        let differing = names
            .into_iter()
            .find(|n| tables.get(*n) != entry.tables.get(*n))
            .map_or_else(String::new, |n| n.clone());
        return Err(StoreError::verify(format!(
            "table {differing} of {} does not match the manifest",
            entry.file
        )));
    }
    Ok(())
}

/// Replaces the databases of `data_dir` with those of the backup in `src`, keeping the
/// current files beside them. Nothing in `data_dir` changes unless the whole backup verifies
/// and every target database is closed.
pub fn restore(
    src: &Path,
    data_dir: &Path,
    known: &[&'static Schema],
) -> Result<RestoreReport, StoreError> {
    let manifest = verify(src)?;
    for entry in &manifest.databases {
        let schema = known
            .iter()
            .find(|s| s.service == entry.service)
            .ok_or_else(|| StoreError::UnknownService {
                service: entry.service.clone(),
            })?;
        if entry.schema_version > schema.latest() {
            return Err(StoreError::NewerSchema {
                service: entry.service.clone(),
                found: entry.schema_version,
                supported: schema.latest(),
            });
        }
    }
    fsutil::ensure_private_dir(data_dir)
        .map_err(|e| StoreError::io("create directory", data_dir, e))?;

    // Held until the swap is done, so a Kopa starting meanwhile cannot open the old files.
    let mut guards = Vec::new();
    for entry in &manifest.databases {
        let target = db_file(data_dir, &entry.service);
        if let Some(g) = lock_existing(&target)? {
            guards.push(g);
        }
    }

    let staged_dirs = stage_files(src, data_dir, &manifest)?;
    let mut staged = Vec::new();
    for entry in &manifest.databases {
        let tmp = data_dir.join(format!("{}.restoring", file_name(&entry.service)));
        let copied = copy_verified(&src.join(&entry.file), &tmp, &entry.sha256);
        if let Err(e) = copied {
            for t in staged.iter().chain([&tmp]) {
                let _ = fs::remove_file(t);
            }
            // The staged key files are private keys: never left lying around.
            for dir in &staged_dirs {
                let _ = fs::remove_dir_all(data_dir.join(format!("{dir}.restoring")));
            }
            return Err(e);
        }
        staged.push(tmp);
    }

    let mut report = RestoreReport::default();
    let swapped = swap_in(&manifest, data_dir, &staged, &mut report)
        .and_then(|()| swap_dirs_in(&manifest, data_dir, &staged_dirs, &mut report));
    if let Err(e) = swapped {
        // Renames are not undone: the operator needs to know exactly where things stand.
        tracing::error!(
            restored = ?report.restored,
            moved_aside = ?report.moved_aside,
            error = %e,
            "restore stopped part way"
        );
        return Err(e);
    }
    fsutil::fsync_dir(data_dir).map_err(|e| StoreError::io("sync", data_dir, e))?;
    drop(guards);
    tracing::info!(src = %src.display(), restored = ?report.restored, "restore complete");
    Ok(report)
}

/// Copies the backup's plain files into `data_dir/<dir>.restoring/`, verified; returns the
/// directory names staged.
fn stage_files(
    src: &Path,
    data_dir: &Path,
    manifest: &Manifest,
) -> Result<Vec<String>, StoreError> {
    let mut dirs: Vec<String> = manifest
        .files
        .iter()
        .filter_map(|f| f.path.split('/').next().map(str::to_owned))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        let staging = data_dir.join(format!("{dir}.restoring"));
        if fs::symlink_metadata(&staging).is_ok() {
            fs::remove_dir_all(&staging)
                .map_err(|e| StoreError::io("remove stale", &staging, e))?;
        }
    }
    for f in &manifest.files {
        let (dir, rest) = f.path.split_once('/').unwrap_or_default();
        let to = data_dir.join(format!("{dir}.restoring")).join(rest);
        if let Some(parent) = to.parent() {
            fsutil::ensure_private_dir(parent)
                .map_err(|e| StoreError::io("create directory", parent, e))?;
        }
        if let Err(e) = copy_verified(&src.join(&f.path), &to, &f.sha256) {
            for dir in &dirs {
                let _ = fs::remove_dir_all(data_dir.join(format!("{dir}.restoring")));
            }
            return Err(e);
        }
    }
    Ok(dirs)
}

/// Puts each staged directory in place, the current one moved aside.
fn swap_dirs_in(
    manifest: &Manifest,
    data_dir: &Path,
    dirs: &[String],
    report: &mut RestoreReport,
) -> Result<(), StoreError> {
    for dir in dirs {
        let target = data_dir.join(dir);
        if fs::symlink_metadata(&target).is_ok() {
            let aside = aside_path(&target, manifest.created_at_ms);
            fs::rename(&target, &aside).map_err(|e| StoreError::io("move aside", &target, e))?;
            report.moved_aside.push(aside);
        }
        let staged = data_dir.join(format!("{dir}.restoring"));
        fs::rename(&staged, &target)
            .map_err(|e| StoreError::io("rename into place", &staged, e))?;
        report.restored.push(format!("{dir}/"));
    }
    Ok(())
}

fn swap_in(
    manifest: &Manifest,
    data_dir: &Path,
    staged: &[PathBuf],
    report: &mut RestoreReport,
) -> Result<(), StoreError> {
    for (entry, tmp) in manifest.databases.iter().zip(staged) {
        let target = db_file(data_dir, &entry.service);
        if fs::symlink_metadata(&target).is_ok() {
            let aside = aside_path(&target, manifest.created_at_ms);
            fs::rename(&target, &aside).map_err(|e| StoreError::io("move aside", &target, e))?;
            tracing::info!(from = %target.display(), to = %aside.display(), "moved current database aside");
            report.moved_aside.push(aside);
        }
        // The journal holds changes made after the backup, to the database just moved
        // aside: it goes with that database, never onto the restored one.
        let journal = journal_file(data_dir, &entry.service);
        if fs::symlink_metadata(&journal).is_ok() {
            let aside = aside_path(&journal, manifest.created_at_ms);
            fs::rename(&journal, &aside).map_err(|e| StoreError::io("move aside", &journal, e))?;
            report.moved_aside.push(aside);
        }
        fs::rename(tmp, &target).map_err(|e| StoreError::io("rename into place", tmp, e))?;
        report.restored.push(entry.service.clone());
    }
    Ok(())
}

/// Opens an existing database read-only, which fails if a Kopa has it open and then keeps
/// any Kopa from opening it.
fn lock_existing(target: &Path) -> Result<Option<redb::ReadOnlyDatabase>, StoreError> {
    if fs::symlink_metadata(target).is_err() {
        return Ok(None);
    }
    let opened = contain_panic(&target.display().to_string(), || {
        Ok(redb::ReadOnlyDatabase::open(target))
    })?;
    match opened {
        Ok(db) => Ok(Some(db)),
        Err(e) => match map_open_error(target, e) {
            locked @ StoreError::Locked { .. } => Err(locked),
            other => {
                tracing::warn!(path = %target.display(), error = %other, "replacing a database that does not open");
                Ok(None)
            }
        },
    }
}

/// Copies `from` to a fresh mode-0600 `to`, hashing what was read, so a backup file changed
/// after verification is caught.
fn copy_verified(from: &Path, to: &Path, sha256: &str) -> Result<(), StoreError> {
    match fs::remove_file(to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("remove stale", to, e)),
    }
    let mut input = File::open(from).map_err(|e| StoreError::io("open", from, e))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| StoreError::io("create", to, e))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| StoreError::io("read", from, e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(|e| StoreError::io("write", to, e))?;
    }
    output
        .sync_all()
        .map_err(|e| StoreError::io("sync", to, e))?;
    if hex::encode(ctx.finish().as_ref()) != sha256 {
        let _ = fs::remove_file(to);
        return Err(StoreError::verify(format!(
            "{} changed after it was verified",
            from.display()
        )));
    }
    Ok(())
}

fn aside_path(target: &Path, created_at_ms: u64) -> PathBuf {
    let mut base = target.as_os_str().to_owned();
    base.push(format!(".pre-restore-{created_at_ms}"));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while fs::symlink_metadata(&candidate).is_ok() {
        let mut next = base.clone();
        next.push(format!(".{n}"));
        candidate = PathBuf::from(next);
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::valid_file_path;

    #[test]
    fn only_plain_paths_under_keys_can_be_restored() {
        assert!(valid_file_path("keys/saml-pairwise.secret"));
        assert!(valid_file_path("keys/retired/oidc-es256-1767225600.pem"));
        for bad in [
            "keys",
            "keys/",
            "keys/../idp.redb",
            "keys/.hidden",
            "/keys/x",
            "tls/key.pem",
            "keys//x",
            "keys/a b",
        ] {
            assert!(!valid_file_path(bad), "{bad:?}");
        }
    }
}
