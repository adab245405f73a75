//! The operator binary: serves health and metrics, takes part in leader election, and runs the
//! controllers while it leads.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kube::Client;
use tracing::{error, info};

use continuity_operator::config::{Config, Switch};
use continuity_operator::controller::{self, Settings};
use continuity_operator::http;
use continuity_operator::leader::{Leadership, Timing};
use continuity_operator::readiness::{Phase, Readiness};
use continuity_operator::telemetry::{Metrics, logging};
use continuity_operator::webhook::{self, Webhook};
use continuity_operator::{Result, shutdown};

/// jemalloc rather than glibc's malloc: the initial lists of a restart arrive as whole
/// responses (tens of MiB at 10,000 domains, leaned object by object as they are read), and
/// glibc kept the memory they passed through resident long after; jemalloc hands it back.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    logging::init(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(%error, "exiting");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<()> {
    config.check()?;
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let (bound, server) = http::bind(config.http_addr, metrics.clone(), readiness.clone()).await?;
    info!(addr = %bound, "serving /healthz, /readyz and /metrics");
    tokio::spawn(server);

    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(async move {
        shutdown::signal().await;
        info!("shutdown requested");
        trigger.fire();
    });

    // Named in the API server's audit log and metrics as itself, not as a generic client.
    let mut kube_config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    kube_config.headers.push((
        ::http::header::USER_AGENT,
        ::http::HeaderValue::from_static(continuity_operator::USER_AGENT),
    ));
    let client = Client::try_from(kube_config.clone())?;
    let lease_namespace = config
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let gateway_namespace = config
        .transport_map_namespace
        .clone()
        .unwrap_or_else(|| lease_namespace.clone());
    let environment = config.environment(&gateway_namespace)?;
    if let Some(dir) = &config.webhook_cert_dir {
        // Every replica answers admission requests, leading or not.
        let tls = webhook::certs::ReloadingCert::load(dir)?.server_config()?;
        let webhook = Webhook::new(
            client.clone(),
            environment.clone(),
            config.domain_grants == Switch::On,
            metrics.clone(),
        );
        let (_, serve) = webhook::bind(config.webhook_addr, tls, webhook.clone()).await?;
        tokio::spawn(serve);
        tokio::spawn(webhook.watch_claims());
    }
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    let mut leadership = Leadership::start(
        kube_config,
        lease_namespace.clone(),
        config.lease_name.clone(),
        identity.clone(),
        Timing {
            lease_duration: config.lease_duration,
            renew_deadline: config.renew_deadline,
            retry_period: config.retry_period,
        },
    );

    readiness.set(Phase::Standby);
    tokio::select! {
        acquired = leadership.acquired() => acquired?,
        () = shutdown.clone().wait() => return Ok(()),
    }
    metrics.set_leader(true);

    let transport_map =
        (!config.transport_map_name.is_empty()).then(|| (gateway_namespace.clone(), config.transport_map_name.clone()));
    let settings = Settings {
        namespace: config.namespace.clone(),
        concurrency: config.max_concurrent_reconciles,
        resync: config.resync_interval,
        identity,
        environment,
        status_heartbeat: config.status_heartbeat,
        probe_helo: config.probe_helo_name.clone().unwrap_or_else(host_name),
        max_concurrent_probes: config.max_concurrent_probes,
        probe_nameservers: config.nameservers()?,
        widespread: config.widespread_threshold(),
        transport_map,
        domain_grants: config.domain_grants == Switch::On,
    };
    controller::preflight::gateway_namespace(&client, &settings.environment.gateway.namespace_labels).await;
    let controllers = controller::run(client, settings, metrics.clone(), readiness.clone(), shutdown);
    tokio::select! {
        () = controllers => {}
        lost = leadership.lost() => {
            // Another replica may already act; stop at once so two never reconcile together.
            metrics.set_leader(false);
            return Err(lost);
        }
    }
    readiness.set(Phase::Stopping);
    metrics.set_leader(false);
    leadership.release().await
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "continuity-operator".into())
}

fn default_identity() -> String {
    format!("{}-{}", host_name(), std::process::id())
}
