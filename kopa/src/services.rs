//! Every service's storage, opened together: one redb file per service.

use crate::StartError;
use futures_util::future::BoxFuture;
use kopa_core::Clock;
use kopa_idp::LocalAccounts;
use kopa_store::{Schema, Store};
use kopa_web::ReadinessProbe;
use std::path::Path;
use std::sync::Arc;

/// The schema of every database the appliance keeps, in backup order.
pub static SCHEMAS: [&Schema; 4] = [
    &kopa_idp::SCHEMA,
    &kopa_monitor::SCHEMA,
    &kopa_portal_server::SCHEMA,
    &kopa_hypervisor::SCHEMA,
];

/// The opened services.
#[derive(Debug, Clone)]
pub struct Services {
    /// One store per entry of [`SCHEMAS`], same order.
    pub stores: Vec<Store>,
    /// Local accounts of the IdP.
    pub accounts: LocalAccounts,
}

impl Services {
    /// Opens (and migrates) every database under `data_dir`.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let stores = SCHEMAS
            .iter()
            .map(|schema| Store::open(data_dir, schema))
            .collect::<Result<Vec<_>, _>>()?;
        let idp = stores[0].clone();
        Ok(Self {
            accounts: LocalAccounts::new(idp, clock),
            stores,
        })
    }

    /// One readiness probe per database.
    pub fn probes(&self) -> Vec<Arc<dyn ReadinessProbe>> {
        self.stores
            .iter()
            .map(|s| Arc::new(StoreProbe(s.clone())) as Arc<dyn ReadinessProbe>)
            .collect()
    }
}

/// A service is ready when its database answers a read.
#[derive(Debug)]
struct StoreProbe(Store);

impl ReadinessProbe for StoreProbe {
    fn name(&self) -> &'static str {
        self.0.service()
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
