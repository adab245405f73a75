//! What every reconcile shares: the operator's settings, the caches and indexes it reads, the
//! reader and writer through which it reaches the API server, the probe scheduler, the
//! triggers that queue related objects, and the per-object backoff.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::Notify;

use super::apply::{self, Writer};
use super::fetch::Reader;
use super::index::Index;
use super::relations::{AddressKey, SecretKey};
use super::{memo, secrets};
use crate::api::{ContinuityDomain, ContinuityDomainStatus, ContinuityUser};
use crate::directory::sync::DirectorySync;
use crate::health::scheduler::{DomainKey, Prober};
use crate::jitter;
use crate::resources::Environment;
use crate::resources::cached::Cached;
use crate::standby::passwords::PasswordHasher;
use crate::telemetry::Metrics;
use crate::validation::claims::Claim;
use crate::validation::grants;

/// How long a reconcile that arrives before the caches are synced waits to be retried.
pub const CACHE_SYNC_RETRY: Duration = Duration::from_millis(500);
/// Bounds of the per-object backoff after transient errors.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Settings of the controllers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Reconcile this namespace only; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Reconciliations at once, per kind.
    pub concurrency: u16,
    /// Reconcile every object at least this often.
    pub resync: Duration,
    /// Identity of this replica, for Events.
    pub identity: String,
    /// What the children's builders take from the operator's configuration.
    pub environment: Environment,
    /// How often status shows a fresh probe time while nothing else changes.
    pub status_heartbeat: Duration,
    /// Name the probes introduce themselves with (EHLO).
    pub probe_helo: String,
    /// Probes run at once, over all domains.
    pub max_concurrent_probes: usize,
    /// DNS servers for primaries' names; the system's when empty.
    pub probe_nameservers: Vec<std::net::SocketAddr>,
    /// When failures are widespread enough to hold failovers.
    pub widespread: crate::health::widespread::Threshold,
    /// The transport map ConfigMap (namespace, name); none when `None`.
    pub transport_map: Option<(String, String)>,
    /// Whether namespaces serve only the mail domains the provider granted them.
    pub domain_grants: bool,
}

/// Everything a reconcile reads and uses to write.
pub struct Context {
    /// The only way to the API server besides the Secrets reader and Events.
    pub reader: Reader,
    pub writer: Writer,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub caches: Caches,
    pub indexes: Indexes,
    pub hasher: PasswordHasher,
    pub prober: Arc<Prober>,
    /// The LDAP directories' readers.
    pub directories: DirectorySync,
    pub last_domain_status: memo::LastWritten<ContinuityDomainStatus>,
    pub triggers: Triggers,
    /// Wakes the transport map writer: a domain's route may have changed.
    pub routes_changed: Notify,
    backoff: Mutex<HashMap<String, u32>>,
}

/// The lookups [`super::relations`] keeps over the watched objects.
pub struct Indexes {
    pub users_by_domain: Index<ContinuityUser, DomainKey, ObjectRef<ContinuityUser>>,
    /// Users by the address they add to a domain: the only siblings a verdict depends on.
    pub users_by_address: Index<ContinuityUser, AddressKey, ObjectRef<ContinuityUser>>,
    pub claims: Index<ContinuityDomain, String, Claim>,
    /// Domains by the Secret their shared emergency passwords are in.
    pub domains_by_secret: Index<ContinuityDomain, SecretKey, ObjectRef<ContinuityDomain>>,
    /// Domains by the Secret their directory is bound with.
    pub domains_by_bind_secret: Index<ContinuityDomain, SecretKey, ObjectRef<ContinuityDomain>>,
    /// Users by the Secret their own emergency password is in.
    pub users_by_secret: Index<ContinuityUser, SecretKey, ObjectRef<ContinuityUser>>,
    /// Each namespace's grant annotation: tells which namespace events change a grant.
    pub grants: Index<PartialObjectMeta<Namespace>, String, String>,
}

/// Queues of objects to reconcile besides those their own watch reports.
pub struct Triggers {
    pub domains: UnboundedSender<ObjectRef<ContinuityDomain>>,
    pub users: UnboundedSender<ObjectRef<ContinuityUser>>,
}

impl Triggers {
    /// Queues the domain `key`.
    pub fn domain(&self, (namespace, name): &DomainKey) {
        // The receiver only goes away when the controllers stop.
        let _ = self.domains.unbounded_send(ObjectRef::new(name).within(namespace));
    }

    /// Queues `user`.
    pub fn user(&self, user: ObjectRef<ContinuityUser>) {
        let _ = self.users.unbounded_send(user);
    }
}

/// The stores and the Secret reader a [`Context`] is made of, from the watches.
pub struct Caches {
    pub domains: Store<ContinuityDomain>,
    pub users: Store<ContinuityUser>,
    pub config_maps: Store<Cached<ConfigMap>>,
    pub owned_secrets: Store<Cached<Secret>>,
    pub services: Store<Cached<Service>>,
    pub endpoints: Store<Cached<Endpoints>>,
    pub network_policies: Store<Cached<NetworkPolicy>>,
    pub stateful_sets: Store<Cached<StatefulSet>>,
    pub deployments: Store<Cached<Deployment>>,
    pub ingresses: Store<Cached<Ingress>>,
    pub secrets: secrets::PasswordSecrets,
    /// Namespaces' metadata (their grants), when grants are enforced.
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
}

/// The parts of a [`Context`] that reach outside the process.
pub struct Connections {
    pub reader: Reader,
    pub writer: Writer,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub prober: Arc<Prober>,
    pub directories: DirectorySync,
    pub triggers: Triggers,
}

fn store_ready<K: reflector::Lookup + Clone + 'static>(store: &Store<K>) -> bool
where
    K::DynamicType: Eq + Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
}

impl Context {
    pub fn new(settings: Settings, caches: Caches, connections: Connections) -> Self {
        use super::relations::{
            index_address, index_bind_secret, index_claim, index_domain_secret, index_grant, index_user,
            index_user_secret,
        };
        Context {
            reader: connections.reader,
            writer: connections.writer,
            recorder: connections.recorder,
            metrics: connections.metrics,
            settings,
            caches,
            indexes: Indexes {
                users_by_domain: Index::new(index_user),
                users_by_address: Index::new(index_address),
                claims: Index::new(index_claim),
                domains_by_secret: Index::new(index_domain_secret),
                domains_by_bind_secret: Index::new(index_bind_secret),
                users_by_secret: Index::new(index_user_secret),
                grants: Index::new(index_grant),
            },
            hasher: PasswordHasher::default(),
            prober: connections.prober,
            directories: connections.directories,
            last_domain_status: memo::LastWritten::default(),
            triggers: connections.triggers,
            routes_changed: Notify::new(),
            backoff: Mutex::new(HashMap::new()),
        }
    }

    /// Whether every cache and index holds its initial list. Reconciling earlier would compute
    /// a status from partial data (a domain with half its users) and write it.
    pub fn synced(&self) -> bool {
        let (c, i) = (&self.caches, &self.indexes);
        store_ready(&c.domains)
            && store_ready(&c.users)
            && store_ready(&c.config_maps)
            && store_ready(&c.owned_secrets)
            && store_ready(&c.services)
            && store_ready(&c.endpoints)
            && store_ready(&c.network_policies)
            && store_ready(&c.stateful_sets)
            && store_ready(&c.deployments)
            && store_ready(&c.ingresses)
            && store_ready(c.secrets.versions())
            && c.namespaces.as_ref().is_none_or(store_ready)
            && i.users_by_domain.synced()
            && i.users_by_address.synced()
            && i.claims.synced()
            && i.domains_by_secret.synced()
            && i.domains_by_bind_secret.synced()
            && i.users_by_secret.synced()
    }

    /// Resolves once [`Context::synced`] holds.
    pub async fn wait_until_synced(&self) {
        // A store's readiness only fails if its writer is dropped, which ends the controllers.
        let (c, i) = (&self.caches, &self.indexes);
        let _ = futures::future::join_all([
            c.domains.wait_until_ready().boxed(),
            c.users.wait_until_ready().boxed(),
            c.config_maps.wait_until_ready().boxed(),
            c.owned_secrets.wait_until_ready().boxed(),
            c.services.wait_until_ready().boxed(),
            c.endpoints.wait_until_ready().boxed(),
            c.network_policies.wait_until_ready().boxed(),
            c.stateful_sets.wait_until_ready().boxed(),
            c.deployments.wait_until_ready().boxed(),
            c.ingresses.wait_until_ready().boxed(),
            c.secrets.versions().wait_until_ready().boxed(),
        ])
        .await;
        if let Some(namespaces) = &c.namespaces {
            let _ = namespaces.wait_until_ready().await;
        }
        futures::join!(
            i.users_by_domain.wait_until_synced(),
            i.users_by_address.wait_until_synced(),
            i.claims.wait_until_synced(),
            i.domains_by_secret.wait_until_synced(),
            i.domains_by_bind_secret.wait_until_synced(),
            i.users_by_secret.wait_until_synced(),
        );
    }

    /// The cached ContinuityUsers referencing the domain `name` in `namespace`.
    pub fn users_of(&self, namespace: &str, name: &str) -> Vec<Arc<ContinuityUser>> {
        self.indexes
            .users_by_domain
            .get(&(namespace.to_owned(), name.to_owned()))
            .iter()
            .filter_map(|user| self.caches.users.get(user))
            .collect()
    }

    /// Whether `namespace` may serve `mail_domain` (always, when grants are not enforced).
    pub fn granted(&self, namespace: &str, mail_domain: &str) -> bool {
        let Some(namespaces) = &self.caches.namespaces else {
            return true;
        };
        let cached = namespaces.get(&ObjectRef::new(namespace));
        let annotation = cached.as_deref().and_then(|ns| {
            ns.metadata
                .annotations
                .as_ref()?
                .get(grants::ANNOTATION)
                .map(String::as_str)
        });
        grants::allows(annotation, mail_domain)
    }

    /// The cached ContinuityUsers adding `address` (normalized) to the domain `name`.
    pub fn users_with_address(&self, namespace: &str, name: &str, address: &str) -> Vec<Arc<ContinuityUser>> {
        self.indexes
            .users_by_address
            .get(&(namespace.to_owned(), name.to_owned(), address.to_owned()))
            .iter()
            .filter_map(|user| self.caches.users.get(user))
            .collect()
    }

    /// When to look again after a successful reconcile: soon if a write is still on its way to
    /// the cache, otherwise at the next resync.
    pub fn recheck_after(&self, outcomes: &[apply::Outcome]) -> Duration {
        if outcomes.contains(&apply::Outcome::AwaitingCache) {
            memo::WINDOW
        } else {
            self.settings.resync
        }
    }

    /// Whether this operator reconciles objects in `namespace`.
    pub fn in_scope(&self, namespace: &str) -> bool {
        self.settings
            .namespace
            .as_deref()
            .is_none_or(|scope| scope == namespace)
    }

    /// The next delay for an object that failed transiently: doubling from 1 s to 5 min, with
    /// a per-object jitter of up to 25 % so that objects failing together (API server down)
    /// do not retry in lockstep.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut attempts = self.backoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let attempt = attempts.entry(key.to_owned()).or_insert(0);
        *attempt = attempt.saturating_add(1);
        let exponent = (*attempt - 1).min(16);
        let base = BACKOFF_MIN.saturating_mul(1 << exponent).min(BACKOFF_MAX);
        jitter::jittered(base, 0.25, (key, *attempt))
    }

    pub fn reset_backoff(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// The backoff key of an object: kind, namespace and name.
pub fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}
