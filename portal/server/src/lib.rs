//! The VPVKAC portal server. It owns its database, `portal.redb`, which the appliance
//! opens, reports in `/readyz` and includes in backups.
//!
//! - [`case`]: channels, states, who may move a case, time indicators (pure rules);
//! - [`catalogue`]: services, their owners, channels and deadlines;
//! - [`org`]: institutions, customer service centres, who works where;
//! - [`client`] and [`person`]: clients, personal codes (masked), diacritic folding;
//! - [`attachment`]: what may be attached to a case, checked by content;
//! - [`report`]: medians, 90th percentiles, deadline compliance, CSV;
//! - [`work`]: all of it stored, with every read and write scoped by the caller;
//! - [`index`]: the in-memory view that lists, searches and reports read;
//! - [`http`]: the HTTP API under `/api/portal` and its OpenAPI document.

pub mod attachment;
pub mod case;
pub mod catalogue;
pub mod client;
pub mod http;
pub mod index;
pub mod org;
pub mod person;
pub mod report;
pub mod work;

use kopa_store::{Migration, Schema};

/// The portal database and its migrations.
pub static SCHEMA: Schema = Schema {
    service: "portal",
    cache_bytes: None,
    migrations: &[
        Migration {
            version: 1,
            description: "service catalogue and cases",
            apply: work::create_tables,
        },
        Migration {
            version: 2,
            description: "institutions, centres, staff, clients, saved filters; case history in its own table",
            apply: work::organisation_and_clients,
        },
        Migration {
            version: 3,
            description: "case attachments",
            apply: work::attachments_tables,
        },
    ],
};
