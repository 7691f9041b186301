//! Password hashing (argon2id) and generation of one-time passwords for new accounts.

use crate::IdpError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use kopa_config::Secret;
use rand::Rng;
use rand::rngs::OsRng;

/// argon2id with 19 MiB, 2 passes, 1 lane: OWASP's recommended minimum, ~20-40 ms here.
fn hasher() -> Result<Argon2<'static>, IdpError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|_| IdpError::Hash)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` into a PHC string (algorithm, parameters and salt included).
pub fn hash(password: &Secret) -> Result<String, IdpError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| IdpError::Hash)
}

/// Whether `password` matches the PHC string `phc` (parameters are read from it).
pub fn verify(password: &Secret, phc: &str) -> Result<bool, IdpError> {
    let parsed = PasswordHash::new(phc).map_err(|_| IdpError::Hash)?;
    Ok(hasher()?
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok())
}

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGIT: &[u8] = b"23456789";
const SYMBOL: &[u8] = b"-_.+=%";

/// A random 24-character password with all four character classes (the Latvian minimum
/// rules ask for ≥ 9 characters of four classes), without look-alike characters.
pub fn generate() -> Secret {
    let mut rng = OsRng;
    let all: Vec<u8> = [LOWER, UPPER, DIGIT, SYMBOL].concat();
    let mut chars: Vec<u8> = [LOWER, UPPER, DIGIT, SYMBOL]
        .iter()
        .map(|class| class[rng.gen_range(0..class.len())])
        .collect();
    while chars.len() < 24 {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    // Shuffle so the guaranteed classes are not always in the first four places.
    for i in (1..chars.len()).rev() {
        chars.swap(i, rng.gen_range(0..=i));
    }
    Secret::new(chars.into_iter().map(char::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let pw = Secret::new("Correct-horse-9".into());
        let phc = hash(&pw).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(!phc.contains("Correct-horse-9"));
        assert!(verify(&pw, &phc).unwrap());
        assert!(!verify(&Secret::new("correct-horse-9".into()), &phc).unwrap());
        assert!(verify(&pw, "not a phc string").is_err());
    }

    #[test]
    fn generated_passwords_have_four_classes_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.expose(), b.expose());
        for pw in [a, b] {
            let s = pw.expose();
            assert_eq!(s.len(), 24);
            for class in [LOWER, UPPER, DIGIT, SYMBOL] {
                assert!(s.bytes().any(|c| class.contains(&c)), "{class:?}");
            }
        }
    }
}
