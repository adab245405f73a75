//! The controller's only writes: server-side apply of child objects and of status, under the
//! one field manager, forced (the operator owns these fields), and the deletion of a child the
//! spec no longer asks for. An object this domain does not control (another domain's child, or
//! anything else that happens to have the name) is never written nor deleted: forced apply
//! would take it over, and garbage collection would delete it with the domain. Applying a domain's [`Desired`] children yields [`Applied`]: what
//! was written and what the API server refused. An unchanged child (the fields the operator
//! owns in it hold what it would apply, [`crate::resources::cached`]) and an unchanged status are never sent, nor is a repeat of what was
//! just written while the cache catches up ([`super::memo`]); a steady-state reconcile makes no
//! API writes. Besides: the hand-back finalizer, the transport map, and the deletion of a
//! domain's ContinuityUsers once its switch to `AllUsers` is confirmed.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Context;
use super::memo::WriteMemo;
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::plan::{Desired, Removal};
use crate::resources::cached::{self, Cached, Keep};
use crate::resources::{Child, Optional, content_hash, spec_hash};
use crate::telemetry::metrics::Write;
use crate::{Error, FIELD_MANAGER, Result};

/// The API client for writes, and the memory of what it just wrote.
pub struct Writer {
    client: Client,
    memo: WriteMemo,
}

impl Writer {
    pub fn new(client: Client) -> Self {
        Writer {
            client,
            memo: WriteMemo::default(),
        }
    }
}

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

/// Applies `desired` unless the fields the operator owns in the cached object hold it already.
pub async fn child<K>(ctx: &Context, cache: &Store<Cached<K>>, desired: &K) -> Result<Outcome>
where
    K: Keep + Clone + Debug,
{
    let missing = |field| Error::MissingField {
        kind: "child object",
        field,
    };
    let name = desired.meta().name.clone().ok_or(missing("metadata.name"))?;
    let namespace = desired.namespace().ok_or(missing("metadata.namespace"))?;
    let hash = spec_hash(desired).ok_or(missing("spec hash annotation"))?;
    let owner = controller_uid(desired).ok_or(missing("controller ownerReference"))?;
    let api = Api::<K>::namespaced(ctx.writer.client.clone(), &namespace);
    let describe = || format!("{}/{name}", K::kind(&()));
    // The cache holds the operator's children only (by label); anything else of that name is
    // looked up before it could be written over.
    let cached = cache.get(&ObjectRef::new(&name).within(&namespace));
    let foreign = match &cached {
        Some(cached) => controller_uid(cached.as_ref()) != Some(owner),
        None => api
            .get_opt(&name)
            .await?
            .is_some_and(|existing| controller_uid(&existing) != Some(owner)),
    };
    if foreign {
        return Err(Error::NotOwned { child: describe() });
    }
    // Unchanged when the fields the operator owns in the child hold exactly what it would
    // apply: a hand edit of any of them takes it out of the operator's set.
    if let Some(cached) = cached.as_deref()
        && cached.owned_digest == Some(cached::applied_digest(&to_json(desired)?))
    {
        return Ok(Outcome::Unchanged);
    }
    let target = format!("{}/{namespace}/{name}", K::kind(&()));
    let content = content_hash(&hash)?;
    if ctx.writer.memo.recently_written(&target, content) {
        return Ok(Outcome::AwaitingCache);
    }
    api.patch(&name, &apply_params(), &Patch::Apply(desired)).await?;
    ctx.writer.memo.record(target, content);
    ctx.metrics.api_write(&K::kind(&()), Write::Apply);
    Ok(Outcome::Written)
}

/// The uid of the object's controller (its controlling ownerReference), if it has one.
fn controller_uid<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| owner.uid.as_str())
}

/// A child the API server refused (permanently: a transient failure retries the reconcile).
#[derive(Debug)]
pub struct Refusal {
    /// As in `Service/example-com-next-hop`.
    pub child: String,
    pub error: Error,
}

/// What applying a domain's desired children did.
#[derive(Debug, Default)]
pub struct Applied {
    pub outcomes: Vec<Outcome>,
    /// The API server refused the routing object: the route has not changed.
    pub routing_refused: bool,
    /// In the order met.
    pub refused: Vec<Refusal>,
}

/// Applies the routing object first, then every other child, then removes what the spec no
/// longer asks for (if the domain with `owner_uid` controls it). A refused child is recorded
/// and the others still applied; a refused helper object does not undo a flip that happened.
pub async fn desired(ctx: &Context, desired: &Desired, namespace: &str, owner_uid: &str) -> Result<Applied> {
    let mut applied = Applied::default();
    let record = |applied: &mut Applied, child: String, result: Result<Outcome>| -> Result<bool> {
        match result {
            Ok(outcome) => applied.outcomes.push(outcome),
            Err(error) if error.is_permanent() => {
                applied.refused.push(Refusal { child, error });
                return Ok(false);
            }
            Err(error) => return Err(error),
        }
        Ok(true)
    };
    let routed = apply_child(ctx, &desired.routing).await;
    applied.routing_refused = !record(&mut applied, desired.routing.describe(), routed)?;
    for child in &desired.children {
        let result = apply_child(ctx, child).await;
        record(&mut applied, child.describe(), result)?;
    }
    for Removal { kind, name } in &desired.removed {
        let result = match kind {
            Optional::Ingress => remove(ctx, &ctx.caches.ingresses, namespace, name, owner_uid).await,
            Optional::Service => remove(ctx, &ctx.caches.services, namespace, name, owner_uid).await,
            Optional::Endpoints => remove(ctx, &ctx.caches.endpoints, namespace, name, owner_uid).await,
        };
        record(&mut applied, format!("{kind:?}/{name}"), result)?;
    }
    Ok(applied)
}

/// Applies one child through the cache of its kind.
async fn apply_child(ctx: &Context, child: &Child) -> Result<Outcome> {
    match child {
        Child::ConfigMap(o) => self::child(ctx, &ctx.caches.config_maps, o).await,
        Child::Secret(o) => self::child(ctx, &ctx.caches.owned_secrets, o).await,
        Child::Service(o) => self::child(ctx, &ctx.caches.services, o).await,
        Child::Endpoints(o) => self::child(ctx, &ctx.caches.endpoints, o).await,
        Child::NetworkPolicy(o) => self::child(ctx, &ctx.caches.network_policies, o).await,
        Child::StatefulSet(o) => self::child(ctx, &ctx.caches.stateful_sets, o).await,
        Child::Deployment(o) => self::child(ctx, &ctx.caches.deployments, o).await,
        Child::Ingress(o) => self::child(ctx, &ctx.caches.ingresses, o).await,
    }
}

/// Deletes the child `name` in `namespace` if the cache holds it and the domain with
/// `owner_uid` controls it: an object of that name someone else made is left alone.
pub async fn remove<K>(
    ctx: &Context,
    cache: &Store<Cached<K>>,
    namespace: &str,
    name: &str,
    owner_uid: &str,
) -> Result<Outcome>
where
    K: Keep + Clone + Debug,
{
    let Some(cached) = cache.get(&ObjectRef::new(name).within(namespace)) else {
        return Ok(Outcome::Unchanged);
    };
    if controller_uid(cached.as_ref()) != Some(owner_uid) {
        return Ok(Outcome::Unchanged);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: cached.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match Api::<K>::namespaced(ctx.writer.client.clone(), namespace)
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

/// Applies `status` to the status subresource of `object` unless it equals `previous`, counted
/// as `write` (a status or a heartbeat). The body holds nothing but the status: Kubernetes
/// before 1.22 mis-tracks field ownership of spec fields sent to /status.
pub async fn status<K, S>(ctx: &Context, object: &K, (previous, status): (&S, &S), write: Write) -> Result<Outcome>
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
    if ctx.writer.memo.recently_written(&target, content) {
        return Ok(Outcome::AwaitingCache);
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    });
    Api::<K>::namespaced(ctx.writer.client.clone(), &namespace)
        .patch_status(&name, &apply_params(), &Patch::Apply(&body))
        .await?;
    ctx.writer.memo.record(target, content);
    ctx.metrics.api_write(&K::kind(&()), write);
    Ok(Outcome::Written)
}

/// The finalizer that keeps a ContinuityDomain while its standby holds mail for the primary:
/// state outside Kubernetes, so the only one the operator sets.
pub const HANDBACK_FINALIZER: &str = "continuity.mailops.io/handback";

/// Adds (`keep`) or removes the hand-back finalizer, by server-side apply of the finalizer
/// list the operator owns (a user's own finalizers are theirs and stay).
pub async fn handback_finalizer(ctx: &Context, domain: &ContinuityDomain, keep: bool) -> Result<()> {
    let name = domain.name_any();
    let namespace = domain.namespace().ok_or(Error::MissingField {
        kind: "ContinuityDomain",
        field: "metadata.namespace",
    })?;
    let finalizers: Vec<&str> = if keep { vec![HANDBACK_FINALIZER] } else { Vec::new() };
    let body = serde_json::json!({
        "apiVersion": ContinuityDomain::api_version(&()),
        "kind": ContinuityDomain::kind(&()),
        "metadata": { "name": name, "finalizers": finalizers },
    });
    Api::<ContinuityDomain>::namespaced(ctx.writer.client.clone(), &namespace)
        .patch(&name, &apply_params(), &Patch::Apply(&body))
        .await?;
    ctx.metrics.api_write("ContinuityDomain", Write::Apply);
    Ok(())
}

/// Deletes the ContinuityUsers `names` of `namespace`: the confirmed switch of their domain to
/// `AllUsers` (one already gone is fine). Only ever the users that reference the domain.
pub async fn remove_users(ctx: &Context, namespace: &str, names: &[String]) -> Result<()> {
    let users = Api::<ContinuityUser>::namespaced(ctx.writer.client.clone(), namespace);
    for name in names {
        match users.delete(name, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.api_write("ContinuityUser", Write::Delete),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Applies the transport map `map` (a ConfigMap outside any domain, so not compared with a
/// cache: the caller compares what it renders with what it read).
pub async fn transport_map(ctx: &Context, map: &ConfigMap) -> Result<()> {
    let missing = |field| Error::MissingField {
        kind: "transport map",
        field,
    };
    let name = map.meta().name.as_deref().ok_or(missing("metadata.name"))?;
    let namespace = map.meta().namespace.as_deref().ok_or(missing("metadata.namespace"))?;
    Api::<ConfigMap>::namespaced(ctx.writer.client.clone(), namespace)
        .patch(name, &apply_params(), &Patch::Apply(map))
        .await?;
    ctx.metrics.api_write("ConfigMap", Write::Apply);
    Ok(())
}
