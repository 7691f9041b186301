//! tmp
mod schema;
pub use schema::*;
pub const CONFIG_VERSION: u32 = 1;
#[cfg(test)]
mod t { #[test] fn p() { println!("{}", serde_json::to_string_pretty(&schemars::schema_for!(crate::Config)).unwrap()); } }
