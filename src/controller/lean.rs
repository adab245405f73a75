//! What the children's caches keep of each object. A ConfigMap or Secret is kept as a digest
//! of its data instead of the data: the standby's rendered configuration, the coverage list
//! (as long as the directory), the password hashes. The operator never reads those back: it
//! only asks whether they still hold what it would apply, which the digest answers
//! ([`Lean::lean`] is applied to the desired object too, and the two compared). The one key
//! kept is the (gzipped) recipient table, which the gateway's journal copies are made from
//! ([`super::transport`]). Other kinds are kept whole: their status is read, and their specs
//! are small.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::resources::content_hash;
use crate::standby::RECIPIENTS_KEY;

/// Where the digest of a ConfigMap's or Secret's data is kept, in the cache only (the API
/// server never sees this annotation).
pub const DATA_DIGEST: &str = "continuity.mailops.io/cached-data-digest";

/// An object as the operator's cache keeps it.
pub trait Lean {
    /// Drops what the cache need not hold, keeping enough to tell a change.
    fn lean(&mut self) {}
}

fn digest_into<T: Serialize>(meta: &mut ObjectMeta, data: &T) {
    // Data that cannot be serialized cannot have been read from the API server either.
    let digest = content_hash(data).map_or_else(|_| "unhashable".to_owned(), |hash| format!("{hash:016x}"));
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(DATA_DIGEST.to_owned(), digest);
}

impl Lean for ConfigMap {
    fn lean(&mut self) {
        let (kept, digested): (BTreeMap<_, _>, BTreeMap<_, _>) = self
            .binary_data
            .take()
            .unwrap_or_default()
            .into_iter()
            .partition(|(key, _)| key == RECIPIENTS_KEY);
        digest_into(&mut self.metadata, &(self.data.take(), digested));
        self.binary_data = (!kept.is_empty()).then_some(kept);
    }
}

impl Lean for Secret {
    fn lean(&mut self) {
        let data = (self.data.take(), self.string_data.take());
        digest_into(&mut self.metadata, &data);
    }
}

impl Lean for Service {}
impl Lean for Endpoints {}
impl Lean for NetworkPolicy {}
impl Lean for StatefulSet {}
impl Lean for Deployment {}
impl Lean for Ingress {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::packed;

    fn map(value: &str) -> ConfigMap {
        ConfigMap {
            data: Some(BTreeMap::from([("main.cf".to_owned(), value.to_owned())])),
            ..ConfigMap::default()
        }
    }

    fn digest(object: &ConfigMap) -> Option<&String> {
        object.metadata.annotations.as_ref()?.get(DATA_DIGEST)
    }

    #[test]
    fn a_lean_config_map_keeps_a_digest_that_tells_any_change() {
        let (mut same, mut again, mut edited) = (map("a = 1"), map("a = 1"), map("a = 2"));
        for object in [&mut same, &mut again, &mut edited] {
            object.lean();
        }
        assert_eq!(same.data, None, "the data itself is not kept");
        assert_eq!(digest(&same), digest(&again));
        assert_ne!(digest(&same), digest(&edited));
    }

    #[test]
    fn the_recipient_table_is_kept_for_the_gateway() {
        let recipients = packed::pack("alice@example.com alice@example.com\n");
        let mut config = map("a = 1");
        config.binary_data = Some(BTreeMap::from([(RECIPIENTS_KEY.to_owned(), recipients.clone())]));
        let mut other_recipients = config.clone();
        other_recipients.binary_data = Some(BTreeMap::from([(RECIPIENTS_KEY.to_owned(), packed::pack(""))]));
        let mut other_data = map("a = 2");
        other_data.binary_data = config.binary_data.clone();
        for object in [&mut config, &mut other_recipients, &mut other_data] {
            object.lean();
        }
        assert_eq!(config.data, None);
        assert_eq!(
            config.binary_data,
            Some(BTreeMap::from([(RECIPIENTS_KEY.to_owned(), recipients)]))
        );
        assert_eq!(
            digest(&config),
            digest(&other_recipients),
            "the kept table is compared itself"
        );
        assert_ne!(digest(&config), digest(&other_data));
    }
}
