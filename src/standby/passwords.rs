//! Emergency passwords as Dovecot verifies them: SHA512-CRYPT (`{SHA512-CRYPT}$6$salt$hash`).
//!
//! The salt is derived from the domain's uid and the address, so it is unique per user and per
//! domain, and the same password always renders the same hash: configuration that did not
//! change is not rewritten (and the mail pod not restarted) at every reconcile. Hashing takes
//! about a millisecond, so [`PasswordHasher`] remembers recent results; it is bounded (two
//! generations of [`GENERATION`] entries: what was used in the last two generations stays)
//! and its keys hold a SHA-256 of the password, never the password itself. The controller
//! hashes behind its fetch step, off the async runtime's threads.

use std::collections::HashMap;
use std::sync::Mutex;

use sha_crypt::{Sha512Params, sha512_crypt_b64};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The characters crypt(3) salts are made of.
const SALT_ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Entries per generation of the memo.
pub const GENERATION: usize = 10_000;

/// A 16-character crypt salt for `address` in the domain with `domain_uid`.
pub fn salt(domain_uid: &str, address: &str) -> String {
    let digest = Sha256::digest(format!(
        "continuity-salt\0{domain_uid}\0{}",
        address.to_ascii_lowercase()
    ));
    digest
        .iter()
        .take(16)
        .map(|byte| SALT_ALPHABET[usize::from(*byte) % 64] as char)
        .collect()
}

/// `{SHA512-CRYPT}$6$<salt>$<hash>` of `password` with `salt`.
pub fn hash(password: &str, salt: &str) -> Result<String> {
    let encoded = sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &Sha512Params::default())
        .map_err(|error| Error::PasswordHash(format!("{error:?}")))?;
    Ok(format!("{{SHA512-CRYPT}}$6${salt}${encoded}"))
}

/// The memo's key: the salt and a digest of the password.
pub type MemoKey = (String, [u8; 32]);

/// The memo key of `password` with `salt`.
pub fn memo_key(password: &str, salt: &str) -> MemoKey {
    (salt.to_owned(), Sha256::digest(password.as_bytes()).into())
}

/// Recent hashes, bounded.
#[derive(Default)]
pub struct PasswordHasher {
    memo: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<MemoKey, String>,
    previous: HashMap<MemoKey, String>,
}

impl PasswordHasher {
    /// The remembered hash for `key`, if any.
    pub fn recall(&self, key: &MemoKey) -> Option<String> {
        let mut memo = self.lock();
        if let Some(hash) = memo.current.get(key) {
            return Some(hash.clone());
        }
        // Used again: it moves to the current generation.
        let hash = memo.previous.remove(key)?;
        memo.insert(key.clone(), hash.clone());
        Some(hash)
    }

    /// Remembers `hash` for `key`.
    pub fn remember(&self, key: MemoKey, hash: String) {
        self.lock().insert(key, hash);
    }

    /// How many hashes are remembered.
    pub fn len(&self) -> usize {
        let memo = self.lock();
        memo.current.len() + memo.previous.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Generations {
    fn insert(&mut self, key: MemoKey, hash: String) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_glibc_reference_vector() {
        // From Ulrich Drepper's SHA-crypt specification: "Hello world!" with salt "saltstring".
        assert_eq!(
            hash("Hello world!", "saltstring").unwrap(),
            "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
    }

    #[test]
    fn salts_are_stable_per_user_and_differ_between_users_and_domains() {
        let alice = salt("uid-1", "alice@example.com");
        assert_eq!(alice.len(), 16);
        assert!(alice.bytes().all(|b| SALT_ALPHABET.contains(&b)));
        assert_eq!(alice, salt("uid-1", "Alice@Example.com"));
        assert_ne!(alice, salt("uid-1", "bob@example.com"));
        assert_ne!(alice, salt("uid-2", "alice@example.com"));
    }

    #[test]
    fn the_same_password_hashes_the_same_and_another_differently() {
        let s = salt("uid", "a@example.com");
        let one = hash("secret one", &s).unwrap();
        assert_eq!(one, hash("secret one", &s).unwrap());
        assert_ne!(one, hash("secret two", &s).unwrap());
        assert!(!one.contains("secret one"));
    }

    #[test]
    fn the_memo_is_bounded_and_keeps_what_is_used() {
        let hasher = PasswordHasher::default();
        let key = |i: usize| memo_key(&format!("password {i}"), "salt");
        hasher.remember(key(0), "hash 0".into());
        for i in 1..=2 * GENERATION {
            hasher.remember(key(i), format!("hash {i}"));
            if i == GENERATION + 5 {
                // Used in the second generation: it survives the next turn.
                assert_eq!(hasher.recall(&key(3)).as_deref(), Some("hash 3"));
            }
        }
        assert!(hasher.len() <= 2 * GENERATION, "{} entries", hasher.len());
        assert_eq!(hasher.recall(&key(0)), None, "forgotten after two generations");
        assert_eq!(hasher.recall(&key(3)).as_deref(), Some("hash 3"));
        assert_eq!(
            hasher.recall(&key(2 * GENERATION)).as_deref(),
            Some(format!("hash {}", 2 * GENERATION).as_str())
        );
        assert_ne!(memo_key("a", "salt").1, memo_key("b", "salt").1);
    }
}
