//! Pure builders of the child objects a ContinuityDomain owns, one module per child, plus what
//! every child shares: labels, the controller ownerReference (so Kubernetes garbage-collects
//! children with their domain) and a hash of the desired object (so an unchanged child is
//! never written again).

pub mod coverage;
pub mod next_hop;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::api::ContinuityDomain;
use crate::{Error, Result};

/// Label every child carries; the operator's caches select on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "continuity-operator";
/// Label naming the ContinuityDomain a child belongs to.
pub const DOMAIN_LABEL: &str = "continuity.mailops.io/domain";
/// Annotation holding the hash of the desired child, compared before applying.
pub const SPEC_HASH_ANNOTATION: &str = "continuity.mailops.io/spec-hash";

/// Label selector matching every child of every domain.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// Metadata of a child named `name` of `domain`, in its namespace, owned by it.
pub fn child_meta(domain: &ContinuityDomain, name: String, component: &str) -> Result<ObjectMeta> {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "continuity".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), domain.name_any()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (DOMAIN_LABEL.to_owned(), domain.name_any()),
    ]);
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(domain.namespace().ok_or(Error::MissingField {
            kind: "ContinuityDomain",
            field: "metadata.namespace",
        })?),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(domain)?]),
        ..ObjectMeta::default()
    })
}

fn owner_reference(domain: &ContinuityDomain) -> Result<OwnerReference> {
    domain.controller_owner_ref(&()).ok_or(Error::MissingField {
        kind: "ContinuityDomain",
        field: "metadata.uid",
    })
}

/// A stable hash of a value's JSON form.
pub fn content_hash<T: Serialize>(value: &T) -> Result<u64> {
    let bytes = serde_json::to_vec(value).map_err(|source| Error::Serialize { what: "object", source })?;
    Ok(fnv1a64(&bytes))
}

/// Stamps `object` with the hash of its content. Builders call this last.
pub fn with_spec_hash<K: Resource + Serialize>(mut object: K) -> Result<K> {
    let hash = content_hash(&object)?;
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SPEC_HASH_ANNOTATION.to_owned(), format!("{hash:016x}"));
    Ok(object)
}

/// Whether every field `desired` sets holds the same value in `actual`. Objects in `actual`
/// may carry more fields (set by the API server or others); lists and scalars must be equal.
pub fn is_subset(desired: &serde_json::Value, actual: &serde_json::Value) -> bool {
    match (desired, actual) {
        (serde_json::Value::Object(wanted), serde_json::Value::Object(present)) => wanted
            .iter()
            .all(|(key, value)| present.get(key).is_some_and(|found| is_subset(value, found))),
        (wanted, present) => wanted == present,
    }
}

/// The hash an object carries, if any.
pub fn spec_hash<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(SPEC_HASH_ANNOTATION)
        .map(String::as_str)
}

/// FNV-1a: tiny, and stable across Rust releases (unlike `DefaultHasher`), so an operator
/// upgrade does not rewrite every child.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_allows_extra_object_fields_but_not_changed_values() {
        let desired = serde_json::json!({ "metadata": { "name": "x" }, "data": { "a": "1" } });
        let actual = serde_json::json!({ "metadata": { "name": "x", "uid": "u" }, "data": { "a": "1", "b": "2" } });
        assert!(is_subset(&desired, &actual));
        let edited = serde_json::json!({ "metadata": { "name": "x" }, "data": { "a": "hand-edited" } });
        assert!(!is_subset(&desired, &edited));
        assert!(!is_subset(
            &serde_json::json!({ "list": [1, 2] }),
            &serde_json::json!({ "list": [1, 2, 3] })
        ));
        assert!(!is_subset(
            &desired,
            &serde_json::json!({ "metadata": { "name": "x" } })
        ));
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
