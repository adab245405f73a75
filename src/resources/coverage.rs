//! The coverage ConfigMap `<domain>-coverage`: the addresses the domain's Continuity Service
//! covers, one per line, lower case and sorted. It is the resolved form of `spec.users` that
//! the standby's recipient map is rendered from, and lets an administrator see at a glance who
//! is covered (`kubectl continuity users list`). A domain with a directory also lists the
//! directory's addresses that are not covered (`uncovered`: not added yet with
//! `SelectedUsers`, excluded with `AllUsers`): what `kubectl continuity users add` suggests,
//! read with the tenant's own permissions. Both lists are gzipped in `binaryData`
//! ([`super::packed`]), so a directory of 50,000 addresses fits one object.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;

use super::{child_meta, packed};
use crate::validation::ValidatedDomain;

/// Component label of the coverage ConfigMap.
pub const COMPONENT: &str = "coverage";

/// The `binaryData` key listing the covered addresses.
pub const ADDRESSES_KEY: &str = "addresses.gz";
/// The `binaryData` key listing the directory's addresses that are not covered.
pub const UNCOVERED_KEY: &str = "uncovered.gz";

/// Builds the coverage ConfigMap listing `addresses`, and, for a domain whose `directory`
/// was read, the directory's addresses not among them.
pub fn build(
    domain: &ValidatedDomain<'_>,
    addresses: &BTreeSet<String>,
    directory: Option<&BTreeSet<String>>,
) -> ConfigMap {
    let lines =
        |list: &mut dyn Iterator<Item = &String>| packed::pack(&list.map(|a| format!("{a}\n")).collect::<String>());
    let mut lists = BTreeMap::from([(ADDRESSES_KEY.to_owned(), lines(&mut addresses.iter()))]);
    if let Some(directory) = directory {
        lists.insert(UNCOVERED_KEY.to_owned(), lines(&mut directory.difference(addresses)));
    }
    ConfigMap {
        metadata: child_meta(domain, &domain.names.coverage, COMPONENT),
        data: Some(BTreeMap::from([("domain".to_owned(), domain.spec.domain.clone())])),
        binary_data: Some(lists),
        ..ConfigMap::default()
    }
}

/// The addresses listed under `key` of a coverage ConfigMap; `None` when it has no such list
/// (or one that does not unpack).
pub fn listed(map: &ConfigMap, key: &str) -> Option<Vec<String>> {
    let text = packed::table(map, key)?;
    Some(
        text.lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
    )
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
        assert_eq!(
            packed::table(&cm, ADDRESSES_KEY).unwrap(),
            "alice@example.com\nbob@example.com\n"
        );
        assert_eq!(cm.data.as_ref().unwrap()["domain"], "example.com");
        assert_eq!(listed(&cm, UNCOVERED_KEY), None, "no directory, no uncovered list");
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
            listed(&cm, UNCOVERED_KEY).unwrap(),
            ["alice@example.com", "carol@example.com"]
        );
        assert_eq!(listed(&cm, ADDRESSES_KEY).unwrap(), ["bob@example.com"]);
    }
}
