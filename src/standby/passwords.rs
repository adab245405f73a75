//! Emergency passwords as Dovecot verifies them: SHA512-CRYPT (`{SHA512-CRYPT}$6$salt$hash`).
//!
//! The salt is derived from the domain's uid and the address, so it is unique per user and per
//! domain, and the same password always renders the same hash: configuration that did not
//! change is not rewritten (and the mail pod not restarted) at every reconcile. Hashing takes
//! about a millisecond, so results are memoised per (salt, password) for the life of the
//! process; the memo keys hold a SHA-256 of the password, never the password itself.

use std::collections::HashMap;
use std::sync::Mutex;

use sha_crypt::{Sha512Params, sha512_crypt_b64};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The characters crypt(3) salts are made of.
const SALT_ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

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

/// Hashes passwords, remembering what it already hashed.
#[derive(Default)]
pub struct PasswordHasher {
    memo: Mutex<HashMap<(String, [u8; 32]), String>>,
}

impl PasswordHasher {
    /// `{SHA512-CRYPT}$6$<salt>$<hash>` of `password` with `salt`.
    pub fn hash(&self, password: &str, salt: &str) -> Result<String> {
        let key = (salt.to_owned(), Sha256::digest(password.as_bytes()).into());
        if let Some(hash) = self.lock().get(&key) {
            return Ok(hash.clone());
        }
        // Hashed without holding the lock: other reconciles hash their own meanwhile.
        let encoded = sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &Sha512Params::default())
            .map_err(|error| Error::PasswordHash(format!("{error:?}")))?;
        let hash = format!("{{SHA512-CRYPT}}$6${salt}${encoded}");
        self.lock().insert(key, hash.clone());
        Ok(hash)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, [u8; 32]), String>> {
        self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_glibc_reference_vector() {
        // From Ulrich Drepper's SHA-crypt specification: "Hello world!" with salt "saltstring".
        let hash = PasswordHasher::default().hash("Hello world!", "saltstring").unwrap();
        assert_eq!(
            hash,
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
        let hasher = PasswordHasher::default();
        let s = salt("uid", "a@example.com");
        let one = hasher.hash("secret one", &s).unwrap();
        assert_eq!(one, hasher.hash("secret one", &s).unwrap());
        assert_ne!(one, hasher.hash("secret two", &s).unwrap());
        assert!(!one.contains("secret one"));
    }
}
