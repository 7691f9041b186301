//! The VPVKAC portal server. It owns its database, `portal.redb`, which the appliance
//! opens, reports in `/readyz` and includes in backups. So far it holds the domain rules of
//! case work ([`case`]: channels, states, who may move a case, time indicators), of the
//! service catalogue ([`catalogue`]: owners, channels, deadlines, checked), of
//! clients ([`person`]: personal codes, diacritic-insensitive search) and of reports
//! ([`report`]: medians, 90th percentiles, deadline compliance, CSV); the store and the
//! API build on them.

pub mod case;
pub mod catalogue;
pub mod person;
pub mod report;

use kopa_store::Schema;

/// The portal database; its tables come with the first migration that needs them.
pub static SCHEMA: Schema = Schema {
    service: "portal",
    migrations: &[],
};
