//! The security monitor. So far it owns only its database, `monitor.redb`, which the appliance opens,
//! reports in `/readyz` and includes in backups; its features arrive with their issues.

use kopa_store::Schema;

/// The monitor database; its tables come with the first migration that needs them.
pub static SCHEMA: Schema = Schema {
    service: "monitor",
    migrations: &[],
};
