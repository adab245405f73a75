//! The coverage ConfigMap `<domain>-coverage`: the addresses the domain's Continuity Service
//! covers, one per line, lower case and sorted. It is the resolved form of `spec.users` that
//! the standby's recipient map is rendered from, and lets an administrator see at a glance who
//! is covered. A domain with a directory also lists the directory's addresses that are not
//! covered (`uncovered`: not added yet with `SelectedUsers`, excluded with `AllUsers`): what
//! `kubectl continuity users add` suggests, read with the tenant's own permissions.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;

use super::child_meta;
use crate::validation::ValidatedDomain;

/// Component label of the coverage ConfigMap.
pub const COMPONENT: &str = "coverage";

/// The key listing the covered addresses.
pub const ADDRESSES_KEY: &str = "addresses";
/// The key listing the directory's addresses that are not covered.
pub const UNCOVERED_KEY: &str = "uncovered";

/// Builds the coverage ConfigMap listing `addresses`, and, for a domain whose `directory`
/// was read, the directory's addresses not among them.
pub fn build(
    domain: &ValidatedDomain<'_>,
    addresses: &BTreeSet<String>,
    directory: Option<&BTreeSet<String>>,
) -> ConfigMap {
    let lines = |list: &mut dyn Iterator<Item = &String>| list.map(|a| format!("{a}\n")).collect::<String>();
    let mut data = BTreeMap::from([
        ("domain".to_owned(), domain.spec.domain.clone()),
        (ADDRESSES_KEY.to_owned(), lines(&mut addresses.iter())),
    ]);
    if let Some(directory) = directory {
        data.insert(UNCOVERED_KEY.to_owned(), lines(&mut directory.difference(addresses)));
    }
    ConfigMap {
        metadata: child_meta(domain, &domain.names.coverage, COMPONENT),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The addresses listed under `key` of a coverage ConfigMap.
pub fn listed<'a>(map: &'a ConfigMap, key: &str) -> impl Iterator<Item = &'a str> {
    map.data
        .as_ref()
        .and_then(|data| data.get(key))
        .into_iter()
        .flat_map(|text| text.lines())
        .filter(|line| !line.is_empty())
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
        let cm = build(&domain, &addresses(&["bob@example.com", "alice@example.com"]), None);
        assert_eq!(cm.metadata.name.as_deref(), Some("example-com-coverage"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("tenant-a"));
        let data = cm.data.as_ref().unwrap();
        assert_eq!(data["addresses"], "alice@example.com\nbob@example.com\n");
        assert_eq!(data["domain"], "example.com");
        assert!(!data.contains_key(UNCOVERED_KEY), "no directory, no uncovered list");
        assert_eq!(cm.labels()[DOMAIN_LABEL], "example-com");

        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ContinuityDomain");
        assert_eq!(owner.name, "example-com");
        assert_eq!(owner.uid, domain.owner.uid);
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn a_directory_adds_the_addresses_it_lists_that_are_not_covered() {
        let domain = validated("domain-minimal.yaml");
        let directory = addresses(&["alice@example.com", "bob@example.com", "carol@example.com"]);
        let cm = build(&domain, &addresses(&["bob@example.com"]), Some(&directory));
        assert_eq!(
            listed(&cm, UNCOVERED_KEY).collect::<Vec<_>>(),
            ["alice@example.com", "carol@example.com"]
        );
        assert_eq!(listed(&cm, ADDRESSES_KEY).collect::<Vec<_>>(), ["bob@example.com"]);
    }
}
