//! What the operator's caches keep of a child: [`Cached`], built from the object as the API
//! server sends it and in place of it. It holds the child's identity (resourceVersion
//! included: the gateway unpacks a recipient table again only when it changed), its
//! controller, its spec hash, the digest of the fields the operator owns in it
//! ([`super::ownership`]), and only the content the operator reads ([`Keep::Kept`]): the
//! status of the standby's workloads, the mail StatefulSet's volume (which cannot change), a
//! Deployment's replica count, an Ingress's class, the (gzipped) recipient table the
//! gateway's journal copies are made from.
//!
//! A type of its own rather than the Kubernetes type with its spec emptied: a k8s-openapi
//! struct keeps the room for every field it could hold (a StatefulSet's empty spec still
//! holds a whole pod template inline), and the two annotations the digest and hash used to
//! travel in cost a map node each. Ten children of 10,000 domains so cost their names and
//! uids, not their content. kube's `PartialObjectMeta` would drop the content before the
//! digest could be taken, which needs the values of the owned fields.

use std::borrow::Cow;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressStatus, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ByteString, NamespaceResourceScope};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::mail::{DataVolume, existing_volume};
use super::{SPEC_HASH_ANNOTATION, ownership};
use crate::FIELD_MANAGER;
use crate::standby::RECIPIENTS_KEY;

/// A child of kind `K` as the operator's cache keeps it.
#[derive(Clone, Debug, Serialize)]
#[serde(bound = "")]
pub struct Cached<K: Keep> {
    /// Name, namespace, uid, resourceVersion, generation, deletion time and the controlling
    /// ownerReference; nothing else.
    pub metadata: ObjectMeta,
    /// The digest of the fields the operator owns in it; none if the operator never applied it.
    pub owned_digest: Option<u64>,
    /// The spec hash the operator stamped on it ([`SPEC_HASH_ANNOTATION`]).
    pub spec_hash: Option<String>,
    /// What the operator reads of its content.
    pub kept: K::Kept,
}

/// A kind of child, and what of its content the cache keeps.
pub trait Keep: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Serialize + DeserializeOwned {
    type Kept: Clone + Debug + Default + Serialize + Send + Sync + 'static;

    /// What is kept of the object once its metadata has been read.
    fn keep(self) -> Self::Kept;
}

/// The digest [`Cached::owned_digest`] holds once the operator applied `desired` and nobody
/// changed what it owns.
pub fn applied_digest(desired: &serde_json::Value) -> u64 {
    ownership::applied_digest(desired)
}

impl<K: Keep> From<K> for Cached<K> {
    fn from(mut object: K) -> Self {
        let managed = object.meta_mut().managed_fields.take();
        let owned_digest = managed
            .iter()
            .flatten()
            .find(|entry| {
                entry.manager.as_deref() == Some(FIELD_MANAGER)
                    && entry.operation.as_deref() == Some("Apply")
                    && entry.subresource.as_deref().is_none_or(str::is_empty)
            })
            .and_then(|entry| entry.fields_v1.as_ref())
            .and_then(|fields| {
                let json = serde_json::to_value(&object).ok()?;
                Some(ownership::owned_digest(&fields.0, &json))
            });
        let meta = object.meta_mut();
        let spec_hash = meta.annotations.as_mut().and_then(|a| a.remove(SPEC_HASH_ANNOTATION));
        let controller = meta
            .owner_references
            .take()
            .into_iter()
            .flatten()
            .filter(|owner| owner.controller == Some(true))
            .collect::<Vec<_>>();
        let metadata = ObjectMeta {
            name: meta.name.take(),
            namespace: meta.namespace.take(),
            uid: meta.uid.take(),
            resource_version: meta.resource_version.take(),
            generation: meta.generation.take(),
            deletion_timestamp: meta.deletion_timestamp.take(),
            owner_references: (!controller.is_empty()).then_some(controller),
            ..ObjectMeta::default()
        };
        Cached {
            metadata,
            owned_digest,
            spec_hash,
            kept: object.keep(),
        }
    }
}

/// Read as the whole object and leaned at once, so the watch never holds more than one whole
/// object at a time.
impl<'de, K: Keep> Deserialize<'de> for Cached<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(deserializer).map(Cached::from)
    }
}

/// The same resource as `K`, for the API and the caches.
impl<K: Keep> Resource for Cached<K> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A kind whose content the operator never reads.
macro_rules! keep_nothing {
    ($($kind:ty),*) => {$(
        impl Keep for $kind {
            type Kept = ();
            fn keep(self) {}
        }
    )*};
}
keep_nothing!(Secret, Service, Endpoints, NetworkPolicy);

/// A ConfigMap's recipient table, if it is a standby's.
impl Keep for ConfigMap {
    type Kept = Option<ByteString>;
    fn keep(self) -> Self::Kept {
        self.binary_data?.remove(RECIPIENTS_KEY)
    }
}

/// What the plan and readiness read of the mail StatefulSet.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatefulSetKept {
    /// Its volume claim template cannot change, so the plan keeps it.
    pub volume: Option<DataVolume>,
    pub status: Option<StatefulSetStatus>,
}

impl Keep for StatefulSet {
    type Kept = StatefulSetKept;
    fn keep(self) -> Self::Kept {
        StatefulSetKept {
            volume: existing_volume(&self),
            status: self.status,
        }
    }
}

/// What readiness reads of the webmail Deployment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeploymentKept {
    pub replicas: Option<i32>,
    pub status: Option<DeploymentStatus>,
}

impl Keep for Deployment {
    type Kept = DeploymentKept;
    fn keep(self) -> Self::Kept {
        DeploymentKept {
            replicas: self.spec.and_then(|spec| spec.replicas),
            status: self.status,
        }
    }
}

/// What readiness reads of the webmail Ingress.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngressKept {
    pub class: Option<String>,
    pub status: Option<IngressStatus>,
}

impl Keep for Ingress {
    type Kept = IngressKept;
    fn keep(self) -> Self::Kept {
        IngressKept {
            class: self.spec.and_then(|spec| spec.ingress_class_name),
            status: self.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, OwnerReference};
    use std::collections::BTreeMap;

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
        let cached = Cached::from(stored("a = 1"));
        assert_eq!(cached.metadata.labels, None);
        assert_eq!(cached.metadata.annotations, None);
        assert_eq!(cached.metadata.managed_fields, None);
        assert_eq!(
            cached.metadata.resource_version.as_deref(),
            Some("7"),
            "the gateway tells a changed recipient table by it"
        );
        let owners = cached.metadata.owner_references.as_ref().unwrap();
        assert_eq!((owners.len(), owners[0].uid.as_str()), (1, "domain"));
        assert_eq!(
            cached.kept,
            Some(ByteString(b"table".to_vec())),
            "the recipient table is kept for the gateway"
        );
        assert_eq!(cached.spec_hash.as_deref(), Some("abc"));
        assert_eq!(
            cached.owned_digest,
            Some(applied_digest(&serde_json::json!({"data": {"main.cf": "a = 1"}})))
        );
        let edited = Cached::from(stored("a = 2"));
        assert_ne!(cached.owned_digest, edited.owned_digest);
    }

    #[test]
    fn a_child_the_operator_never_applied_has_no_owned_digest() {
        let mut foreign = stored("a = 1");
        foreign.metadata.managed_fields.as_mut().unwrap()[0].manager = Some("kubectl".into());
        assert_eq!(Cached::from(foreign).owned_digest, None);
    }

    #[test]
    fn the_watch_reads_a_whole_object_into_its_cached_form() {
        let json = serde_json::to_string(&stored("a = 1")).unwrap();
        let read: Cached<ConfigMap> = serde_json::from_str(&json).unwrap();
        assert_eq!(read.owned_digest, Cached::from(stored("a = 1")).owned_digest);
        assert_eq!(read.metadata.name.as_deref(), Some("c"));
    }
}
