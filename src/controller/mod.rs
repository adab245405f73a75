//! The reconcile pipeline: kube-runtime Controllers for ContinuityDomains and ContinuityUsers,
//! the caches and indexes they read, and the error policy.
//!
//! Each reconcile is `fetch (from caches) -> validate -> build -> apply -> status`; only
//! [`apply`] and [`events`] write to the API server. Watches:
//! - ContinuityDomains in scope: the domain controller's cache; a change also reconciles the
//!   domain's users.
//! - ContinuityUsers in scope: the user controller's cache and the users-by-domain index; a
//!   change also reconciles the user's old and new domain and their other users.
//! - The operator's children (by label): ConfigMaps, Secrets, Services, Endpoints,
//!   NetworkPolicies, StatefulSets, Deployments, Ingresses; the caches children are compared
//!   with, the standby's readiness is read from, and the owner triggers of `.owns()`.
//! - The metadata of Secrets: a changed Secret reconciles the domains and users whose
//!   emergency passwords it holds (see [`secrets`]).
//! - ContinuityDomains in every namespace: the claims index; a claim that appears, moves or
//!   disappears reconciles every in-scope domain claiming the same mail domain.
//!
//! Every watch event updates its cache first, then the indexes, and only then triggers the
//! reconciles that depend on it, so a triggered reconcile always reads the change.

pub mod apply;
pub mod domain;
pub mod events;
pub mod index;
pub mod memo;
pub mod secrets;
pub mod transport;
pub mod user;

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use std::time::Duration;
use tokio::sync::Notify;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::api::{ContinuityDomain, ContinuityUser};
use crate::claims::{self, Claim};
use crate::http::{Phase, Readiness};
use crate::resources::{self, Environment};
use crate::shutdown::Shutdown;
use crate::standby::passwords::PasswordHasher;
use crate::telemetry::Metrics;
use crate::{Error, Result};
use index::Index;

/// How long a reconcile that arrives before the caches are synced waits to be retried.
const CACHE_SYNC_RETRY: Duration = Duration::from_millis(500);
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
    /// The transport map ConfigMap (namespace, name); none when `None`.
    pub transport_map: Option<(String, String)>,
}

use crate::health::scheduler::{DomainKey, Prober};

/// Everything a reconcile reads and uses to write.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub domains: Store<ContinuityDomain>,
    pub users: Store<ContinuityUser>,
    pub config_maps: Store<ConfigMap>,
    pub owned_secrets: Store<Secret>,
    pub services: Store<Service>,
    pub endpoints: Store<Endpoints>,
    pub network_policies: Store<NetworkPolicy>,
    pub stateful_sets: Store<StatefulSet>,
    pub deployments: Store<Deployment>,
    pub ingresses: Store<Ingress>,
    /// The Secrets emergency passwords come from.
    pub secrets: secrets::PasswordSecrets,
    pub hasher: PasswordHasher,
    pub prober: Arc<Prober>,
    pub users_by_domain: Index<ContinuityUser, DomainKey, ObjectRef<ContinuityUser>>,
    pub claims: Index<ContinuityDomain, String, Claim>,
    /// Domains by the Secret (namespace, name) their shared emergency passwords are in.
    pub domains_by_secret: Index<ContinuityDomain, DomainKey, ObjectRef<ContinuityDomain>>,
    /// Users by the Secret their own emergency password is in.
    pub users_by_secret: Index<ContinuityUser, DomainKey, ObjectRef<ContinuityUser>>,
    pub memo: memo::WriteMemo,
    pub last_domain_status: memo::LastWritten<crate::api::ContinuityDomainStatus>,
    backoff: Mutex<HashMap<String, u32>>,
    domain_triggers: UnboundedSender<ObjectRef<ContinuityDomain>>,
    user_triggers: UnboundedSender<ObjectRef<ContinuityUser>>,
    /// Wakes the transport map writer: a domain's route may have changed.
    routes_changed: Notify,
}

fn index_user(user: &ContinuityUser) -> Option<(DomainKey, ObjectRef<ContinuityUser>)> {
    Some((
        (user.namespace()?, user.spec.domain_ref.name.clone()),
        ObjectRef::from_obj(user),
    ))
}

fn index_claim(domain: &ContinuityDomain) -> Option<(String, Claim)> {
    Some((claims::claimed_domain(domain).to_owned(), Claim::of(domain)))
}

fn index_domain_secret(domain: &ContinuityDomain) -> Option<(DomainKey, ObjectRef<ContinuityDomain>)> {
    let secret = &domain.spec.emergency_passwords.as_ref()?.secret_ref.name;
    Some(((domain.namespace()?, secret.clone()), ObjectRef::from_obj(domain)))
}

fn index_user_secret(user: &ContinuityUser) -> Option<(DomainKey, ObjectRef<ContinuityUser>)> {
    let secret = &user.spec.emergency_password.as_ref()?.name;
    Some(((user.namespace()?, secret.clone()), ObjectRef::from_obj(user)))
}

fn store_ready<K: reflector::Lookup + Clone + 'static>(store: &Store<K>) -> bool
where
    K::DynamicType: Eq + Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
}

impl Context {
    /// Whether every cache and index holds its initial list. Reconciling earlier would compute
    /// a status from partial data (a domain with half its users) and write it.
    pub fn synced(&self) -> bool {
        store_ready(&self.domains)
            && store_ready(&self.users)
            && store_ready(&self.config_maps)
            && store_ready(&self.owned_secrets)
            && store_ready(&self.services)
            && store_ready(&self.endpoints)
            && store_ready(&self.network_policies)
            && store_ready(&self.stateful_sets)
            && store_ready(&self.deployments)
            && store_ready(&self.ingresses)
            && store_ready(self.secrets.versions())
            && self.users_by_domain.synced()
            && self.claims.synced()
            && self.domains_by_secret.synced()
            && self.users_by_secret.synced()
    }

    /// The cached ContinuityUsers referencing the domain `name` in `namespace`.
    pub fn users_of(&self, namespace: &str, name: &str) -> Vec<Arc<ContinuityUser>> {
        self.users_by_domain
            .get(&(namespace.to_owned(), name.to_owned()))
            .iter()
            .filter_map(|user| self.users.get(user))
            .collect()
    }

    /// When to look again after a successful reconcile: soon if a write is still on its way to
    /// the cache, otherwise at the next resync.
    fn recheck_after(&self, outcomes: &[apply::Outcome]) -> Duration {
        if outcomes.contains(&apply::Outcome::AwaitingCache) {
            memo::WINDOW
        } else {
            self.settings.resync
        }
    }

    fn in_scope(&self, namespace: &str) -> bool {
        self.settings
            .namespace
            .as_deref()
            .is_none_or(|scope| scope == namespace)
    }

    /// The next delay for an object that failed transiently: doubling from 1 s to 5 min, with
    /// a per-object jitter of up to 25 % so that objects failing together (API server down)
    /// do not retry in lockstep.
    fn next_backoff(&self, key: &str) -> Duration {
        let mut attempts = self.backoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let attempt = attempts.entry(key.to_owned()).or_insert(0);
        *attempt = attempt.saturating_add(1);
        let exponent = (*attempt - 1).min(16);
        let base = BACKOFF_MIN.saturating_mul(1 << exponent).min(BACKOFF_MAX);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (key, *attempt).hash(&mut hasher);
        let jitter_percent = u32::try_from(hasher.finish() % 26).unwrap_or(0);
        base + base * jitter_percent / 100
    }

    fn reset_backoff(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Runs a reconcile, recording it (and its duration, success or not) in metrics, and
/// clearing the object's backoff when it succeeds.
async fn observed<K, F>(object: Arc<K>, ctx: Arc<Context>, reconcile: fn(Arc<K>, Arc<Context>) -> F) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action>>,
{
    let started = tokio::time::Instant::now();
    let key = backoff_key(object.as_ref());
    let result = reconcile(object, ctx.clone()).await;
    ctx.metrics.reconciled(&K::kind(&()), started.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(&key);
    }
    result
}

/// Permanent errors wait for the object to change; transient ones back off per object.
fn error_policy<K: Resource<DynamicType = ()>>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(&K::kind(&()), error);
    let key = backoff_key(object.as_ref());
    if error.is_permanent() {
        warn!(object = %key, %error, "reconcile failed; waiting for a change to the object");
        Action::await_change()
    } else {
        let delay = ctx.next_backoff(&key);
        warn!(object = %key, %error, retry_in = ?delay, "reconcile failed; retrying");
        Action::requeue(delay)
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch whose objects are kept without managedFields (a large share of each object that the
/// operator never reads), retried with client-go's backoff.
fn lean_watch<K>(api: Api<K>, config: watcher::Config) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config)
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
}

/// A watch of the operator's children of kind `K` in scope (selected by label), feeding a
/// cache; the stream yields the objects touched, for `.owns()`.
fn children<K>(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + use<K>)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = lean_watch(scoped::<K>(client, namespace), config.clone())
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// Runs both controllers until `shutdown` resolves. `readiness` turns to leading once every
/// cache is synced.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: Shutdown,
) {
    let namespace = settings.namespace.clone();
    let scope = namespace.as_deref();
    let watch_config = watcher::Config::default().any_semantic();
    let children_config = watch_config.clone().labels(&resources::managed_selector());

    let (domains, domain_writer) = reflector::store();
    let (users, user_writer) = reflector::store();
    let (secret_versions, secret_versions_writer) = reflector::store();
    let (config_maps, config_map_stream) = children::<ConfigMap>(&client, scope, &children_config);
    let (owned_secrets, owned_secret_stream) = children::<Secret>(&client, scope, &children_config);
    let (services, service_stream) = children::<Service>(&client, scope, &children_config);
    let (endpoints, endpoints_stream) = children::<Endpoints>(&client, scope, &children_config);
    let (network_policies, network_policy_stream) = children::<NetworkPolicy>(&client, scope, &children_config);
    let (stateful_sets, stateful_set_stream) = children::<StatefulSet>(&client, scope, &children_config);
    let (deployments, deployment_stream) = children::<Deployment>(&client, scope, &children_config);
    let (ingresses, ingress_stream) = children::<Ingress>(&client, scope, &children_config);
    let (domain_triggers, domain_trigger_stream) = unbounded();
    let (user_triggers, user_trigger_stream) = unbounded();
    let (prober, probing) = {
        let triggers = domain_triggers.clone();
        Prober::new(
            settings.probe_helo.clone(),
            settings.max_concurrent_probes,
            metrics.clone(),
            move |(namespace, name): &DomainKey| {
                trigger(&triggers, ObjectRef::new(name).within(namespace));
            },
        )
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "continuity-operator".into(),
            instance: Some(settings.identity.clone()),
        },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder,
        metrics,
        settings: settings.clone(),
        domains: domains.clone(),
        users: users.clone(),
        config_maps,
        owned_secrets,
        services,
        endpoints,
        network_policies,
        stateful_sets,
        deployments,
        ingresses,
        secrets: secrets::PasswordSecrets::new(client.clone(), secret_versions, settings.resync * 2),
        hasher: PasswordHasher::default(),
        prober,
        users_by_domain: Index::new(index_user),
        claims: Index::new(index_claim),
        domains_by_secret: Index::new(index_domain_secret),
        users_by_secret: Index::new(index_user_secret),
        memo: memo::WriteMemo::default(),
        last_domain_status: memo::LastWritten::default(),
        backoff: Mutex::new(HashMap::new()),
        domain_triggers,
        user_triggers,
        routes_changed: Notify::new(),
    });

    let domain_stream = {
        let ctx = ctx.clone();
        lean_watch(scoped::<ContinuityDomain>(&client, scope), watch_config.clone())
            .reflect(domain_writer)
            .inspect_ok(move |event| ctx.domain_changed(event))
            .applied_objects()
    };
    let user_stream = {
        let ctx = ctx.clone();
        lean_watch(scoped::<ContinuityUser>(&client, scope), watch_config.clone())
            .reflect(user_writer)
            .inspect_ok(move |event| ctx.user_changed(event))
            .applied_objects()
    };
    // Metadata only: a cluster's Secrets can be many and large.
    let secrets_feeder = lean_watch(
        scoped::<PartialObjectMeta<Secret>>(&client, scope),
        watch_config.clone(),
    )
    .reflect(secret_versions_writer)
    .for_each(|event| {
        match event {
            Ok(event) => ctx.secret_changed(&event),
            Err(error) => warn!(%error, "watching Secrets"),
        }
        futures::future::ready(())
    });
    // Claims are checked against every namespace, whatever the scope.
    let claims_feeder = lean_watch(Api::<ContinuityDomain>::all(client.clone()), watch_config).for_each(|event| {
        match event {
            Ok(event) => ctx.claims_changed(&event),
            Err(error) => warn!(%error, "watching ContinuityDomains for the claims index"),
        }
        futures::future::ready(())
    });

    let controller_config = ControllerConfig::default().concurrency(settings.concurrency);
    let domain_controller = Controller::for_stream(domain_stream, domains)
        .with_config(controller_config.clone())
        .owns_stream(config_map_stream)
        .owns_stream(owned_secret_stream)
        .owns_stream(service_stream)
        .owns_stream(endpoints_stream)
        .owns_stream(network_policy_stream)
        .owns_stream(stateful_set_stream)
        .owns_stream(deployment_stream)
        .owns_stream(ingress_stream)
        .reconcile_on(domain_trigger_stream)
        .graceful_shutdown_on(shutdown.clone().wait())
        .run(
            |object, ctx| observed(object, ctx, domain::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move { log_outcome(result) });
    let user_controller = Controller::for_stream(user_stream, users)
        .with_config(controller_config)
        .reconcile_on(user_trigger_stream)
        .graceful_shutdown_on(shutdown.wait())
        .run(
            |object, ctx| observed(object, ctx, user::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move { log_outcome(result) });

    let report_synced = async {
        while !ctx.synced() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        info!("caches synced");
        readiness.set(Phase::Leading);
        futures::future::pending::<()>().await;
    };

    info!(namespace = scope.unwrap_or("<all>"), "controllers starting");
    readiness.set(Phase::Syncing);
    tokio::select! {
        _ = futures::future::join(domain_controller, user_controller) => {}
        () = claims_feeder => {}
        () = secrets_feeder => {}
        () = report_synced => {}
        () = probing => {}
        () = transport::run(ctx.clone()) => {}
    }
    info!("controllers stopped");
}

fn log_outcome<K: Resource, E: std::fmt::Display>(result: Result<(ObjectRef<K>, Action), E>) {
    match result {
        Ok((object, action)) => debug!(%object, ?action, "reconciled"),
        // Reconcile errors are logged by the error policy; these are the runtime's own.
        Err(error) => debug!(%error, "controller runtime"),
    }
}

/// Sends a trigger; the receiver only goes away when the controllers stop.
fn trigger<K>(sender: &UnboundedSender<ObjectRef<K>>, object: ObjectRef<K>)
where
    K: Resource,
    K::DynamicType: Eq + Hash + Clone,
{
    let _ = sender.unbounded_send(object);
}

impl Context {
    /// A ContinuityDomain changed (its cache already holds the change): its users are judged
    /// against it. After a relist, which may have missed deletions, every user is.
    fn domain_changed(&self, event: &watcher::Event<ContinuityDomain>) {
        self.domains_by_secret.apply(event);
        match event {
            watcher::Event::Apply(domain) | watcher::Event::Delete(domain) | watcher::Event::InitApply(domain) => {
                let key = (domain.namespace().unwrap_or_default(), domain.name_any());
                for user in self.users_by_domain.get(&key) {
                    trigger(&self.user_triggers, user);
                }
            }
            watcher::Event::InitDone => {
                for user in self.users.state() {
                    trigger(&self.user_triggers, ObjectRef::from_obj(user.as_ref()));
                }
                // A relist may have missed deletions: stop probing domains that are gone.
                let present: Vec<DomainKey> = self
                    .domains
                    .state()
                    .iter()
                    .map(|d| (d.namespace().unwrap_or_default(), d.name_any()))
                    .collect();
                self.prober.retain(&present);
            }
            watcher::Event::Init => {}
        }
        if let watcher::Event::Delete(domain) = event {
            self.reset_backoff(&backoff_key(domain));
            self.prober
                .deregister(&(domain.namespace().unwrap_or_default(), domain.name_any()));
        }
        if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
            self.routes_changed.notify_one();
        }
    }

    /// A ContinuityUser changed (its cache already holds the change): the index learns where
    /// it belongs; the domains it left and joined are recounted and their users re-judged
    /// (a duplicate may now be the first of its address).
    fn user_changed(&self, event: &watcher::Event<ContinuityUser>) {
        self.users_by_secret.apply(event);
        let mut keys = self.users_by_domain.apply(event);
        // An address change leaves the user under the same key, but changes the domain's list.
        if let watcher::Event::Apply(user) | watcher::Event::Delete(user) = event
            && let Some((key, _)) = index_user(user)
            && !keys.contains(&key)
        {
            keys.push(key);
        }
        for (namespace, domain) in keys {
            for user in self.users_by_domain.get(&(namespace.clone(), domain.clone())) {
                trigger(&self.user_triggers, user);
            }
            trigger(&self.domain_triggers, ObjectRef::new(&domain).within(&namespace));
        }
        if let watcher::Event::Delete(user) = event {
            self.reset_backoff(&backoff_key(user));
        }
    }

    /// A Secret appeared, changed or disappeared (its metadata cache already holds the
    /// change): the domains whose shared emergency passwords it holds are reconciled with
    /// their users, and so are the users whose own password it holds, with their domains.
    /// After a relist, every domain and user is.
    fn secret_changed(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let secret = match event {
            watcher::Event::Apply(secret) | watcher::Event::Delete(secret) => secret,
            watcher::Event::InitDone => {
                for domain in self.domains.state() {
                    trigger(&self.domain_triggers, ObjectRef::from_obj(domain.as_ref()));
                }
                for user in self.users.state() {
                    trigger(&self.user_triggers, ObjectRef::from_obj(user.as_ref()));
                }
                return;
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => return,
        };
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        if let watcher::Event::Delete(_) = event {
            self.secrets.forget(&key.0, &key.1);
        }
        for domain in self.domains_by_secret.get(&key) {
            for user in self.users_by_domain.get(&(key.0.clone(), domain.name.clone())) {
                trigger(&self.user_triggers, user);
            }
            trigger(&self.domain_triggers, domain);
        }
        for user in self.users_by_secret.get(&key) {
            if let Some(cached) = self.users.get(&user) {
                trigger(
                    &self.domain_triggers,
                    ObjectRef::new(&cached.spec.domain_ref.name).within(&key.0),
                );
            }
            trigger(&self.user_triggers, user);
        }
    }

    /// A claim on a mail domain appeared, moved or disappeared: every in-scope domain claiming
    /// the same mail domain is reconciled, so a conflict starts or ends.
    fn claims_changed(&self, event: &watcher::Event<ContinuityDomain>) {
        for mail_domain in self.claims.apply(event) {
            for claim in self.claims.get(&mail_domain) {
                if self.in_scope(&claim.namespace) {
                    trigger(
                        &self.domain_triggers,
                        ObjectRef::new(&claim.name).within(&claim.namespace),
                    );
                }
            }
        }
    }
}
