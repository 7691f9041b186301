//! Every service's storage, opened together: one redb file per service, plus the audit log
//! and its signing key.

use crate::StartError;
use futures_util::future::BoxFuture;
use kopa_config::AuditConfig;
use kopa_core::Clock;
use kopa_idp::LocalAccounts;
use kopa_portal_server::work::CaseWork;
use kopa_store::audit::{AuditError, AuditLog, AuditOptions, AuditSigner};
use kopa_store::{Schema, Store, StoreError};
use kopa_web::ReadinessProbe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The schema of every database the appliance keeps, in backup order.
pub static SCHEMAS: [&Schema; 5] = [
    &kopa_idp::SCHEMA,
    &kopa_store::audit::AUDIT_SCHEMA,
    &kopa_monitor::SCHEMA,
    &kopa_portal_server::SCHEMA,
    &kopa_hypervisor::SCHEMA,
];

/// Where `AUDIT_SCHEMA` sits in [`SCHEMAS`].
const AUDIT_INDEX: usize = 1;
/// Where the monitor's schema sits in [`SCHEMAS`].
pub const MONITOR_INDEX: usize = 2;
/// Where the portal's schema sits in [`SCHEMAS`].
const PORTAL_INDEX: usize = 3;

/// The audit signing key under a data directory.
pub fn audit_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("audit-ed25519.pem")
}

/// The opened services.
#[derive(Debug, Clone)]
pub struct Services {
    /// One store per entry of [`SCHEMAS`], same order.
    pub stores: Vec<Store>,
    /// Local accounts of the IdP.
    pub accounts: LocalAccounts,
    /// The audit log. Its writer thread stops when the last clone of the services is
    /// dropped (dropping waits for it) or on [`AuditLog::close`].
    pub audit: AuditLog,
    /// Where the databases (and `keys/`) live.
    pub data_dir: PathBuf,
    /// The portal's case work (over the portal database, with its in-memory index).
    pub portal: CaseWork,
}

impl Services {
    /// Opens (and migrates) every database under `data_dir`, with the audit log's defaults
    /// and no retention: what the CLI uses when no appliance runs.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        Self::open_with(data_dir, clock, &AuditConfig::default())
    }

    /// Opens every database; the audit log runs as `[audit]` says.
    pub fn open_with(
        data_dir: &Path,
        clock: Arc<dyn Clock>,
        audit: &AuditConfig,
    ) -> Result<Self, StartError> {
        let stores = SCHEMAS
            .iter()
            .map(|schema| Store::open(data_dir, schema))
            .collect::<Result<Vec<_>, _>>()?;
        let idp = stores[0].clone();
        let audit = open_audit(data_dir, stores[AUDIT_INDEX].clone(), clock.clone(), audit)?;
        // Reads every case into the index: about a second per million.
        let portal = CaseWork::new(stores[PORTAL_INDEX].clone(), clock.clone())?;
        Ok(Self {
            portal,
            accounts: LocalAccounts::new(idp, clock),
            stores,
            audit,
            data_dir: data_dir.to_owned(),
        })
    }

    /// The IdP's database.
    pub fn idp_store(&self) -> Store {
        self.stores[0].clone()
    }

    /// One readiness probe per database.
    pub fn probes(&self) -> Vec<Arc<dyn ReadinessProbe>> {
        self.stores
            .iter()
            .map(|s| Arc::new(StoreProbe(s.clone())) as Arc<dyn ReadinessProbe>)
            .collect()
    }
}

fn open_audit(
    data_dir: &Path,
    store: Store,
    clock: Arc<dyn Clock>,
    config: &AuditConfig,
) -> Result<AuditLog, StartError> {
    let keys = data_dir.join("keys");
    kopa_store::fsutil::ensure_private_dir(&keys).map_err(|e| StartError::DataDir {
        path: keys.clone(),
        reason: e.to_string(),
    })?;
    let options = AuditOptions {
        max_batch: usize::try_from(config.max_batch).unwrap_or(usize::MAX),
        retention: (config.retention_days > 0)
            .then(|| Duration::from_secs(u64::from(config.retention_days) * 86_400)),
        ..AuditOptions::default()
    };
    let path = audit_key_file(data_dir);
    let opened = AuditSigner::load_or_generate(&path)
        .and_then(|signer| AuditLog::open(store, signer, clock, options));
    opened.map_err(|e| match e {
        AuditError::Store(e) => StartError::Store(e),
        AuditError::KeyFile { path, reason } => StartError::Secret { path, reason },
        other => StartError::Store(StoreError::Corrupt {
            what: format!("audit log: {other}"),
        }),
    })
}

/// A service is ready when its database answers a read.
#[derive(Debug)]
struct StoreProbe(Store);

impl ReadinessProbe for StoreProbe {
    fn name(&self) -> String {
        self.0.service().to_owned()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .ping()
                .await
                .map_err(|_| "database does not answer".to_owned())
        })
    }
}
