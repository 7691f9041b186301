//! Secret values read from `*_file` keys, kept out of logs and error messages.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A secret value: `Debug` and `Display` print `[redacted]`; `expose()` gives the text.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
enum SecretFileError {
    #[error("Cannot read secret file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Secret file {} is not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("Secret file {} is empty", path.display())]
    Empty { path: PathBuf },
}

/// Reads a secret file, stripping one trailing `"\n"` or `"\r\n"`.
///
/// Errors name the path but never the content. An empty secret is refused: an empty
/// password or key is always a mistake, and accepting it would weaken the appliance.
pub fn read_secret_file(path: &Path) -> Result<Secret, io::Error> {
    let bytes = std::fs::read(path).map_err(|source| {
        let kind = source.kind();
        let path = path.to_owned();
        io::Error::new(kind, SecretFileError::Read { path, source })
    })?;
    // Decoding by hand so that a UTF-8 error cannot echo any bytes of the secret.
    let mut text = String::from_utf8(bytes).map_err(|_| {
        let path = path.to_owned();
        io::Error::new(
            io::ErrorKind::InvalidData,
            SecretFileError::NotUtf8 { path },
        )
    })?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    if text.is_empty() {
        let path = path.to_owned();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            SecretFileError::Empty { path },
        ));
    }
    Ok(Secret(text))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.to_string(), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn strips_exactly_one_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        for (content, expected) in [
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw\n\n", "pw\n"),
            ("pw", "pw"),
            (" pw \n", " pw "),
        ] {
            let path = dir.path().join("secret");
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_secret_file(&path).unwrap().expose(), expected);
        }
    }

    #[test]
    fn errors_name_the_path_and_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = read_secret_file(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&*missing.to_string_lossy()));
        assert!(err.source().is_some());

        let bad = dir.path().join("bad");
        std::fs::write(&bad, b"s3cr\xffet").unwrap();
        let err = read_secret_file(&bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!format!("{err} {err:?}").contains("s3cr"));

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert_eq!(
            read_secret_file(&empty).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
