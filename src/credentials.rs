//! Emergency passwords: where each covered user's comes from, and why a user has none. A
//! ContinuityUser's own `emergencyPassword` (a Secret key) comes first; otherwise the domain's
//! `emergencyPasswords` Secret, keyed by the address's local part ([`shared_secret_key`]). Pure: the controller reads
//! the Secrets and hands their data in, and hashes the [`Mailbox`]es into the
//! [`Credentials`] the plan takes; nothing here logs or keeps a password.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::ByteString;

use crate::api::{ContinuityDomain, ContinuityUser};
use crate::standby::Account;

/// A Secret's data.
pub type SecretData = BTreeMap<String, ByteString>;

/// The Secrets a reconcile read, by name: `None` when the Secret does not exist.
pub type SecretsRead = HashMap<String, Option<Arc<SecretData>>>;

/// Why a covered user has no emergency password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Neither the user nor the domain names a Secret.
    NotConfigured,
    SecretNotFound {
        secret: String,
    },
    KeyNotFound {
        secret: String,
        key: String,
    },
    NotUtf8 {
        secret: String,
        key: String,
    },
    Empty {
        secret: String,
        key: String,
    },
}

impl Missing {
    /// A sentence for a condition message.
    pub fn describe(&self) -> String {
        match self {
            Missing::NotConfigured => {
                "no emergency password is configured: set the user's spec.emergencyPassword or the domain's spec.emergencyPasswords".into()
            }
            Missing::SecretNotFound { secret } => format!("Secret {secret} does not exist"),
            Missing::KeyNotFound { secret, key } => format!("Secret {secret} has no key {key:?}"),
            Missing::NotUtf8 { secret, key } => format!("key {key:?} of Secret {secret} is not valid UTF-8"),
            Missing::Empty { secret, key } => format!("key {key:?} of Secret {secret} is empty"),
        }
    }
}

/// The Secrets the passwords of users covered `through` come from: the domain's shared one
/// and the users' own. A user that is not covered gets nothing read on its behalf.
pub fn referenced_secrets<'a>(
    domain: &ContinuityDomain,
    through: impl IntoIterator<Item = &'a ContinuityUser>,
) -> BTreeSet<String> {
    domain
        .spec
        .emergency_passwords
        .iter()
        .map(|p| p.secret_ref.name.clone())
        .chain(
            through
                .into_iter()
                .filter_map(|u| Some(u.spec.emergency_password.as_ref()?.name.clone())),
        )
        .collect()
}

/// The key of `address`'s password in the domain's shared Secret: its local part, lower case,
/// where every byte a Secret key cannot hold (anything but `a-z`, `0-9`, `.`, `_` and `-`) is
/// written `X` and two upper-case hex digits: `bob+news` is `bobX2Bnews`, `josé` is
/// `josXC3XA9`. Unambiguous because a lower-cased local part has no upper-case letters;
/// the usual local parts (`alice`, `john.doe`, `jane_doe`) are their own keys.
pub fn shared_secret_key(address: &str) -> String {
    let local = address
        .rsplit_once('@')
        .map_or(address, |(local, _)| local)
        .to_ascii_lowercase();
    let mut key = String::with_capacity(local.len());
    for byte in local.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => key.push(char::from(byte)),
            other => key.push_str(&format!("X{other:02X}")),
        }
    }
    key
}

/// The emergency password of `address`, whose ContinuityUser (if it has one) is `user`.
pub fn password_for(
    domain: &ContinuityDomain,
    user: Option<&ContinuityUser>,
    address: &str,
    secrets: &SecretsRead,
) -> Result<String, Missing> {
    let (secret, key) = match (
        user.and_then(|u| u.spec.emergency_password.as_ref()),
        &domain.spec.emergency_passwords,
    ) {
        (Some(own), _) => (own.name.clone(), own.key.clone()),
        (None, Some(shared)) => (shared.secret_ref.name.clone(), shared_secret_key(address)),
        (None, None) => return Err(Missing::NotConfigured),
    };
    let Some(Some(data)) = secrets.get(&secret) else {
        return Err(Missing::SecretNotFound { secret });
    };
    let Some(value) = data.get(&key) else {
        return Err(Missing::KeyNotFound { secret, key });
    };
    let Ok(text) = std::str::from_utf8(&value.0) else {
        return Err(Missing::NotUtf8 { secret, key });
    };
    // A password written with `echo` or from a file ends in a newline nobody can type.
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if password.is_empty() {
        return Err(Missing::Empty { secret, key });
    }
    Ok(password.to_owned())
}

/// A covered address and, when it has one, its emergency password (plaintext, read from a
/// Secret; only its hash leaves the controller).
#[derive(Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub address: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for Mailbox {
    // Never print a password, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("address", &self.address)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What the standby's configuration takes of the covered users' passwords.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Every covered address, with its password hash where it has a password.
    pub accounts: Vec<Account>,
    /// The covered addresses without an emergency password, in order.
    pub without_password: Vec<String>,
    /// Why they have none, each reason once, in order.
    pub problems: Vec<String>,
}

impl Credentials {
    /// Credentials from what [`mailboxes`] found missing, with `accounts` hashed.
    pub fn new(accounts: Vec<Account>, missing: Vec<(String, Missing)>) -> Self {
        let problems: BTreeSet<String> = missing.iter().map(|(_, why)| why.describe()).collect();
        Credentials {
            accounts,
            without_password: missing.into_iter().map(|(address, _)| address).collect(),
            problems: problems.into_iter().collect(),
        }
    }
}

/// The covered addresses as mailboxes, with their passwords where found, and the addresses
/// without one (in order). `through` names the ContinuityUser covering an address, if any.
pub fn mailboxes(
    domain: &ContinuityDomain,
    covered: &BTreeSet<String>,
    through: &HashMap<String, &ContinuityUser>,
    secrets: &SecretsRead,
) -> (Vec<Mailbox>, Vec<(String, Missing)>) {
    let mut missing = Vec::new();
    let mailboxes = covered
        .iter()
        .map(|address| {
            let user = through.get(address).copied();
            let password = password_for(domain, user, address, secrets)
                .map_err(|why| missing.push((address.clone(), why)))
                .ok();
            Mailbox {
                address: address.clone(),
                password,
            }
        })
        .collect();
    (mailboxes, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_local_part_has_a_valid_secret_key() {
        assert_eq!(shared_secret_key("alice@example.com"), "alice");
        assert_eq!(shared_secret_key("John.Doe@example.com"), "john.doe");
        assert_eq!(shared_secret_key("jane_doe-2@example.com"), "jane_doe-2");
        assert_eq!(shared_secret_key("bob+news@example.com"), "bobX2Bnews");
        assert_eq!(shared_secret_key("o'brien@example.com"), "oX27brien");
        assert_eq!(shared_secret_key("josé@example.com"), "josXC3XA9");
        assert_eq!(shared_secret_key("\"a b\"@example.com"), "X22aX20bX22");
        // Kubernetes' own rule for Secret keys: [-._a-zA-Z0-9]+.
        for local in ["a!#$%&'*+/=?^`{|}~b", "ünïcødé", "x@y"] {
            let key = shared_secret_key(&format!("{local}@example.com"));
            assert!(
                key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
                "{local}: {key}"
            );
        }
        // Different local parts, different keys.
        assert_ne!(shared_secret_key("aX2Bb@x"), shared_secret_key("a+b@x"));
    }
    use crate::api::domain::{EmergencyPasswords, LocalObjectReference};
    use crate::api::user::SecretKeySelector;
    use crate::coverage::resolve;
    use crate::testing::fixture;

    fn secret(pairs: &[(&str, &[u8])]) -> Option<Arc<SecretData>> {
        Some(Arc::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect(),
        ))
    }

    fn domain_with_shared_secret() -> ContinuityDomain {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.spec.emergency_passwords = Some(EmergencyPasswords {
            secret_ref: LocalObjectReference { name: "shared".into() },
        });
        domain
    }

    #[test]
    fn the_users_own_secret_comes_before_the_domains() {
        let domain = domain_with_shared_secret();
        let mut alice: ContinuityUser = fixture("user-alice.yaml");
        alice.spec.emergency_password = None;
        let secrets = SecretsRead::from([
            ("shared".to_owned(), secret(&[("alice", b"from-domain\n")])),
            ("alice-own".to_owned(), secret(&[("pw", b"from-user\r\n")])),
        ]);
        assert_eq!(
            password_for(&domain, Some(&alice), "alice@example.com", &secrets),
            Ok("from-domain".into()),
            "one trailing newline is dropped"
        );
        alice.spec.emergency_password = Some(SecretKeySelector {
            name: "alice-own".into(),
            key: "pw".into(),
        });
        assert_eq!(
            password_for(&domain, Some(&alice), "alice@example.com", &secrets),
            Ok("from-user".into())
        );
        assert_eq!(
            referenced_secrets(
                &domain,
                resolve(&domain, domain.spec.users.scope, &[&alice], None)
                    .through
                    .values()
                    .copied()
            ),
            BTreeSet::from(["alice-own".to_owned(), "shared".to_owned()])
        );
        let mut stranger = alice.clone();
        stranger.spec.address = "alice@elsewhere.example".into();
        assert_eq!(
            referenced_secrets(
                &domain,
                resolve(&domain, domain.spec.users.scope, &[&stranger], None)
                    .through
                    .values()
                    .copied()
            ),
            BTreeSet::from(["shared".to_owned()]),
            "a user that is not covered gets no Secret read"
        );
    }

    #[test]
    fn each_way_of_lacking_a_password_is_named() {
        let plain: ContinuityDomain = fixture("domain-minimal.yaml");
        let domain = domain_with_shared_secret();
        let empty = SecretsRead::new();
        assert_eq!(
            password_for(&plain, None, "a@example.com", &empty),
            Err(Missing::NotConfigured)
        );
        let absent = SecretsRead::from([("shared".to_owned(), None)]);
        assert_eq!(
            password_for(&domain, None, "a@example.com", &absent).map_err(|m| m.describe()),
            Err("Secret shared does not exist".into())
        );
        let secrets = SecretsRead::from([("shared".to_owned(), secret(&[("b", b"\xff\xfe"), ("c", b"\n")]))]);
        assert!(matches!(
            password_for(&domain, None, "a@example.com", &secrets),
            Err(Missing::KeyNotFound { .. })
        ));
        assert!(matches!(
            password_for(&domain, None, "b@example.com", &secrets),
            Err(Missing::NotUtf8 { .. })
        ));
        assert!(matches!(
            password_for(&domain, None, "c@example.com", &secrets),
            Err(Missing::Empty { .. })
        ));
    }

    #[test]
    fn mailboxes_list_every_covered_address_and_who_lacks_a_password() {
        let domain = domain_with_shared_secret();
        let covered = BTreeSet::from(["alice@example.com".to_owned(), "bob@example.com".to_owned()]);
        let secrets = SecretsRead::from([("shared".to_owned(), secret(&[("alice", b"pw")]))]);
        let (mailboxes, missing) = mailboxes(&domain, &covered, &HashMap::new(), &secrets);
        assert_eq!(
            mailboxes
                .iter()
                .map(|m| (m.address.as_str(), m.password.is_some()))
                .collect::<Vec<_>>(),
            vec![("alice@example.com", true), ("bob@example.com", false)]
        );
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0, "bob@example.com");
    }

    #[test]
    fn each_reason_for_a_missing_password_is_named_once() {
        let shared = Missing::SecretNotFound {
            secret: "shared".into(),
        };
        let credentials = Credentials::new(
            Vec::new(),
            vec![
                ("a@example.com".into(), shared.clone()),
                ("b@example.com".into(), shared),
                ("c@example.com".into(), Missing::NotConfigured),
            ],
        );
        assert_eq!(
            credentials.without_password,
            ["a@example.com", "b@example.com", "c@example.com"]
        );
        assert_eq!(credentials.problems.len(), 2);
        assert!(
            credentials
                .problems
                .contains(&"Secret shared does not exist".to_owned())
        );
    }
}
