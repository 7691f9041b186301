//! What is wrong with a configuration, and where the offending value came from.

use std::fmt;

/// One problem found while loading or validating the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path such as `server.listen`; empty for problems with the whole file.
    pub key: String,
    /// The layer that supplied the value.
    pub origin: Origin,
    /// Short, capitalised explanation; never contains the value of a secret.
    pub message: String,
}

/// The configuration layer a value (and hence a problem) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A TOML file, with the 1-based line of the key when known.
    File { name: String, line: Option<usize> },
    /// An environment variable `KOPA__...`.
    Env { var: String },
    /// A command-line flag such as `--listen`.
    Cli { flag: String },
    /// The built-in default (the key was set nowhere).
    Default,
}

/// Every problem found in one load, in the order of their origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problem {
    pub(crate) fn new(key: impl Into<String>, origin: Origin, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            origin,
            message: message.into(),
        }
    }

    pub(crate) fn default_origin(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(key, Origin::Default, message)
    }
}

impl Origin {
    pub(crate) fn file(name: &str, line: Option<usize>) -> Self {
        Self::File {
            name: name.to_owned(),
            line,
        }
    }

    /// Sort rank: file problems first (by line), then environment, CLI, defaults.
    pub(crate) fn rank(&self) -> (u8, usize) {
        match self {
            Self::File { line, .. } => (0, line.unwrap_or(0)),
            Self::Env { .. } => (1, 0),
            Self::Cli { .. } => (2, 0),
            Self::Default => (3, 0),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File {
                name,
                line: Some(line),
            } => write!(f, "{name}:{line}"),
            Self::File { name, line: None } => f.write_str(name),
            Self::Env { var } => write!(f, "env {var}"),
            Self::Cli { flag } => f.write_str(flag),
            Self::Default => f.write_str("default"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_origin_key_and_message() {
        let file = Problem::new(
            "server.listen",
            Origin::file("kopa.toml", Some(12)),
            "Not a socket address",
        );
        assert_eq!(
            file.to_string(),
            "kopa.toml:12: server.listen: Not a socket address"
        );
        let env = Problem::new(
            "server.listen",
            Origin::Env {
                var: "KOPA__SERVER__LISTEN".into(),
            },
            "Bad",
        );
        assert_eq!(
            env.to_string(),
            "env KOPA__SERVER__LISTEN: server.listen: Bad"
        );
        let cli = Problem::new(
            "server.listen",
            Origin::Cli {
                flag: "--listen".into(),
            },
            "Bad",
        );
        assert_eq!(cli.to_string(), "--listen: server.listen: Bad");
        let whole = Problem::new("", Origin::file("kopa.toml", Some(3)), "Syntax error");
        assert_eq!(whole.to_string(), "kopa.toml:3: Syntax error");
        assert_eq!(
            Problems(vec![whole, cli]).to_string(),
            "kopa.toml:3: Syntax error\n--listen: server.listen: Bad"
        );
    }
}
