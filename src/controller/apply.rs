//! The controller's only writes: server-side apply of child objects and of status, under the
//! one field manager, forced (the operator owns these fields), and the deletion of a child the
//! spec no longer asks for. An unchanged child (same spec
//! hash as the cached one) and an unchanged status are never sent, nor is a repeat of what was
//! just written while the cache catches up ([`super::memo`]); a steady-state reconcile makes no
//! API writes.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Context;
use crate::resources::{content_hash, is_subset, spec_hash};
use crate::telemetry::metrics::Write;
use crate::{Error, FIELD_MANAGER, Result};

/// What an apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server already has it; nothing was sent.
    Unchanged,
    /// Sent.
    Written,
    /// Just written by us; the cache has not caught up yet, so nothing was sent. Check again
    /// after [`super::memo::WINDOW`].
    AwaitingCache,
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|source| Error::Serialize {
        what: "child object",
        source,
    })
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `desired` unless the cached object already carries its spec hash.
pub async fn child<K>(ctx: &Context, cache: &Store<K>, desired: &K) -> Result<Outcome>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
{
    let missing = |field| Error::MissingField {
        kind: "child object",
        field,
    };
    let name = desired.meta().name.clone().ok_or(missing("metadata.name"))?;
    let namespace = desired.namespace().ok_or(missing("metadata.namespace"))?;
    let hash = spec_hash(desired).ok_or(missing("spec hash annotation"))?;
    // The hash alone would miss a hand edit that kept the annotation: the cached child must
    // also still hold every field we want, with our values.
    let cached = cache.get(&ObjectRef::new(&name).within(&namespace));
    if let Some(cached) = cached.as_deref()
        && spec_hash(cached) == Some(hash)
        && is_subset(&to_json(desired)?, &to_json(cached)?)
    {
        return Ok(Outcome::Unchanged);
    }
    let target = format!("{}/{namespace}/{name}", K::kind(&()));
    let content = content_hash(&hash)?;
    if ctx.memo.recently_written(&target, content) {
        return Ok(Outcome::AwaitingCache);
    }
    Api::<K>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &apply_params(), &Patch::Apply(desired))
        .await?;
    ctx.memo.record(target, content);
    ctx.metrics.api_write(&K::kind(&()), Write::Apply);
    Ok(Outcome::Written)
}

/// Deletes the child `name` in `namespace` if the cache holds it and the domain with
/// `owner_uid` controls it: an object of that name someone else made is left alone.
pub async fn remove<K>(ctx: &Context, cache: &Store<K>, namespace: &str, name: &str, owner_uid: &str) -> Result<Outcome>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let Some(cached) = cache.get(&ObjectRef::new(name).within(namespace)) else {
        return Ok(Outcome::Unchanged);
    };
    let controlled = cached
        .owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && owner.uid == owner_uid);
    if !controlled {
        return Ok(Outcome::Unchanged);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: cached.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match Api::<K>::namespaced(ctx.client.clone(), namespace)
        .delete(name, &params)
        .await
    {
        Ok(_) => {}
        // Gone already, or replaced by another object since the cache saw it.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => return Ok(Outcome::Unchanged),
        Err(error) => return Err(error.into()),
    }
    ctx.metrics.api_write(&K::kind(&()), Write::Delete);
    Ok(Outcome::Written)
}

/// Applies `status` to the status subresource of `object` unless it equals `previous`. The body
/// holds nothing but the status: Kubernetes before 1.22 mis-tracks field ownership of spec
/// fields sent to /status.
pub async fn status<K, S>(ctx: &Context, object: &K, previous: &S, status: &S) -> Result<Outcome>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    if previous == status {
        return Ok(Outcome::Unchanged);
    }
    let missing = |field| Error::MissingField {
        kind: "reconciled object",
        field,
    };
    let name = object.name_any();
    let namespace = object.namespace().ok_or(missing("metadata.namespace"))?;
    let target = format!("status:{}", object.uid().ok_or(missing("metadata.uid"))?);
    let content = content_hash(status)?;
    if ctx.memo.recently_written(&target, content) {
        return Ok(Outcome::AwaitingCache);
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    });
    Api::<K>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(&name, &apply_params(), &Patch::Apply(&body))
        .await?;
    ctx.memo.record(target, content);
    ctx.metrics.api_write(&K::kind(&()), Write::Status);
    Ok(Outcome::Written)
}
