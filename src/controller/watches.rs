//! The watches that feed the caches: scoped to the operator's namespace or not, kept without
//! managedFields, retried with client-go's backoff; the operator's children selected by label.

use std::fmt::Debug;

use futures::Stream;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use serde::de::DeserializeOwned;

use crate::resources::cached::{Cached, Keep};

/// `K` in `namespace`, or in every namespace.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The annotation `kubectl apply` keeps a whole copy of the object in (of a Secret: its data).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A watch whose objects are kept without managedFields and without `kubectl apply`'s copy of
/// themselves (together often more than the rest of the object, and never read), retried
/// with client-go's backoff.
pub fn lean_watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).default_backoff().modify(|object| {
        object.managed_fields_mut().clear();
        object.annotations_mut().remove(LAST_APPLIED);
    })
}

/// A watch of the operator's children of kind `K` in scope (selected by label), feeding a
/// cache of their [`Cached`] form; the stream yields the objects touched, for `.owns()`.
pub fn children<K>(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
) -> (
    Store<Cached<K>>,
    impl Stream<Item = Result<Cached<K>, watcher::Error>> + use<K>,
)
where
    K: Keep + Clone + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    // Not `lean_watch`: each object is read straight into its cached form, which reads the
    // managedFields before dropping them.
    let stream = watcher(scoped::<Cached<K>>(client, namespace), config.clone())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (store, stream)
}
