//! The controller's only writes: server-side apply of child objects and of status, under the
//! one field manager, forced (the operator owns these fields). An unchanged child (same spec
//! hash as the cached one) and an unchanged status are never sent, so a steady-state reconcile
//! makes no API writes.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resources::spec_hash;
use crate::telemetry::metrics::{Metrics, Write};
use crate::{Error, FIELD_MANAGER, Result};

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `desired` unless the cached object already carries its spec hash. Returns whether
/// a write was sent.
pub async fn child<K>(
    client: &Client,
    cache: &Store<K>,
    desired: &K,
    metrics: &Metrics,
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let name = desired.meta().name.clone().ok_or(Error::MissingField {
        kind: "child object",
        field: "metadata.name",
    })?;
    let namespace = desired.namespace().ok_or(Error::MissingField {
        kind: "child object",
        field: "metadata.namespace",
    })?;
    let cached = cache.get(&ObjectRef::new(&name).within(&namespace));
    if cached
        .as_deref()
        .and_then(spec_hash)
        .is_some_and(|hash| Some(hash) == spec_hash(desired))
    {
        return Ok(false);
    }
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch(&name, &apply_params(), &Patch::Apply(desired))
        .await?;
    metrics.api_write(&K::kind(&()), Write::Apply);
    Ok(true)
}

/// Applies `status` to the status subresource of `object`. The body holds nothing but the
/// status: Kubernetes before 1.22 mis-tracks field ownership of spec fields sent to /status.
pub async fn status<K, S>(api: &Api<K>, object: &K, status: &S, metrics: &Metrics) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let name = object.name_any();
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    });
    api.patch_status(&name, &apply_params(), &Patch::Apply(&body))
        .await?;
    metrics.api_write(&K::kind(&()), Write::Status);
    Ok(())
}
