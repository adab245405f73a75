//! Assembly: the watches, the [`Context`] built from them, the two kube-runtime Controllers
//! (ContinuityDomains, owning their children; ContinuityUsers), the probe scheduler and the
//! transport map writer, run until shutdown; the error policy and reconcile metrics.

use std::sync::Arc;

use futures::channel::mpsc::unbounded;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tracing::field::Empty;
use tracing::{Instrument, debug, info, info_span, warn};

use super::apply::Writer;
use super::context::{Caches, Connections, Context, Settings, Triggers, backoff_key};
use super::fetch::Reader;
use super::watches::{children, lean_watch, scoped};
use super::{domain, secrets, transport, user};
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::directory::sync::DirectorySync;
use crate::health::probe::ProbeClient;
use crate::health::resolver::Resolver;
use crate::health::scheduler::{DomainKey, Prober};
use crate::readiness::{Phase, Readiness};
use crate::resources;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use crate::{Error, Result};

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
    let (namespaces, namespaces_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
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
        let client = ProbeClient {
            helo: settings.probe_helo.clone(),
            resolver: resolver(&settings),
        };
        Prober::new(
            client,
            settings.max_concurrent_probes,
            settings.widespread,
            metrics.clone(),
            move |(namespace, name): &DomainKey| {
                // The receiver only goes away when the controllers stop.
                let _ = triggers.unbounded_send(ObjectRef::new(name).within(namespace));
            },
        )
    };
    let directories = {
        let triggers = domain_triggers.clone();
        DirectorySync::new(
            resolver(&settings),
            metrics.clone(),
            move |(namespace, name): &DomainKey| {
                let _ = triggers.unbounded_send(ObjectRef::new(name).within(namespace));
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
    let caches = Caches {
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
        namespaces: settings.domain_grants.then_some(namespaces),
    };
    let connections = Connections {
        reader: Reader::new(client.clone()),
        writer: Writer::new(client.clone()),
        recorder,
        metrics,
        prober,
        directories,
        triggers: Triggers {
            domains: domain_triggers,
            users: user_triggers,
        },
    };
    let ctx = Arc::new(Context::new(settings.clone(), caches, connections));

    // Unscoped, the one watch of every ContinuityDomain feeds both the controller's cache and
    // the claims index; scoped, claims are still checked against every namespace.
    let domain_stream = {
        let ctx = ctx.clone();
        let claims_too = scope.is_none();
        lean_watch(scoped::<ContinuityDomain>(&client, scope), watch_config.clone())
            .reflect(domain_writer)
            .inspect_ok(move |event| {
                ctx.domain_changed(event);
                if claims_too {
                    ctx.claims_changed(event);
                }
            })
            .applied_objects()
    };
    let claims_feeder = {
        let (ctx, client, config, scoped_run) = (ctx.clone(), client.clone(), watch_config.clone(), scope.is_some());
        async move {
            if !scoped_run {
                return futures::future::pending().await;
            }
            let watch = lean_watch(Api::<ContinuityDomain>::all(client), config);
            feed(watch, "ContinuityDomains for the claims index", |event| {
                ctx.claims_changed(event)
            })
            .await;
        }
    };
    let user_stream = {
        let ctx = ctx.clone();
        lean_watch(scoped::<ContinuityUser>(&client, scope), watch_config.clone())
            .reflect(user_writer)
            .inspect_ok(move |event| ctx.user_changed(event))
            .applied_objects()
    };
    // Metadata only: a cluster's Secrets can be many and large.
    let secrets_feeder = feed(
        lean_watch(
            scoped::<PartialObjectMeta<Secret>>(&client, scope),
            watch_config.clone(),
        )
        .reflect(secret_versions_writer),
        "Secrets",
        |event| ctx.secret_changed(event),
    );

    // Metadata only, and only when grants are enforced: a namespace's annotation grants its
    // mail domains.
    let namespaces_feeder = {
        let (ctx, client, config, enforced) = (
            ctx.clone(),
            client.clone(),
            watch_config.clone(),
            settings.domain_grants,
        );
        async move {
            if !enforced {
                return futures::future::pending().await;
            }
            let watch = lean_watch(Api::<PartialObjectMeta<Namespace>>::all(client), config).reflect(namespaces_writer);
            feed(watch, "Namespaces for their grants", |event| {
                ctx.namespace_changed(event)
            })
            .await;
        }
    };

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
        ctx.wait_until_synced().await;
        info!("caches synced");
        readiness.set(Phase::Leading);
        futures::future::pending::<()>().await;
    };

    info!(namespace = scope.unwrap_or("<all>"), "controllers starting");
    readiness.set(Phase::Syncing);
    tokio::select! {
        _ = futures::future::join(domain_controller, user_controller) => {}
        () = claims_feeder => {}
        () = namespaces_feeder => {}
        () = secrets_feeder => {}
        () = report_synced => {}
        () = probing => {}
        () = transport::run(ctx.clone()) => {}
    }
    info!("controllers stopped");
}

/// Hands every event of a watch to `handle`; errors are logged (the watch itself retries).
async fn feed<K>(
    watch: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    what: &'static str,
    handle: impl Fn(&watcher::Event<K>),
) {
    watch
        .for_each(|event| {
            match event {
                Ok(event) => handle(&event),
                Err(error) => warn!(%error, "watching {what}"),
            }
            futures::future::ready(())
        })
        .await;
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
    // Every line a reconcile logs carries its object as fields (JSON: under "span").
    let kind = K::kind(&());
    let span = info_span!("reconcile", %kind, namespace = Empty, domain = Empty, user = Empty);
    let meta = object.meta();
    span.record("namespace", meta.namespace.as_deref().unwrap_or_default());
    span.record(
        if kind == "ContinuityUser" { "user" } else { "domain" },
        meta.name.as_deref().unwrap_or_default(),
    );
    let result = reconcile(object, ctx.clone()).instrument(span).await;
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

fn log_outcome<K: Resource, E: std::fmt::Display>(result: Result<(ObjectRef<K>, Action), E>) {
    match result {
        Ok((object, action)) => debug!(%object, ?action, "reconciled"),
        // Reconcile errors are logged by the error policy; these are the runtime's own.
        Err(error) => debug!(%error, "controller runtime"),
    }
}

/// The resolver for names tenants give (primaries, directories): the configured DNS servers,
/// or the system's.
fn resolver(settings: &Settings) -> Resolver {
    if settings.probe_nameservers.is_empty() {
        Resolver::system()
    } else {
        Resolver::with_servers(&settings.probe_nameservers)
    }
}
