//! The coverage ConfigMap `<domain>-coverage`: the addresses the domain's Continuity Service
//! covers, one per line, lower case and sorted. It is the resolved form of `spec.users` that
//! the standby's recipient map is rendered from, and lets an administrator see at a glance who
//! is covered.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::{child_meta, with_spec_hash};
use crate::Result;
use crate::api::ContinuityDomain;

/// Component label of the coverage ConfigMap.
pub const COMPONENT: &str = "coverage";

/// Name of a domain's coverage ConfigMap.
pub fn name(domain: &ContinuityDomain) -> String {
    format!("{}-coverage", domain.name_any())
}

/// Builds the coverage ConfigMap listing `addresses`.
pub fn build(domain: &ContinuityDomain, addresses: &BTreeSet<String>) -> Result<ConfigMap> {
    let listing: String = addresses.iter().map(|a| format!("{a}\n")).collect();
    with_spec_hash(ConfigMap {
        metadata: child_meta(domain, name(domain), COMPONENT)?,
        data: Some(BTreeMap::from([
            ("domain".to_owned(), domain.spec.domain.clone()),
            ("addresses".to_owned(), listing),
        ])),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{DOMAIN_LABEL, spec_hash};
    use crate::testing::fixture;

    fn addresses(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn lists_the_covered_addresses_and_is_owned_by_the_domain() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let cm = build(&domain, &addresses(&["bob@example.com", "alice@example.com"])).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("example-com-coverage"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("tenant-a"));
        let data = cm.data.as_ref().unwrap();
        assert_eq!(data["addresses"], "alice@example.com\nbob@example.com\n");
        assert_eq!(data["domain"], "example.com");
        assert_eq!(cm.labels()[DOMAIN_LABEL], "example-com");

        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ContinuityDomain");
        assert_eq!(owner.name, "example-com");
        assert_eq!(owner.uid, domain.metadata.uid.clone().unwrap());
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn the_hash_follows_the_content() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let a = build(&domain, &addresses(&["a@example.com"])).unwrap();
        let a_again = build(&domain, &addresses(&["a@example.com"])).unwrap();
        let b = build(&domain, &addresses(&["b@example.com"])).unwrap();
        assert_eq!(spec_hash(&a), spec_hash(&a_again));
        assert_ne!(spec_hash(&a), spec_hash(&b));
    }

    #[test]
    fn a_domain_without_uid_cannot_own_children() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.metadata.uid = None;
        assert!(build(&domain, &BTreeSet::new()).is_err());
    }
}
