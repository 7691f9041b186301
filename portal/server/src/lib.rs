//! The VPVKAC portal server. So far it owns only its database, `portal.redb`, which the appliance opens,
//! reports in `/readyz` and includes in backups; its features arrive with their issues.

use kopa_store::Schema;

/// The portal database; its tables come with the first migration that needs them.
pub static SCHEMA: Schema = Schema {
    service: "portal",
    migrations: &[],
};
