//! The VPVKAC portal server. It owns its database, `portal.redb`, which the appliance
//! opens, reports in `/readyz` and includes in backups. So far it holds the domain rules of
//! case work ([`case`]: channels, states, who may move a case, time indicators), of the
//! service catalogue ([`catalogue`]: owners, channels, deadlines, checked), of
//! clients ([`person`]: personal codes, diacritic-insensitive search) and of reports
//! ([`report`]: medians, 90th percentiles, deadline compliance, CSV). [`work`] keeps the
//! catalogue and cases in the database and decides on every read and write who may see
//! and move what; the HTTP API and the UI come next.

pub mod case;
pub mod catalogue;
pub mod person;
pub mod report;
pub mod work;

use kopa_store::{Migration, Schema};

/// The portal database and its migrations.
pub static SCHEMA: Schema = Schema {
    service: "portal",
    migrations: &[Migration {
        version: 1,
        description: "service catalogue and cases",
        apply: work::create_tables,
    }],
};
