//! Clients: the natural or legal persons a case is for. A natural person's personal code
//! is stored whole but shown masked; the whole code goes only to roles that work with
//! the client, on an explicit request that the audit log records.

use crate::person::{PersonalCode, fold};
use serde::{Deserialize, Serialize};

/// Natural or legal person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A person, identified by a personal code (personal data: masked).
    Natural,
    /// A company or organisation, identified by its 11-digit registration number
    /// (public: shown whole).
    Legal,
}

/// A client to register.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub kind: ClientKind,
    /// Full name (a person) or registered name (an organisation).
    pub name: String,
    /// Personal code (`DDMMYY-NNNNN`) or registration number (11 digits).
    pub code: String,
    /// The centre registering the client (one of the caller's).
    pub centre: String,
}

/// A client as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub id: u64,
    pub kind: ClientKind,
    pub name: String,
    /// Normalised: `DDMMYY-NNNNN` or the 11 digits.
    pub code: String,
    /// The centre that registered the client.
    pub centre: String,
    pub registered: u64,
}

/// A client as the API shows it: the code masked for a natural person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClientView {
    pub id: u64,
    pub kind: ClientKind,
    pub name: String,
    /// Masked (`******-***NN`) for a natural person; whole for a legal one.
    pub code: String,
}

/// Longest client name, in characters.
pub const NAME_MAX: usize = 300;

impl NewClient {
    /// Checks the request and gives the normalised code.
    pub fn normalised_code(&self) -> Result<String, String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control)
        {
            return Err(format!(
                "name: 1-{NAME_MAX} characters without control characters"
            ));
        }
        normalise_code(self.kind, &self.code)
    }
}

/// The code in its stored form, or why it is not one.
pub fn normalise_code(kind: ClientKind, code: &str) -> Result<String, String> {
    match kind {
        ClientKind::Natural => PersonalCode::parse(code)
            .map(|c| c.as_str().to_owned())
            .map_err(|e| format!("code: {e}")),
        ClientKind::Legal => {
            let c = code.trim();
            if c.len() == 11 && c.bytes().all(|b| b.is_ascii_digit()) {
                Ok(c.to_owned())
            } else {
                Err("code: a registration number is 11 digits".into())
            }
        }
    }
}

impl ClientRecord {
    /// What everyone who may see the client sees.
    pub fn view(&self) -> ClientView {
        ClientView {
            id: self.id,
            kind: self.kind,
            name: self.name.clone(),
            code: self.shown_code(),
        }
    }

    /// The code as shown without unmasking.
    pub fn shown_code(&self) -> String {
        match self.kind {
            ClientKind::Natural => PersonalCode::parse(&self.code)
                .map(|c| c.masked())
                .unwrap_or_else(|_| "******-*****".into()),
            ClientKind::Legal => self.code.clone(),
        }
    }

    /// The folded words of the name, for search.
    pub fn words(&self) -> Vec<String> {
        words(&self.name)
    }
}

/// The folded words of `text` (letters and digits; everything else separates).
pub fn words(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalised_and_masked_only_for_persons() {
        let person = NewClient {
            kind: ClientKind::Natural,
            name: "Jānis Bērziņš".into(),
            code: "32123456789".into(),
            centre: "talsi".into(),
        };
        assert_eq!(person.normalised_code().unwrap(), "321234-56789");
        let record = ClientRecord {
            id: 1,
            kind: ClientKind::Natural,
            name: person.name.clone(),
            code: "321234-56789".into(),
            centre: "talsi".into(),
            registered: 0,
        };
        assert_eq!(record.view().code, "******-***89");
        assert_eq!(record.words(), ["janis", "berzins"]);
        let firm = ClientRecord {
            kind: ClientKind::Legal,
            code: "40003245752".into(),
            ..record
        };
        assert_eq!(firm.view().code, "40003245752");
        assert!(normalise_code(ClientKind::Legal, "4000324575").is_err());
        let blank = NewClient {
            name: "  ".into(),
            ..person
        };
        assert!(blank.normalised_code().unwrap_err().starts_with("name"));
    }
}
