//! Recovery codes: single-use fall-backs for a lost authenticator, shown once and stored
//! only as salted SHA-256 hashes.
//!
//! A code is 10 characters from a 31-letter alphabet without look-alikes (no `0 1 i l o`),
//! shown as `xxxxx-xxxxx`: 49 bits of entropy. That is far beyond online guessing, which
//! the login throttle limits, so a fast hash suffices where a password would need argon2.

use aws_lc_rs::{constant_time, digest};
use data_encoding::HEXLOWER;
use kopa_config::Secret;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Codes in one set.
pub const COUNT: usize = 10;
/// Characters a code is made of.
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
/// Characters of a code, not counting the separator.
const LEN: usize = 10;
/// Where the `-` goes in the displayed form.
const GROUP: usize = 5;
const SALT_BYTES: usize = 16;

/// The stored form of one set: a per-set salt and the hashes of the codes not yet used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecoverySet {
    salt: String,
    unused: Vec<String>,
}

impl RecoverySet {
    /// Codes still usable.
    pub(crate) fn remaining(&self) -> usize {
        self.unused.len()
    }

    /// Which unused code `input` is, if any. Every stored hash is compared, in constant
    /// time, whether or not an earlier one matched.
    pub(crate) fn find(&self, input: &str) -> Option<usize> {
        let code = normalize(input)?;
        let hash = hash(&self.salt, &code);
        let mut found = None;
        for (i, stored) in self.unused.iter().enumerate() {
            if constant_time::verify_slices_are_equal(stored.as_bytes(), hash.as_bytes()).is_ok() {
                found = Some(i);
            }
        }
        found
    }

    /// Spends the code at `index` (from [`RecoverySet::find`]).
    pub(crate) fn spend(&mut self, index: usize) {
        if index < self.unused.len() {
            self.unused.swap_remove(index);
        }
    }
}

/// A new set: the codes to show once, and what to store.
pub(crate) fn generate() -> (Vec<Secret>, RecoverySet) {
    let mut rng = rand::rngs::OsRng;
    let mut salt = [0u8; SALT_BYTES];
    rng.fill_bytes(&mut salt);
    let salt = HEXLOWER.encode(&salt);
    let mut codes = Vec::with_capacity(COUNT);
    let mut unused = Vec::with_capacity(COUNT);
    while codes.len() < COUNT {
        let code = random_code(&mut rng);
        let hashed = hash(&salt, &code);
        // A repeat is astronomically unlikely, but two equal codes would be one code.
        if unused.contains(&hashed) {
            continue;
        }
        unused.push(hashed);
        codes.push(Secret::new(format!(
            "{}-{}",
            &code[..GROUP],
            &code[GROUP..]
        )));
    }
    (codes, RecoverySet { salt, unused })
}

fn random_code(rng: &mut impl RngCore) -> String {
    let mut code = String::with_capacity(LEN);
    // Rejection sampling: bytes at or above the largest multiple of the alphabet size are
    // dropped, so that every character is equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    let mut byte = [0u8; 1];
    while code.len() < LEN {
        rng.fill_bytes(&mut byte);
        let value = usize::from(byte[0]);
        if value < limit
            && let Some(&c) = ALPHABET.get(value % ALPHABET.len())
        {
            code.push(char::from(c));
        }
    }
    code
}

/// The canonical form of a typed code: case, spaces and dashes do not matter.
pub(crate) fn normalize(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b));
    valid.then_some(code)
}

fn hash(salt: &str, code: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(salt.as_bytes());
    ctx.update(code.as_bytes());
    HEXLOWER.encode(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_have_the_promised_shape_and_entropy() {
        let bits = LEN as f64 * (ALPHABET.len() as f64).log2();
        assert!(bits >= 40.0, "{bits} bits");
        for look_alike in b"01ilo" {
            assert!(!ALPHABET.contains(look_alike));
        }
        assert_eq!(
            ALPHABET.iter().collect::<HashSet<_>>().len(),
            ALPHABET.len()
        );
        let (codes, set) = generate();
        assert_eq!(codes.len(), COUNT);
        assert_eq!(set.remaining(), COUNT);
        let shown: HashSet<&str> = codes.iter().map(Secret::expose).collect();
        assert_eq!(shown.len(), COUNT);
        for code in &shown {
            let (a, b) = code.split_once('-').unwrap();
            assert_eq!((a.len(), b.len()), (GROUP, LEN - GROUP), "{code}");
            assert!(normalize(code).is_some(), "{code}");
        }
        assert!(!format!("{codes:?}").contains(codes[0].expose()));
    }

    #[test]
    fn every_character_is_used() {
        let mut rng = rand::rngs::OsRng;
        let seen: HashSet<char> = (0..500)
            .flat_map(|_| random_code(&mut rng).chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(seen.len(), ALPHABET.len());
    }

    #[test]
    fn each_code_is_found_once_however_it_is_typed() {
        let (codes, mut set) = generate();
        let third = codes[2].expose().to_owned();
        let typed = format!(" {} ", third.to_uppercase().replace('-', " "));
        let index = set.find(&typed).unwrap();
        set.spend(index);
        assert_eq!(set.remaining(), COUNT - 1);
        assert_eq!(set.find(&third), None);
        for other in codes.iter().filter(|c| c.expose() != third) {
            assert!(set.find(other.expose()).is_some());
        }
        for bad in [
            "",
            "aaaaa-aaaaa",
            "0000000000",
            "abcde-fghij-k",
            "ābcde-fghij",
        ] {
            assert_eq!(set.find(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sets_do_not_share_salts_or_hashes() {
        let (codes, a) = generate();
        let (_, b) = generate();
        assert_ne!(a.salt, b.salt);
        assert!(a.unused.iter().all(|h| !b.unused.contains(h)));
        assert_eq!(b.find(codes[0].expose()), None);
        // The stored form holds no code in clear.
        let stored = format!("{a:?}");
        assert!(
            codes
                .iter()
                .all(|c| !stored.contains(&normalize(c.expose()).unwrap()))
        );
    }
}
