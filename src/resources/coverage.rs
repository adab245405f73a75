//! The coverage ConfigMap `<domain>-coverage`: the addresses the domain's Continuity Service
//! covers, one per line, lower case and sorted. It is the resolved form of `spec.users` that
//! the standby's recipient map is rendered from, and lets an administrator see at a glance who
//! is covered.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;

use super::child_meta;
use crate::validation::ValidatedDomain;

/// Component label of the coverage ConfigMap.
pub const COMPONENT: &str = "coverage";

/// Builds the coverage ConfigMap listing `addresses`.
pub fn build(domain: &ValidatedDomain<'_>, addresses: &BTreeSet<String>) -> ConfigMap {
    let listing: String = addresses.iter().map(|a| format!("{a}\n")).collect();
    ConfigMap {
        metadata: child_meta(domain, &domain.names.coverage, COMPONENT),
        data: Some(BTreeMap::from([
            ("domain".to_owned(), domain.spec.domain.clone()),
            ("addresses".to_owned(), listing),
        ])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::DOMAIN_LABEL;
    use crate::testing::validated;
    use kube::ResourceExt;

    fn addresses(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn lists_the_covered_addresses_and_is_owned_by_the_domain() {
        let domain = validated("domain-minimal.yaml");
        let cm = build(&domain, &addresses(&["bob@example.com", "alice@example.com"]));
        assert_eq!(cm.metadata.name.as_deref(), Some("example-com-coverage"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("tenant-a"));
        let data = cm.data.as_ref().unwrap();
        assert_eq!(data["addresses"], "alice@example.com\nbob@example.com\n");
        assert_eq!(data["domain"], "example.com");
        assert_eq!(cm.labels()[DOMAIN_LABEL], "example-com");

        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ContinuityDomain");
        assert_eq!(owner.name, "example-com");
        assert_eq!(owner.uid, domain.owner.uid);
        assert_eq!(owner.controller, Some(true));
    }
}
