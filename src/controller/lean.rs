//! What the children's caches keep of each object: its identity (resourceVersion included),
//! its controller, its spec
//! hash, the digest of the fields the operator owns in it
//! ([`crate::resources::ownership`]), and only the content the operator reads: the status of
//! the standby's workloads (readiness), a Deployment's replica count, an Ingress's class, and
//! the (gzipped) recipient table the gateway's journal copies are made from
//! ([`super::transport`]). Specs, data, labels and managedFields are dropped: a child is
//! compared with what the operator would apply by the owned-fields digest alone, so holding
//! ten children of 10,000 domains costs their metadata, not their content.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressSpec, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Serialize;

use crate::FIELD_MANAGER;
use crate::resources::{SPEC_HASH_ANNOTATION, ownership};
use crate::standby::RECIPIENTS_KEY;

/// Where a cached child keeps the digest of the fields the operator owns in it (the API
/// server never sees this annotation).
pub const OWNED_DIGEST: &str = "continuity.mailops.io/cached-owned-digest";

/// An object as the operator's cache keeps it.
pub trait Lean: Resource + Serialize + Sized {
    /// Replaces the object with what the cache keeps of it (its managedFields must still be
    /// there: the owned-fields digest is read from them).
    fn lean(&mut self);
}

/// The owned-fields digest a cached child carries, if the operator has applied it.
pub fn owned_digest<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(OWNED_DIGEST)
        .map(String::as_str)
}

/// The digest to compare with [`owned_digest`] for the object the operator would apply.
pub fn applied_digest(desired: &serde_json::Value) -> String {
    format!("{:016x}", ownership::applied_digest(desired))
}

/// Keeps the metadata the operator reads, and the digest of the fields it owns; called before
/// the rest of the object is dropped.
fn keep_metadata<K: Resource + Serialize>(object: &mut K) {
    let managed = object.meta_mut().managed_fields.take();
    let owned = managed
        .iter()
        .flatten()
        .find(|entry| {
            entry.manager.as_deref() == Some(FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.as_deref().is_none_or(str::is_empty)
        })
        .and_then(|entry| entry.fields_v1.as_ref())
        .and_then(|fields| {
            let json = serde_json::to_value(&*object).ok()?;
            Some(format!("{:016x}", ownership::owned_digest(&fields.0, &json)))
        });
    let meta = object.meta_mut();
    let mut annotations = BTreeMap::new();
    if let Some(hash) = meta.annotations.as_mut().and_then(|a| a.remove(SPEC_HASH_ANNOTATION)) {
        annotations.insert(SPEC_HASH_ANNOTATION.to_owned(), hash);
    }
    if let Some(owned) = owned {
        annotations.insert(OWNED_DIGEST.to_owned(), owned);
    }
    let controller = meta
        .owner_references
        .take()
        .into_iter()
        .flatten()
        .filter(|owner| owner.controller == Some(true))
        .collect::<Vec<_>>();
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        // The gateway unpacks a recipient table again only when this changed.
        resource_version: meta.resource_version.take(),
        generation: meta.generation.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        owner_references: (!controller.is_empty()).then_some(controller),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..ObjectMeta::default()
    };
}

impl Lean for ConfigMap {
    fn lean(&mut self) {
        keep_metadata(self);
        self.data = None;
        self.immutable = None;
        self.binary_data = self.binary_data.take().and_then(|mut data| {
            let recipients = data.remove(RECIPIENTS_KEY)?;
            Some(BTreeMap::from([(RECIPIENTS_KEY.to_owned(), recipients)]))
        });
    }
}

impl Lean for Secret {
    fn lean(&mut self) {
        keep_metadata(self);
        (self.data, self.string_data, self.type_, self.immutable) = (None, None, None, None);
    }
}

impl Lean for Service {
    fn lean(&mut self) {
        keep_metadata(self);
        (self.spec, self.status) = (None, None);
    }
}

impl Lean for Endpoints {
    fn lean(&mut self) {
        keep_metadata(self);
        self.subsets = None;
    }
}

impl Lean for NetworkPolicy {
    fn lean(&mut self) {
        keep_metadata(self);
        self.spec = None;
    }
}

impl Lean for StatefulSet {
    fn lean(&mut self) {
        keep_metadata(self);
        self.spec = None;
    }
}

impl Lean for Deployment {
    fn lean(&mut self) {
        keep_metadata(self);
        self.spec = self.spec.take().map(|spec| DeploymentSpec {
            replicas: spec.replicas,
            ..DeploymentSpec::default()
        });
    }
}

impl Lean for Ingress {
    fn lean(&mut self) {
        keep_metadata(self);
        self.spec = self.spec.take().map(|spec| IngressSpec {
            ingress_class_name: spec.ingress_class_name,
            ..IngressSpec::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, OwnerReference};

    fn stored(value: &str) -> ConfigMap {
        let owner = |uid: &str, controller| OwnerReference {
            uid: uid.into(),
            controller: Some(controller),
            ..OwnerReference::default()
        };
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("c".into()),
                namespace: Some("ns".into()),
                resource_version: Some("7".into()),
                labels: Some(BTreeMap::from([("app".into(), "mail".into())])),
                annotations: Some(BTreeMap::from([(SPEC_HASH_ANNOTATION.into(), "abc".into())])),
                owner_references: Some(vec![owner("other", false), owner("domain", true)]),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some(FIELD_MANAGER.into()),
                    operation: Some("Apply".into()),
                    fields_v1: Some(FieldsV1(serde_json::json!({"f:data": {"f:main.cf": {}}}))),
                    ..ManagedFieldsEntry::default()
                }]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("main.cf".to_owned(), value.to_owned())])),
            binary_data: Some(BTreeMap::from([
                (RECIPIENTS_KEY.to_owned(), ByteString(b"table".to_vec())),
                ("other".to_owned(), ByteString(b"x".to_vec())),
            ])),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_cached_child_keeps_its_identity_controller_hash_and_owned_digest_only() {
        let mut cached = stored("a = 1");
        cached.lean();
        assert_eq!(cached.data, None, "the data itself is not kept");
        assert_eq!(cached.metadata.labels, None);
        assert_eq!(cached.metadata.managed_fields, None);
        assert_eq!(
            cached.metadata.resource_version.as_deref(),
            Some("7"),
            "the gateway tells a changed recipient table by it"
        );
        let owners = cached.metadata.owner_references.as_ref().unwrap();
        assert_eq!((owners.len(), owners[0].uid.as_str()), (1, "domain"));
        assert_eq!(
            cached.binary_data,
            Some(BTreeMap::from([(
                RECIPIENTS_KEY.to_owned(),
                ByteString(b"table".to_vec())
            )])),
            "the recipient table is kept for the gateway"
        );
        let annotations = cached.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.get(SPEC_HASH_ANNOTATION).map(String::as_str), Some("abc"));
        assert_eq!(
            owned_digest(&cached).map(str::to_owned),
            Some(applied_digest(&serde_json::json!({"data": {"main.cf": "a = 1"}})))
        );
        let mut edited = stored("a = 2");
        edited.lean();
        assert_ne!(owned_digest(&cached), owned_digest(&edited));
    }

    #[test]
    fn a_child_the_operator_never_applied_has_no_owned_digest() {
        let mut foreign = stored("a = 1");
        foreign.metadata.managed_fields.as_mut().unwrap()[0].manager = Some("kubectl".into());
        foreign.lean();
        assert_eq!(owned_digest(&foreign), None);
    }
}
