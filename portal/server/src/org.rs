//! The organisation the portal serves: institutions (the tenants that own services),
//! customer service centres (run by an institution, serving the services of several) and
//! staff (a signed-in subject and the centres they work at). Roles come from the IdP;
//! the centres a person works at are the portal's own record, kept by administrators.

use crate::catalogue::{Bilingual, check_text};
use serde::{Deserialize, Serialize};

/// What kind of body an institution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstitutionKind {
    /// A state institution (e.g. the State Revenue Service).
    State,
    /// A municipality or one of its bodies.
    Municipal,
}

/// An institution: a tenant of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Institution {
    /// The tenant id (`a-z`, `0-9`, `-`), as the IdP names it.
    pub id: String,
    pub name: Bilingual,
    pub kind: InstitutionKind,
}

/// A customer service centre (a VPVKAC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Centre {
    /// Short id (`a-z`, `0-9`, `-`), e.g. `talsi-vpvkac`.
    pub id: String,
    pub name: Bilingual,
    /// The institution that runs the centre (its tenant administrators manage it).
    pub institution: String,
    /// The institutions whose services the centre delivers.
    pub serves: Vec<String>,
}

/// The centres a member of staff works at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// The IdP subject (`directory:user`).
    pub subject: String,
    pub centres: Vec<String>,
}

/// Checks a short identifier (institution or centre).
pub fn check_id(field: &'static str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
        ))
    }
}

impl Institution {
    /// Checks the record before it is stored.
    pub fn validate(&self) -> Result<(), String> {
        check_id("id", &self.id)?;
        check_text("name", &self.name).map_err(|e| e.to_string())
    }
}

impl Centre {
    /// Checks the record before it is stored (that the institutions exist is the
    /// store's check).
    pub fn validate(&self) -> Result<(), String> {
        check_id("id", &self.id)?;
        check_id("institution", &self.institution)?;
        check_text("name", &self.name).map_err(|e| e.to_string())?;
        if self.serves.is_empty() || self.serves.len() > 500 {
            return Err("serves: between 1 and 500 institutions".into());
        }
        self.serves.iter().try_for_each(|i| check_id("serves", i))
    }
}

impl Assignment {
    /// Checks the record before it is stored.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.subject;
        if s.is_empty() || s.len() > 512 || s.chars().any(char::is_control) {
            return Err("subject: 1-512 characters without control characters".into());
        }
        if self.centres.len() > 100 {
            return Err("centres: at most 100".into());
        }
        self.centres.iter().try_for_each(|c| check_id("centres", c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> Bilingual {
        Bilingual {
            lv: "Talsu VPVKAC".into(),
            en: "Talsi one-stop centre".into(),
        }
    }

    #[test]
    fn records_are_checked() {
        let mut c = Centre {
            id: "talsi-vpvkac".into(),
            name: name(),
            institution: "talsi".into(),
            serves: vec!["talsi".into(), "vid".into()],
        };
        assert!(c.validate().is_ok());
        c.serves.clear();
        assert!(c.validate().unwrap_err().starts_with("serves"));
        c.serves.push("Talsi".into());
        assert!(c.validate().unwrap_err().starts_with("serves"));
        let i = Institution {
            id: "-talsi".into(),
            name: name(),
            kind: InstitutionKind::Municipal,
        };
        assert!(i.validate().unwrap_err().starts_with("id"));
        let a = Assignment {
            subject: "talsi:anna\n".into(),
            centres: vec![],
        };
        assert!(a.validate().unwrap_err().starts_with("subject"));
    }
}
