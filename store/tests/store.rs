//! Behaviour of the store crate through its public API: migrations, typed tables, locking,
//! backup, verify and restore.
// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used)]

use kopa_core::TenantId;
use kopa_store::backup::{self, MANIFEST, Manifest};
use kopa_store::{Migration, Schema, Store, StoreError, Table, WriteTxn};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const LOG: Table<u32, String> = Table::new("migration_log");
const SEQ: Table<u64, String> = Table::new("seq");
const MEMBERS: Table<(TenantId, String), u32> = Table::new("members");
const NAMES: Table<(String, u64), String> = Table::new("names");

fn log(t: &WriteTxn<'_>, v: u32) -> Result<(), StoreError> {
    let n = t.len(&LOG)? as u32;
    t.insert(&LOG, &n, &format!("m{v}"))?;
    Ok(())
}

const M1: Migration = Migration {
    version: 1,
    description: "create tables",
    apply: |t| {
        t.open_table(&SEQ)?;
        log(t, 1)
    },
};
const M2: Migration = Migration {
    version: 2,
    description: "second",
    apply: |t| log(t, 2),
};
const M3: Migration = Migration {
    version: 3,
    description: "third",
    apply: |t| log(t, 3),
};
const FAILS: Migration = Migration {
    version: 3,
    description: "fails half way",
    apply: |t| {
        log(t, 3)?;
        Err(StoreError::Corrupt {
            what: "test".into(),
        })
    },
};

static V2: Schema = Schema {
    service: "app",
    cache_bytes: None,
    migrations: &[M1, M2],
};
static V3: Schema = Schema {
    service: "app",
    cache_bytes: None,
    migrations: &[M1, M2, M3],
};
static V3_FAILS: Schema = Schema {
    service: "app",
    cache_bytes: None,
    migrations: &[M1, M2, FAILS],
};
static OTHER: Schema = Schema {
    service: "other",
    cache_bytes: None,
    migrations: &[M1],
};
static GAPPY: Schema = Schema {
    service: "app",
    cache_bytes: None,
    migrations: &[M1, M3],
};

fn migration_log(store: &Store) -> Vec<String> {
    store
        .read_blocking(|t| t.iter(&LOG))
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

#[test]
fn migrations_run_once_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &V2).unwrap();
    assert_eq!(store.schema_version().unwrap(), 2);
    assert_eq!(migration_log(&store), ["m1", "m2"]);
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(store.path(), dir.path().join("app.redb"));
    drop(store);

    let store = Store::open(dir.path(), &V2).unwrap();
    assert_eq!(migration_log(&store), ["m1", "m2"]);
    drop(store);

    let store = Store::open(dir.path(), &V3).unwrap();
    assert_eq!(store.schema_version().unwrap(), 3);
    assert_eq!(migration_log(&store), ["m1", "m2", "m3"]);
}

#[test]
fn failed_migration_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &V2).unwrap());
    let err = Store::open(dir.path(), &V3_FAILS).unwrap_err();
    assert!(
        matches!(err, StoreError::Migration { version: 3, .. }),
        "{err:?}"
    );
    let store = Store::open(dir.path(), &V2).unwrap();
    assert_eq!(store.schema_version().unwrap(), 2);
    assert_eq!(migration_log(&store), ["m1", "m2"]);
}

#[test]
fn newer_schema_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &V3).unwrap());
    let err = Store::open(dir.path(), &V2).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer Kopa"));

    std::fs::rename(dir.path().join("app.redb"), dir.path().join("other.redb")).unwrap();
    let err = Store::open(dir.path(), &OTHER).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn invalid_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path(), &GAPPY).unwrap_err();
    assert!(matches!(err, StoreError::InvalidSchema { .. }), "{err:?}");
    assert!(!dir.path().join("app.redb").exists());
}

#[test]
fn second_open_in_one_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &V2).unwrap();
    let err = Store::open(dir.path(), &V2).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    drop(store);
    Store::open(dir.path(), &V2).unwrap();
}

#[test]
fn typed_operations_and_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &V2).unwrap();

    let (empty, missing) = store
        .read_blocking(|t| Ok((t.iter(&MEMBERS)?, t.get(&MEMBERS, &(tid("a"), "x".into()))?)))
        .unwrap();
    assert!(empty.is_empty() && missing.is_none());

    store
        .write_blocking(|t| {
            for (tenant, user, n) in [
                ("riga", "zane", 1),
                ("riga", "anna", 2),
                ("rig", "peter", 3),
                ("riga-2", "ilze", 4),
                ("ventspils", "anna", 5),
            ] {
                assert_eq!(t.insert(&MEMBERS, &(tid(tenant), user.into()), &n)?, None);
            }
            for i in [300u64, 2, 256, 1] {
                t.insert(&NAMES, &("a".into(), i), &format!("a{i}"))?;
                t.insert(&NAMES, &("a\0".into(), i), &"nul".to_string())?;
                t.insert(&NAMES, &("".into(), i), &"empty".to_string())?;
            }
            Ok(())
        })
        .unwrap();

    store
        .read_blocking(|t| {
            let riga: Vec<_> = t
                .scan_prefix(&MEMBERS, &tid("riga"))?
                .into_iter()
                .map(|((_, u), n)| (u, n))
                .collect();
            assert_eq!(riga, [("anna".to_string(), 2), ("zane".to_string(), 1)]);
            let all: Vec<_> = t.iter(&MEMBERS)?.into_iter().map(|(_, n)| n).collect();
            assert_eq!(all, [3, 2, 1, 4, 5]);
            let a: Vec<_> = t
                .scan_prefix(&NAMES, &"a".to_string())?
                .into_iter()
                .map(|((_, i), _)| i)
                .collect();
            assert_eq!(a, [1, 2, 256, 300]);
            assert_eq!(t.scan_prefix(&NAMES, &String::new())?.len(), 4);
            assert_eq!(t.len(&NAMES)?, 12);
            let from = t.range_from(&NAMES, &("a".into(), 3), 2)?;
            assert_eq!(from[0].1, "a256");
            assert_eq!(from[1].1, "a300");
            assert_eq!(t.first(&NAMES)?.unwrap().0, (String::new(), 1));
            assert_eq!(t.last(&NAMES)?.unwrap().0, ("a\0".to_string(), 300));
            Ok(())
        })
        .unwrap();

    store
        .write_blocking(|t| {
            let key = (tid("riga"), "zane".to_string());
            assert_eq!(t.insert(&MEMBERS, &key, &10)?, Some(1));
            assert_eq!(t.get(&MEMBERS, &key)?, Some(10));
            assert_eq!(t.remove(&MEMBERS, &key)?, Some(10));
            assert_eq!(t.remove(&MEMBERS, &key)?, None);
            assert!(!t.contains(&MEMBERS, &key)?);
            Ok(())
        })
        .unwrap();
    assert_eq!(store.read_blocking(|t| t.len(&MEMBERS)).unwrap(), 4);
}

#[test]
fn failed_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &V2).unwrap();
    let err = store
        .write_blocking(|t| {
            t.insert(&SEQ, &1, &"one".to_string())?;
            t.open_table(&MEMBERS)?;
            Err::<(), _>(StoreError::Corrupt {
                what: "rejected".into(),
            })
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }));
    let before = backup::digest_store(&store).unwrap();
    assert!(!before.contains_key("members"));
    assert_eq!(store.read_blocking(|t| t.len(&SEQ)).unwrap(), 0);
}

#[tokio::test]
async fn async_transactions_and_ping() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &V2).unwrap();
    store.ping().await.unwrap();
    let prev = store
        .write(|t| t.insert(&SEQ, &7, &"seven".to_string()))
        .await
        .unwrap();
    assert_eq!(prev, None);
    let got = store.read(|t| t.get(&SEQ, &7)).await.unwrap();
    assert_eq!(got.as_deref(), Some("seven"));
}

/// File names with the length and a hash of their contents.
fn snapshot_dir(p: &Path) -> BTreeMap<String, (usize, u64)> {
    use std::hash::{Hash, Hasher};
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            (
                e.file_name().to_string_lossy().into_owned(),
                (bytes.len(), h.finish()),
            )
        })
        .collect()
}

fn seeded(dir: &Path) -> (Store, Store) {
    let app = Store::open(&dir.join("data"), &V3).unwrap();
    let other = Store::open(&dir.join("data"), &OTHER).unwrap();
    app.write_blocking(|t| {
        for i in 0..50u64 {
            t.insert(&SEQ, &i, &format!("v{i}"))?;
        }
        Ok(())
    })
    .unwrap();
    (app, other)
}

#[test]
fn backup_during_writes_restores_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), &V3).unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let store = store.clone();
        let written = written.clone();
        std::thread::spawn(move || {
            for i in 0..2000u64 {
                store
                    .write_blocking(|t| t.insert(&SEQ, &i, &format!("v{i}")))
                    .unwrap();
                written.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    while written.load(Ordering::SeqCst) < 100 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let bk = dir.path().join("bk");
    let manifest = backup::backup(std::slice::from_ref(&store), &bk, "0.1.0", 42).unwrap();
    writer.join().unwrap();
    assert_eq!(store.read_blocking(|t| t.len(&SEQ)).unwrap(), 2000);

    assert_eq!(backup::verify(&bk).unwrap(), manifest);
    assert_eq!(manifest.databases[0].schema_version, 3);
    let fresh = dir.path().join("fresh");
    let report = backup::restore(&bk, &fresh, &[&V3, &OTHER]).unwrap();
    assert_eq!(report.restored, ["app"]);
    assert!(report.moved_aside.is_empty());

    let restored = Store::open(&fresh, &V3).unwrap();
    assert_eq!(
        backup::digest_store(&restored).unwrap(),
        manifest.databases[0].tables
    );
    let rows = restored.read_blocking(|t| t.iter(&SEQ)).unwrap();
    assert!(rows.len() >= 100, "only {} rows", rows.len());
    for (i, (k, v)) in rows.iter().enumerate() {
        assert_eq!(*k, i as u64);
        assert_eq!(*v, format!("v{i}"));
    }
    assert_eq!(migration_log(&restored), ["m1", "m2", "m3"]);
    eprintln!("backup caught {} of 2000 writes", rows.len());
}

#[test]
fn restore_replaces_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let (app, other) = seeded(dir.path());
    let bk = dir.path().join("bk");
    let manifest = backup::backup(&[app.clone(), other.clone()], &bk, "0.1.0", 7).unwrap();
    app.write_blocking(|t| t.insert(&SEQ, &1000, &"later".to_string()))
        .unwrap();
    let later = backup::digest_store(&app).unwrap();
    drop((app, other));

    let data = dir.path().join("data");
    let report = backup::restore(&bk, &data, &[&V3, &OTHER]).unwrap();
    assert_eq!(report.restored, ["app", "other"]);
    assert_eq!(report.moved_aside.len(), 2);
    assert!(report.moved_aside[0].ends_with("app.redb.pre-restore-7"));

    let app = Store::open(&data, &V3).unwrap();
    assert_eq!(
        backup::digest_store(&app).unwrap(),
        manifest.databases[0].tables
    );
    let mode = std::fs::metadata(app.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(app);

    std::fs::rename(&report.moved_aside[0], data.join("app.redb")).unwrap();
    let app = Store::open(&data, &V3).unwrap();
    assert_eq!(backup::digest_store(&app).unwrap(), later);
}

#[test]
fn flipped_byte_fails_verify_and_restore_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, other) = seeded(dir.path());
    let bk = dir.path().join("bk");
    backup::backup(&[app.clone(), other.clone()], &bk, "0.1.0", 7).unwrap();
    drop((app, other));
    let file = bk.join("app.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let data = dir.path().join("data");
    let before = snapshot_dir(&data);
    let err = backup::verify(&bk).unwrap_err();
    assert!(matches!(err, StoreError::Verify { .. }), "{err:?}");
    let err = backup::restore(&bk, &data, &[&V3, &OTHER]).unwrap_err();
    assert!(matches!(err, StoreError::Verify { .. }), "{err:?}");
    assert_eq!(snapshot_dir(&data), before);
}

#[test]
fn tampered_manifest_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (app, other) = seeded(dir.path());
    let bk = dir.path().join("bk");
    let mut manifest = backup::backup(&[app, other], &bk, "0.1.0", 7).unwrap();
    let write = |m: &Manifest| std::fs::write(bk.join(MANIFEST), serde_json::to_vec(m).unwrap());

    let good = manifest.clone();
    manifest.databases[0].tables.get_mut("seq").unwrap().records -= 1;
    write(&manifest).unwrap();
    let err = backup::verify(&bk).unwrap_err();
    assert!(err.to_string().contains("table seq"), "{err}");

    let mut escape = good.clone();
    escape.databases[0].file = "../data/app.redb".into();
    write(&escape).unwrap();
    assert!(matches!(
        backup::verify(&bk),
        Err(StoreError::Verify { .. })
    ));

    std::fs::remove_file(bk.join(MANIFEST)).unwrap();
    assert!(matches!(
        backup::verify(&bk),
        Err(StoreError::Verify { .. })
    ));

    write(&good).unwrap();
    backup::verify(&bk).unwrap();
}

#[test]
fn restore_refuses_open_unknown_and_newer() {
    let dir = tempfile::tempdir().unwrap();
    let (app, other) = seeded(dir.path());
    let bk = dir.path().join("bk");
    backup::backup(&[app.clone(), other.clone()], &bk, "0.1.0", 7).unwrap();
    let data = dir.path().join("data");
    let names = |p: &Path| snapshot_dir(p).into_keys().collect::<Vec<_>>();

    let err = backup::restore(&bk, &data, &[&V3, &OTHER]).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("stop Kopa first"));
    drop(app);
    let err = backup::restore(&bk, &data, &[&V3, &OTHER]).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert_eq!(names(&data), ["app.redb", "other.redb"]);
    drop(other);

    let before = snapshot_dir(&data);

    let err = backup::restore(&bk, &data, &[&V3]).unwrap_err();
    assert!(matches!(err, StoreError::UnknownService { .. }), "{err:?}");
    let err = backup::restore(&bk, &data, &[&V2, &OTHER]).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 3, .. }),
        "{err:?}"
    );
    assert_eq!(snapshot_dir(&data), before);

    let err = backup::backup(&[], &bk, "0.1.0", 8).unwrap_err();
    assert!(
        matches!(err, StoreError::DestinationNotEmpty { .. }),
        "{err:?}"
    );
}
