//! The service catalogue: what clients can apply for, who owns each service, through which
//! channels, and the statutory deadline that the case indicators measure against.

use crate::case::Channel;
use serde::{Deserialize, Serialize};

/// A text in both languages of the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bilingual {
    pub lv: String,
    pub en: String,
}

/// One service of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The service's code (as in the national catalogue, e.g. `VPVKAC-101`).
    pub code: String,
    pub name: Bilingual,
    /// The institution (tenant) that owns the service and decides its cases.
    pub owner: String,
    /// Channels a request for it may arrive by.
    pub channels: Vec<Channel>,
    /// Days from registration to the decision the law allows; `None` when it sets none.
    pub deadline_days: Option<u32>,
    /// Documents the client must bring or attach.
    #[serde(default)]
    pub required_documents: Vec<Bilingual>,
    /// How staff handle a request for it.
    #[serde(default)]
    pub instructions: Option<Bilingual>,
}

/// Longest service code.
pub const CODE_MAX: usize = 64;
/// Longest name, document or instruction text, in characters.
pub const TEXT_MAX: usize = 4000;

/// What is wrong with a service description: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: &'static str,
}

fn invalid(field: &'static str, message: &'static str) -> Invalid {
    Invalid { field, message }
}

pub(crate) fn check_text(field: &'static str, t: &Bilingual) -> Result<(), Invalid> {
    for s in [&t.lv, &t.en] {
        if s.trim().is_empty() {
            return Err(invalid(field, "must be given in Latvian and in English"));
        }
        if s.chars().count() > TEXT_MAX || s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(invalid(field, "is too long or holds control characters"));
        }
    }
    Ok(())
}

impl Service {
    /// Checks the description before it is stored.
    pub fn validate(&self) -> Result<(), Invalid> {
        let code_ok = !self.code.is_empty()
            && self.code.len() <= CODE_MAX
            && self
                .code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !code_ok {
            return Err(invalid(
                "code",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        check_text("name", &self.name)?;
        if self.owner.trim().is_empty() {
            return Err(invalid("owner", "must name the owning institution"));
        }
        if self.channels.is_empty() {
            return Err(invalid("channels", "must list at least one channel"));
        }
        let mut seen = Vec::new();
        for c in &self.channels {
            if seen.contains(c) {
                return Err(invalid("channels", "lists a channel twice"));
            }
            seen.push(*c);
        }
        if self.deadline_days.is_some_and(|d| d == 0 || d > 366) {
            return Err(invalid("deadline_days", "must be 1 to 366 days"));
        }
        for d in &self.required_documents {
            check_text("required_documents", d)?;
        }
        if let Some(i) = &self.instructions {
            check_text("instructions", i)?;
        }
        Ok(())
    }

    /// Whether a request may arrive for it by `channel`.
    pub fn offers(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lv: &str, en: &str) -> Bilingual {
        Bilingual {
            lv: lv.into(),
            en: en.into(),
        }
    }

    fn service() -> Service {
        Service {
            code: "VPVKAC-101".into(),
            name: text(
                "Deklarētās dzīvesvietas maiņa",
                "Change of declared residence",
            ),
            owner: "pmlp".into(),
            channels: vec![Channel::InPerson, Channel::EService],
            deadline_days: Some(1),
            required_documents: vec![text("Pase", "Passport")],
            instructions: None,
        }
    }

    #[test]
    fn a_service_is_checked_field_by_field() {
        assert_eq!(service().validate(), Ok(()));
        assert!(service().offers(Channel::EService));
        assert!(!service().offers(Channel::Email));
        let bad = |f: fn(&mut Service), field: &str| {
            let mut s = service();
            f(&mut s);
            assert_eq!(s.validate().unwrap_err().field, field);
        };
        bad(|s| s.code = "VPVKAC 101".into(), "code");
        bad(|s| s.code = String::new(), "code");
        bad(|s| s.name.en = " ".into(), "name");
        bad(|s| s.name.lv = "a\u{0}b".into(), "name");
        bad(|s| s.owner = String::new(), "owner");
        bad(|s| s.channels.clear(), "channels");
        bad(|s| s.channels.push(Channel::InPerson), "channels");
        bad(|s| s.deadline_days = Some(0), "deadline_days");
        bad(
            |s| s.required_documents.push(text("", "x")),
            "required_documents",
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"code":"A","name":{"lv":"a","en":"a"},"owner":"o","channels":["email"],
            "deadline_days":null,"price":3}"#;
        assert!(serde_json::from_str::<Service>(json).is_err());
    }
}
