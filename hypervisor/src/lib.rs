//! Tenant virtual servers. So far it owns only its database, `hypervisor.redb`, which the appliance opens,
//! reports in `/readyz` and includes in backups; its features arrive with their issues.

use kopa_store::Schema;

/// The hypervisor database; its tables come with the first migration that needs them.
pub static SCHEMA: Schema = Schema {
    service: "hypervisor",
    cache_bytes: None,
    migrations: &[],
};
