//! Checks of what the user typed, made before anything reaches the network.

use kopa_config::Secret;

use super::AuthFailure;

/// Longest login accepted, in characters.
pub const MAX_LOGIN_CHARS: usize = 256;
/// Longest password accepted, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A login is 1 to [`MAX_LOGIN_CHARS`] characters without control characters (NUL,
/// line breaks): no directory holds such names, and they are the raw material of
/// filter and log injection.
pub(crate) fn check_login(login: &str) -> Result<(), AuthFailure> {
    let count = login.chars().count();
    if login.trim().is_empty() || count > MAX_LOGIN_CHARS || login.chars().any(char::is_control) {
        return Err(AuthFailure::InvalidInput);
    }
    Ok(())
}

/// A password is non-empty, at most [`MAX_PASSWORD_BYTES`] long and free of NUL.
/// The empty one matters most: an LDAP simple bind with an empty password is an
/// anonymous bind, which some servers answer with success.
pub(crate) fn check_password(password: &Secret) -> Result<(), AuthFailure> {
    let pw = password.expose();
    if pw.is_empty() || pw.len() > MAX_PASSWORD_BYTES || pw.contains('\0') {
        return Err(AuthFailure::InvalidInput);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        for good in [
            "anna",
            "anna.bērziņa",
            "a",
            "*",
            ")(uid=*",
            &"ž".repeat(256),
        ] {
            assert_eq!(check_login(good), Ok(()), "{good:?}");
        }
        for bad in ["", "  ", "anna\0", "an\nna", "anna\u{7f}", &"a".repeat(257)] {
            assert_eq!(check_login(bad), Err(AuthFailure::InvalidInput), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        let pw = |s: &str| Secret::new(s.to_owned());
        assert_eq!(check_password(&pw("Parole-1")), Ok(()));
        assert_eq!(
            check_password(&pw(" \t")),
            Ok(()),
            "whitespace is a password"
        );
        for bad in ["", "a\0b", &"p".repeat(1025)] {
            assert_eq!(check_password(&pw(bad)), Err(AuthFailure::InvalidInput));
        }
    }
}
