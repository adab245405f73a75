//! Pure builders of the child objects a ContinuityDomain owns, one module per child, plus what
//! every child shares: labels, the controller ownerReference (so Kubernetes garbage-collects
//! children with their domain) and a hash of the desired object (so an unchanged child is
//! never written again). Builders take a [`ValidatedDomain`] and cannot fail; the hash is
//! stamped afterwards, in one place ([`Child::stamped`]).

pub mod cached;
pub mod coverage;
pub mod mail;
pub mod names;
pub mod network_policy;
pub mod next_hop;
pub mod ownership;
pub mod packed;
pub mod pod;
pub mod webmail;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Serialize;

use crate::validation::ValidatedDomain;
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

/// A child object of a domain, of any kind the operator builds.
#[derive(Clone, Debug)]
pub enum Child {
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    Endpoints(Endpoints),
    NetworkPolicy(NetworkPolicy),
    StatefulSet(StatefulSet),
    Deployment(Deployment),
    Ingress(Ingress),
}

impl Child {
    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Child::ConfigMap(o) => &o.metadata,
            Child::Secret(o) => &o.metadata,
            Child::Service(o) => &o.metadata,
            Child::Endpoints(o) => &o.metadata,
            Child::NetworkPolicy(o) => &o.metadata,
            Child::StatefulSet(o) => &o.metadata,
            Child::Deployment(o) => &o.metadata,
            Child::Ingress(o) => &o.metadata,
        }
    }

    /// The child with the hash of its content stamped on it (see [`SPEC_HASH_ANNOTATION`]).
    pub fn stamped(self) -> Result<Self> {
        Ok(match self {
            Child::ConfigMap(o) => Child::ConfigMap(stamp(o)?.0),
            Child::Secret(o) => Child::Secret(stamp(o)?.0),
            Child::Service(o) => Child::Service(stamp(o)?.0),
            Child::Endpoints(o) => Child::Endpoints(stamp(o)?.0),
            Child::NetworkPolicy(o) => Child::NetworkPolicy(stamp(o)?.0),
            Child::StatefulSet(o) => Child::StatefulSet(stamp(o)?.0),
            Child::Deployment(o) => Child::Deployment(stamp(o)?.0),
            Child::Ingress(o) => Child::Ingress(stamp(o)?.0),
        })
    }

    /// The hash stamped on the child, if it is.
    pub fn hash(&self) -> Option<&str> {
        stamp_of(self.meta())
    }

    /// The object's kind and name, as in `StatefulSet/example-com-standby-mail`.
    pub fn describe(&self) -> String {
        let kind = match self {
            Child::ConfigMap(_) => "ConfigMap",
            Child::Secret(_) => "Secret",
            Child::Service(_) => "Service",
            Child::Endpoints(_) => "Endpoints",
            Child::NetworkPolicy(_) => "NetworkPolicy",
            Child::StatefulSet(_) => "StatefulSet",
            Child::Deployment(_) => "Deployment",
            Child::Ingress(_) => "Ingress",
        };
        format!("{kind}/{}", self.meta().name.as_deref().unwrap_or_default())
    }
}

/// The kinds of the children a domain may stop asking for: the Ingress when `webmail` is
/// removed, the Service and Endpoints fronting a primary that is no longer given by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optional {
    Ingress,
    Service,
    Endpoints,
}

/// What the builders take from the operator's configuration rather than from a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// Images used where a domain names none.
    pub images: Images,
    /// Who may send SMTP to the standbys.
    pub gateway: network_policy::GatewayPeers,
    /// What the provider lets tenants set.
    pub policy: crate::validation::policy::TenantPolicy,
}

/// Default images of the standby's containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub postfix: String,
    pub dovecot: String,
    pub webmail: String,
    /// The hand-back agent: the operator's own image (never a tenant's choice).
    pub agent: String,
}

/// The labels that select the pods of one component of a domain's standby.
pub fn selector_labels(domain: &ValidatedDomain<'_>, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "continuity".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), domain.name.clone()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
    ])
}

/// Every label a child (or a pod of it) carries.
pub fn child_labels(domain: &ValidatedDomain<'_>, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(domain, component);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels.insert(DOMAIN_LABEL.to_owned(), domain.name.clone());
    labels
}

/// Metadata of a child named `name` of `domain`, in its namespace, owned by it.
pub fn child_meta(domain: &ValidatedDomain<'_>, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(domain.namespace.clone()),
        labels: Some(child_labels(domain, component)),
        owner_references: Some(vec![domain.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// A stable hash of a value's JSON form.
pub fn content_hash<T: Serialize>(value: &T) -> Result<u64> {
    let bytes = serde_json::to_vec(value).map_err(|source| Error::Serialize { what: "object", source })?;
    Ok(fnv1a64(&bytes))
}

/// A stable hash of texts, as [`content_hash`] of the list would give; infallible because a
/// list of strings always has a JSON form.
pub fn texts_hash(texts: &[String]) -> u64 {
    let json = serde_json::Value::Array(texts.iter().cloned().map(serde_json::Value::String).collect());
    fnv1a64(json.to_string().as_bytes())
}

/// Stamps `object` with the hash of its content; returns it with the hash.
pub fn stamp<K: Resource + Serialize>(mut object: K) -> Result<(K, String)> {
    let hash = format!("{:016x}", content_hash(&object)?);
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SPEC_HASH_ANNOTATION.to_owned(), hash.clone());
    Ok((object, hash))
}

/// The amount a Kubernetes quantity (`1.5Gi`, `500m`, `1e3`) stands for.
pub fn quantity(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => 10f64.powi(exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(number * multiplier)
}

/// The hash an object carries, if any.
pub fn spec_hash<K: Resource>(object: &K) -> Option<&str> {
    stamp_of(object.meta())
}

fn stamp_of(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations.as_ref()?.get(SPEC_HASH_ANNOTATION).map(String::as_str)
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
    fn quantities_read_as_amounts() {
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("1.5Gi"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("postfix"), None);
        assert_eq!(quantity("10Gx"), None);
    }

    #[test]
    fn texts_hash_as_their_json_form() {
        let texts = ["#!/bin/sh\necho \"x\"\n".to_owned(), "ü\t".to_owned()];
        assert_eq!(texts_hash(&texts), content_hash(&texts).unwrap());
    }

    #[test]
    fn a_stamp_follows_the_content() {
        let config = |value: &str| {
            Child::ConfigMap(k8s_openapi::api::core::v1::ConfigMap {
                data: Some(BTreeMap::from([("k".to_owned(), value.to_owned())])),
                ..Default::default()
            })
        };
        let one = config("1").stamped().unwrap();
        assert_eq!(one.hash().map(str::len), Some(16));
        assert_eq!(one.hash(), config("1").stamped().unwrap().hash());
        assert_ne!(one.hash(), config("2").stamped().unwrap().hash());
        assert_eq!(config("1").hash(), None);
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
