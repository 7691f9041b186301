//! Clients' identifiers and names: the Latvian personal code (checked, and masked for
//! those who need not see it), and the folding that lets "berzins" find "Bērziņš".

use serde::{Deserialize, Serialize};

/// A Latvian personal code, `DDMMYY-CNNNN` (issued before July 2017, with a check digit)
/// or `32NNNN-NNNNN` (issued since, no birth date and no check digit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonalCode(String);

/// Why a text is not a personal code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Not eleven digits (an optional hyphen after the sixth).
    #[error("a personal code is eleven digits, as DDMMYY-NNNNN")]
    Shape,
    /// An old-style code whose first six digits are no date.
    #[error("the first six digits of the personal code are not a date")]
    Date,
    /// An old-style code whose check digit does not match.
    #[error("the personal code's check digit does not match")]
    Check,
}

/// Weights of the check-digit sum of old-style codes.
const WEIGHTS: [u32; 10] = [1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

impl PersonalCode {
    /// Parses `text` (with or without the hyphen, surrounding spaces ignored).
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        let t = text.trim();
        let digits: String = match t.len() {
            11 => t.to_owned(),
            12 if t.as_bytes()[6] == b'-' => format!("{}{}", &t[..6], &t[7..]),
            _ => return Err(CodeError::Shape),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::Shape);
        }
        let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        if !digits.starts_with("32") {
            let (day, month) = (d[0] * 10 + d[1], d[2] * 10 + d[3]);
            if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
                return Err(CodeError::Date);
            }
            let sum: u32 = d.iter().zip(WEIGHTS).map(|(a, w)| a * w).sum();
            // The sum is at most 495; a remainder of 10 is never issued.
            if (1101 - sum) % 11 != d[10] {
                return Err(CodeError::Check);
            }
        }
        Ok(Self(format!("{}-{}", &digits[..6], &digits[6..])))
    }

    /// The code as `DDMMYY-NNNNN`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code for someone who need not see it: only the last two digits remain, so a
    /// specialist can confirm it with the client without reading it out.
    pub fn masked(&self) -> String {
        format!("******-***{}", &self.0[10..])
    }
}

impl TryFrom<String> for PersonalCode {
    type Error = CodeError;
    fn try_from(s: String) -> Result<Self, CodeError> {
        Self::parse(&s)
    }
}

impl From<PersonalCode> for String {
    fn from(c: PersonalCode) -> String {
        c.0
    }
}

/// `text` lowercased with Latvian (and other Latin) diacritics removed, for search that
/// ignores them both ways: "Bērziņš", "berzins" and "BERZIŅŠ" all fold to "berzins".
pub fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ā' | 'à' | 'á' | 'â' | 'ä' | 'å' | 'ą' => 'a',
            'č' | 'ç' | 'ć' => 'c',
            'ē' | 'è' | 'é' | 'ê' | 'ë' | 'ę' | 'ė' => 'e',
            'ģ' => 'g',
            'ī' | 'ì' | 'í' | 'î' | 'ï' | 'į' => 'i',
            'ķ' => 'k',
            'ļ' | 'ł' => 'l',
            'ņ' | 'ñ' | 'ń' => 'n',
            'ō' | 'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
            'ŗ' => 'r',
            'š' | 'ś' => 's',
            'ū' | 'ù' | 'ú' | 'û' | 'ü' | 'ų' => 'u',
            'ž' | 'ź' | 'ż' => 'z',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An old-style code for `ddmmyy` and the serial `nnnn`, with its check digit.
    fn old_style(ddmmyy: &str, nnnn: &str) -> String {
        let body = format!("{ddmmyy}{nnnn}");
        let sum: u32 = body
            .bytes()
            .zip(WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        let check = (1101 - sum) % 11;
        assert!(check < 10, "pick another serial than {nnnn}");
        format!("{ddmmyy}-{nnnn}{check}")
    }

    #[test]
    fn personal_codes_are_checked_and_masked() {
        let good = old_style("010190", "1234");
        let code = PersonalCode::parse(&good).unwrap();
        assert_eq!(code.as_str(), good);
        assert_eq!(
            PersonalCode::parse(&good.replace('-', "")).unwrap(),
            code,
            "the hyphen is optional"
        );
        assert_eq!(code.masked(), format!("******-***{}", &good[10..]));
        assert!(!code.masked().contains("010190"));
        // One digit changed: the check digit no longer matches.
        let last = good.as_bytes()[11] - b'0';
        let wrong = format!("{}{}", &good[..11], (last + 1) % 10);
        assert_eq!(PersonalCode::parse(&wrong), Err(CodeError::Check));
        assert_eq!(
            PersonalCode::parse("320000-12345").unwrap().masked(),
            "******-***45"
        );
        assert_eq!(
            PersonalCode::parse("321299-00000").map(|c| c.0),
            Ok("321299-00000".into())
        );
        assert_eq!(PersonalCode::parse("330190-12345"), Err(CodeError::Date));
        assert_eq!(PersonalCode::parse("0101901234"), Err(CodeError::Shape));
        assert_eq!(PersonalCode::parse("01019a-12345"), Err(CodeError::Shape));
        assert_eq!(PersonalCode::parse("010190–12345"), Err(CodeError::Shape));
        // Through serde, the same checks.
        assert!(serde_json::from_str::<PersonalCode>("\"999999-99999\"").is_err());
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(serde_json::from_str::<PersonalCode>(&json).unwrap(), code);
    }

    #[test]
    fn folding_ignores_case_and_latvian_diacritics() {
        assert_eq!(fold("Bērziņš"), "berzins");
        assert_eq!(fold("BERZIŅŠ"), "berzins");
        assert_eq!(
            fold("Ģirts Ķēniņš, Ļaudona, Žīgure, Čēre, Ūdre"),
            "girts kenins, laudona, zigure, cere, udre"
        );
        assert_eq!(fold("berzins"), "berzins");
    }
}
