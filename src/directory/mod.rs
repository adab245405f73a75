//! Who an `AllUsers` domain's LDAP directory lists (SPEC 4.5). Directories are read apart
//! from reconciles, on each domain's own resync period ([`sync`]), one bounded read at a time
//! ([`ldap`]). What a read found is kept until a later read succeeds: a directory that fails
//! never shrinks coverage. A restarted operator starts from the addresses the domain's
//! coverage ConfigMap lists (the covered ones, as last rendered), so a directory that is down
//! at the restart does not shrink coverage either.

pub mod ldap;
pub mod sync;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::coverage::{in_domain, normalize};
pub use ldap::{Bind, Query, ReadError, Step};

/// The domain's addresses a directory listed, lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub addresses: BTreeSet<String>,
    /// When the directory was read; `None` for a listing recovered after a restart.
    pub read_at: Option<Timestamp>,
}

/// What is known of a domain's directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Knowledge {
    /// The last good listing.
    pub listing: Option<Arc<Listing>>,
    /// Why the last read failed, if it did. (Since when is the condition's
    /// `lastTransitionTime`: it only moves when the directory starts or stops failing.)
    pub failing: Option<ReadError>,
}

/// What a reconcile knows of a domain's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// `host:port`, for messages.
    pub server: String,
    pub knowledge: Knowledge,
    /// Why the directory cannot be read as the spec says (its bind Secret).
    pub bind_problem: Option<String>,
}

impl Observed {
    /// The listing coverage is judged from.
    pub fn listing(&self) -> Option<&BTreeSet<String>> {
        self.knowledge.listing.as_deref().map(|l| &l.addresses)
    }
}

/// The addresses of `domain` among an attribute's `values`: lower-cased, Active Directory's
/// `smtp:` prefix (of `proxyAddresses`) removed, other address types (`x500:`, `sip:`) and
/// other domains' addresses left out.
pub fn addresses_of(values: impl IntoIterator<Item = String>, domain: &str) -> BTreeSet<String> {
    values
        .into_iter()
        .filter_map(|value| {
            let value = value.trim();
            let address = match value.split_once(':') {
                Some((kind, rest)) if kind.eq_ignore_ascii_case("smtp") => rest,
                Some(_) => return None,
                None => value,
            };
            let address = normalize(address);
            let local = address.rsplit_once('@').map(|(local, _)| local)?;
            (dot_atom(local) && in_domain(&address, domain)).then_some(address)
        })
        .collect()
}

/// Whether `local` is a dot-atom local part (RFC 5322) without `/`: what a ContinuityUser's
/// address may hold, short of the slash that would make a directory of a mailbox path.
fn dot_atom(local: &str) -> bool {
    const SPECIALS: &[u8] = b"!#$%&'*+=?^_`{|}~-";
    !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_domains_addresses_lower_cased() {
        let values = [
            "Alice@Example.com",
            "SMTP:Bob@example.com",
            "smtp:bobby@example.com",
            "X500:/o=Example/cn=bob",
            "carol@example.org",
            "dave@sub.example.com",
            "@example.com",
            "not an address",
            " erin@example.com ",
            "a/b@example.com",
            "..@example.com",
            "\"quoted\"@example.com",
            "bob+news@example.com",
        ]
        .map(String::from);
        assert_eq!(
            addresses_of(values, "example.com").into_iter().collect::<Vec<_>>(),
            [
                "alice@example.com",
                "bob+news@example.com",
                "bob@example.com",
                "bobby@example.com",
                "erin@example.com"
            ]
        );
    }
}
