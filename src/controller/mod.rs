//! The reconcile pipeline: kube-runtime Controllers for ContinuityDomains and ContinuityUsers,
//! the caches and indexes they read, and the error policy.
//!
//! Each reconcile is `fetch (from caches) -> validate -> build -> apply -> status`; only
//! [`apply`] and [`events`] write to the API server. Watches:
//! - ContinuityDomains and ContinuityUsers in scope: the two controllers' own caches;
//! - the operator's ConfigMaps (by label): the cache children are compared with, and the
//!   owner triggers for `.owns()`;
//! - ContinuityUsers in scope, feeding the users-by-domain index: a user that appears, moves
//!   or disappears reconciles its old and new domain and its sibling users;
//! - ContinuityDomains in every namespace, feeding the claims index: a claim that appears or
//!   disappears reconciles every in-scope domain claiming the same mail domain, and a domain
//!   that changes reconciles its users.

pub mod apply;
pub mod domain;
pub mod events;
pub mod index;
pub mod memo;
pub mod user;

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
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
use crate::resources;
use crate::shutdown::Shutdown;
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
}

/// Users of a domain are indexed by (namespace, ContinuityDomain name).
type DomainKey = (String, String);

/// Everything a reconcile reads and uses to write.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub domains: Store<ContinuityDomain>,
    pub users: Store<ContinuityUser>,
    pub config_maps: Store<ConfigMap>,
    pub users_by_domain: Index<ContinuityUser, DomainKey, ObjectRef<ContinuityUser>>,
    pub claims: Index<ContinuityDomain, String, Claim>,
    pub memo: memo::WriteMemo,
    backoff: Mutex<HashMap<String, u32>>,
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

fn store_ready<K: reflector::Lookup + Clone + 'static>(store: &Store<K>) -> bool
where
    K::DynamicType: Eq + Hash + Clone,
{
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

impl Context {
    /// Whether every cache and index holds its initial list. Reconciling earlier would compute
    /// a status from partial data (a domain with half its users) and write it.
    pub fn synced(&self) -> bool {
        store_ready(&self.domains)
            && store_ready(&self.users)
            && store_ready(&self.config_maps)
            && self.users_by_domain.synced()
            && self.claims.synced()
    }

    /// The cached ContinuityUsers referencing the domain `name` in `namespace`.
    pub fn users_of(&self, namespace: &str, name: &str) -> Vec<Arc<ContinuityUser>> {
        self.users_by_domain
            .get(&(namespace.to_owned(), name.to_owned()))
            .iter()
            .filter_map(|user| self.users.get(user))
            .collect()
    }

    /// The action after a successful reconcile: look again soon if a write is still on its way
    /// to the cache, otherwise at the next resync.
    fn requeue_after(&self, outcomes: &[apply::Outcome]) -> Action {
        if outcomes.contains(&apply::Outcome::AwaitingCache) {
            Action::requeue(memo::WINDOW)
        } else {
            Action::requeue(self.settings.resync)
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
        let mut attempts = self
            .backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Runs a reconcile, recording its outcome in metrics and the backoff state.
async fn observed<K, F>(
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: fn(Arc<K>, Arc<Context>) -> F,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action>>,
{
    let key = object_key(object.as_ref());
    let result = reconcile(object, ctx.clone()).await;
    if result.is_ok() {
        ctx.reset_backoff(&key);
    }
    result
}

/// Permanent errors wait for the object to change; transient ones back off per object.
fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_failed(&K::kind(&()), error);
    let key = object_key(object.as_ref());
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
fn lean_watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config)
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
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
    let namespace = settings.namespace.as_deref();
    let watch_config = watcher::Config::default().any_semantic();
    let children_config = watch_config.clone().labels(&resources::managed_selector());

    let (domains, domain_writer) = reflector::store();
    let domain_stream = lean_watch(
        scoped::<ContinuityDomain>(&client, namespace),
        watch_config.clone(),
    )
    .reflect(domain_writer)
    .applied_objects();
    let (users, user_writer) = reflector::store();
    let user_stream = lean_watch(
        scoped::<ContinuityUser>(&client, namespace),
        watch_config.clone(),
    )
    .reflect(user_writer)
    .applied_objects();
    let (config_maps, config_map_writer) = reflector::store();
    let config_map_stream = lean_watch(scoped::<ConfigMap>(&client, namespace), children_config)
        .reflect(config_map_writer)
        .touched_objects();

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
        users_by_domain: Index::new(index_user),
        claims: Index::new(index_claim),
        memo: memo::WriteMemo::default(),
        backoff: Mutex::new(HashMap::new()),
    });

    let (domain_triggers, domain_trigger_stream) = unbounded::<ObjectRef<ContinuityDomain>>();
    let (user_triggers, user_trigger_stream) = unbounded::<ObjectRef<ContinuityUser>>();
    let user_feeder = feed_users_index(
        lean_watch(
            scoped::<ContinuityUser>(&client, namespace),
            watch_config.clone(),
        ),
        ctx.clone(),
        domain_triggers.clone(),
        user_triggers.clone(),
    );
    // Claims are checked against every namespace, whatever the scope.
    let claims_feeder = feed_claims_index(
        lean_watch(
            Api::<ContinuityDomain>::all(client.clone()),
            watch_config.clone(),
        ),
        ctx.clone(),
        domain_triggers,
        user_triggers,
    );

    let controller_config = ControllerConfig::default().concurrency(settings.concurrency);
    let domain_controller = Controller::for_stream(domain_stream, domains)
        .with_config(controller_config.clone())
        .owns_stream(config_map_stream)
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
        .graceful_shutdown_on(shutdown.clone().wait())
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

    info!(
        namespace = namespace.unwrap_or("<all>"),
        "controllers starting"
    );
    readiness.set(Phase::Syncing);
    tokio::select! {
        _ = futures::future::join(domain_controller, user_controller) => {}
        _ = futures::future::join(user_feeder, claims_feeder) => {}
        _ = report_synced => {}
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

/// Keeps the users-by-domain index current and reconciles what a user change affects: the
/// domains the user left and joined, and their other users (duplicates may resolve).
async fn feed_users_index(
    watch: impl Stream<Item = Result<watcher::Event<ContinuityUser>, watcher::Error>>,
    ctx: Arc<Context>,
    domain_triggers: UnboundedSender<ObjectRef<ContinuityDomain>>,
    user_triggers: UnboundedSender<ObjectRef<ContinuityUser>>,
) {
    let mut watch = std::pin::pin!(watch);
    while let Some(event) = watch.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                warn!(%error, "watching ContinuityUsers for the domain index");
                continue;
            }
        };
        for (namespace, domain) in ctx.users_by_domain.apply(&event) {
            for user in ctx
                .users_by_domain
                .get(&(namespace.clone(), domain.clone()))
            {
                let _ = user_triggers.unbounded_send(user);
            }
            let _ = domain_triggers.unbounded_send(ObjectRef::new(&domain).within(&namespace));
        }
    }
}

/// Keeps the cluster-wide claims index current; reconciles the in-scope domains claiming a mail
/// domain whose claims changed, and the users of a domain that changed.
async fn feed_claims_index(
    watch: impl Stream<Item = Result<watcher::Event<ContinuityDomain>, watcher::Error>>,
    ctx: Arc<Context>,
    domain_triggers: UnboundedSender<ObjectRef<ContinuityDomain>>,
    user_triggers: UnboundedSender<ObjectRef<ContinuityUser>>,
) {
    let mut watch = std::pin::pin!(watch.map_err(|error| {
        warn!(%error, "watching ContinuityDomains for the claims index");
        error
    }));
    while let Some(event) = watch.next().await {
        let Ok(event) = event else { continue };
        if let watcher::Event::Apply(domain) | watcher::Event::Delete(domain) = &event {
            let namespace = domain.namespace().unwrap_or_default();
            if ctx.in_scope(&namespace) {
                for user in ctx.users_by_domain.get(&(namespace, domain.name_any())) {
                    let _ = user_triggers.unbounded_send(user);
                }
            }
        }
        for mail_domain in ctx.claims.apply(&event) {
            for claim in ctx.claims.get(&mail_domain) {
                if ctx.in_scope(&claim.namespace) {
                    let _ = domain_triggers
                        .unbounded_send(ObjectRef::new(&claim.name).within(&claim.namespace));
                }
            }
        }
    }
}
