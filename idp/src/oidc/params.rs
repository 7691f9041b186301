//! Request parameters (query string or form body) with repeated names kept visible:
//! RFC 6749 §3.1 and §3.2 say a parameter must not be included more than once.

use std::collections::HashMap;

/// Most parameters read from one request.
const MAX_PARAMS: usize = 64;

/// A parameter that must appear once appeared more often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

/// Parsed `application/x-www-form-urlencoded` parameters.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: HashMap<String, Vec<String>>,
    too_many: bool,
}

impl Params {
    /// Parses a query string or form body.
    pub fn parse(raw: &[u8]) -> Self {
        let mut out = Self::default();
        for (i, (k, v)) in url::form_urlencoded::parse(raw).enumerate() {
            if i >= MAX_PARAMS {
                out.too_many = true;
                break;
            }
            out.values
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
        out
    }

    /// The value of `name`, when given once and not empty. RFC 6749 §3.1: parameters sent
    /// without a value are treated as omitted.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.values.get(name).map(Vec::as_slice) {
            Some([one]) if !one.is_empty() => Some(one),
            _ => None,
        }
    }

    /// Like [`Params::get`], but a repeated name is an error.
    pub fn single(&self, name: &str) -> Result<Option<&str>, Repeated> {
        match self.values.get(name).map(Vec::as_slice) {
            Some([_, _, ..]) => Err(Repeated),
            _ => Ok(self.get(name)),
        }
    }

    /// The first parameter name given more than once (or a marker for too many).
    pub fn duplicated(&self) -> Option<&str> {
        if self.too_many {
            return Some("(too many parameters)");
        }
        self.values
            .iter()
            .find(|(_, v)| v.len() > 1)
            .map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_empties_are_visible() {
        let p = Params::parse(b"a=1&b=&c=x%20y&a=2");
        assert_eq!(p.get("a"), None);
        assert_eq!(p.single("a"), Err(Repeated));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y"));
        assert_eq!(p.duplicated(), Some("a"));
        let many: String = (0..100).map(|i| format!("k{i}=v&")).collect();
        assert!(Params::parse(many.as_bytes()).duplicated().is_some());
    }
}
