//! Scale: the operator (release build) against a test control plane of its own, with one
//! SMTP listener per domain in this process (port 0 each), at 1,000 domains or as many as
//! asked.
//!
//!     cargo bench --bench scale [-- DOMAINS ...]        (default 1000; the note's: 1000 10000)
//!
//! Each count runs on a fresh control plane started without a controller manager, so no pods
//! are made: the benchmark reports the standby workloads ready itself, as a kubelet would
//! through their status, and the figures are the operator's and the API server's alone. It
//! prints, per count:
//! - `converged`: time from the operator's start until every domain has a status for its
//!   generation, then until every one is `Armed` once its standby is reported ready;
//! - `steady`: operator RSS (and per 1,000 domains), CPU seconds per second, and API writes
//!   per minute while every primary is healthy, counted in the API server's audit log
//!   (requests with the operator's User-Agent, its Lease aside);
//! - `outage`: writes in the minute after half the primaries start answering 421, and in the
//!   minute after that (failed over, or held, and waiting);
//! - `restart`: after SIGTERM and a new operator, the time until every domain was probed
//!   (a per-domain metric series exists), until as many domain reconciles as domains ran, and
//!   the writes in the minute after the restart; RSS then.
//!
//! Probes run every 5 s (timeout 2 s, thresholds 3 and 2).

#[allow(dead_code)]
#[path = "../tests/integration/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::{DomainPhase, RouteTarget};
use continuity_operator::validation::grants;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use common::{AuditLog, Operator, OperatorOptions};
use continuity_operator::resources::cached::{Cached, Keep};

/// Domains per namespace, as a provider with a namespace per customer of a few domains each.
const PER_NAMESPACE: usize = 100;
/// How long a window of writes is counted.
const MINUTE: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if let [flag, count] = &args[..]
        && flag == "--one"
    {
        let count = count.parse().expect("a domain count");
        return tokio::runtime::Runtime::new().expect("runtime").block_on(one(count));
    }
    let counts: Vec<usize> = match args.iter().map(|a| a.parse()).collect::<Result<Vec<_>, _>>() {
        Ok(counts) if !counts.is_empty() => counts,
        _ => vec![1000],
    };
    // A control plane per count, in a process per count (the test helpers keep one
    // kubeconfig per process).
    for count in counts {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("scale-{}-{count}", std::process::id()));
        let started = std::process::Command::new(common::repo().join("hack/control-plane.sh"))
            .arg("start")
            .arg(&dir)
            .args([
                "--watch-pid",
                &std::process::id().to_string(),
                "--no-controller-manager",
            ])
            .status()
            .expect("running hack/control-plane.sh");
        assert!(started.success(), "hack/control-plane.sh start failed");
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(["--one", &count.to_string()])
            .env("CONTINUITY_TEST_KUBECONFIG", dir.join("kubeconfig"))
            .status()
            .expect("running one count");
        let _ = std::process::Command::new(common::repo().join("hack/control-plane.sh"))
            .arg("stop")
            .arg(&dir)
            .status();
        assert!(status.success(), "the run with {count} domains failed");
    }
}

/// One SMTP listener per domain; `down` makes every one of the first half greet 421.
struct Primaries {
    ports: Vec<u16>,
    down: Vec<Arc<AtomicBool>>,
}

async fn listeners(count: usize) -> Primaries {
    let mut ports = Vec::with_capacity(count);
    let mut down = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a listener");
        ports.push(listener.local_addr().expect("its address").port());
        let failing = Arc::new(AtomicBool::new(false));
        down.push(failing.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let failing = failing.load(Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = serve(stream, failing).await;
                });
            }
        });
    }
    Primaries { ports, down }
}

/// 220, EHLO -> 250, QUIT -> 221; or, failing, 421 and close.
async fn serve(stream: tokio::net::TcpStream, failing: bool) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut session = BufReader::new(stream);
    if failing {
        session.get_mut().write_all(b"421 scale.test unavailable\r\n").await?;
        return session.get_mut().shutdown().await;
    }
    session.get_mut().write_all(b"220 scale.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if session.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        if command.starts_with("EHLO") || command.starts_with("HELO") {
            session.get_mut().write_all(b"250 scale.test\r\n").await?;
        } else if command.starts_with("QUIT") {
            session.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            session.get_mut().write_all(b"502 no\r\n").await?;
        }
    }
}

fn domain(name: &str, mail: &str, port: u16) -> ContinuityDomain {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "continuity.mailops.io/v1alpha1",
        "kind": "ContinuityDomain",
        "metadata": { "name": name },
        "spec": {
            "domain": mail,
            "primary": { "host": "localhost", "port": port },
            "healthCheck": {
                "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3,
                "successThreshold": 2, "minFlipIntervalSeconds": 10,
            },
        },
    }))
    .expect("a domain")
}

fn key(index: usize) -> (String, String) {
    (format!("scale-{}", index / PER_NAMESPACE), format!("d{index}"))
}

/// The operator's resident memory and CPU time so far, from /proc.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    (rss_kib * 1024, ticks as f64 / 100.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The operator's writes since `audit`'s mark, over every namespace, by resource and verb.
fn writes(audit: &AuditLog) -> (usize, BTreeMap<String, usize>) {
    let counts = audit.operator_writes(None);
    (counts.values().sum(), counts)
}

async fn every_domain<F>(domains: &Api<ContinuityDomain>, count: usize, done: F)
where
    F: Fn(&ContinuityDomain) -> bool,
{
    // A list of every domain is heavy for the API server the operator needs: the pause grows
    // with the count (2 s at 1,000, 20 s at 10,000), at the price of that much resolution.
    let pause = Duration::from_secs(2).max(Duration::from_millis(2 * count as u64));
    loop {
        let list = domains.list(&ListParams::default()).await;
        if list.is_ok_and(|list| list.items.iter().filter(|d| done(d)).count() >= count) {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

/// Reports every standby ready through its workloads' status, as a kubelet and the
/// controllers would.
async fn standbys_ready(client: &Client, count: usize) {
    futures::stream::iter(0..count)
        .map(|index| {
            let client = client.clone();
            async move {
                let (namespace, name) = key(index);
                let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
                let deployments: Api<Deployment> = Api::namespaced(client, &namespace);
                let set = format!("{name}-standby-mail");
                let webmail = format!("{name}-webmail");
                // Applied in the same reconcile that wrote the status, or, after a transient
                // error, in one soon after.
                let mut tries = 0;
                let (set_object, deployment) = loop {
                    match (sets.get(&set).await, deployments.get(&webmail).await) {
                        (Ok(set_object), Ok(deployment)) => break (set_object, deployment),
                        _ if tries < 120 => tries += 1,
                        (set_error, deployment_error) => {
                            let status = Api::<ContinuityDomain>::namespaced(sets.into_client(), &namespace)
                                .get(&name)
                                .await
                                .map(|d| format!("{:?}", d.status));
                            return Err(format!(
                                "{namespace}/{name}: workloads missing ({:?}, {:?}); status {status:?}",
                                set_error.err(),
                                deployment_error.err()
                            ));
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                };
                let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let set_status = serde_json::json!({ "status": {
                    "observedGeneration": set_object.metadata.generation, "replicas": 1,
                    "readyReplicas": 1, "updatedReplicas": 1, "currentReplicas": 1 } });
                let deployment_status = serde_json::json!({ "status": {
                    "observedGeneration": deployment.metadata.generation, "replicas": replicas,
                    "readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas } });
                let params = PatchParams::default();
                sets.patch_status(&set, &params, &Patch::Merge(&set_status))
                    .await
                    .map_err(|e| e.to_string())?;
                deployments
                    .patch_status(&webmail, &params, &Patch::Merge(&deployment_status))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("reporting the standbys ready");
}

/// What the operator's caches hold, per kind: the domains as their watch keeps them (without
/// managedFields and `kubectl apply`'s copy), the children in their
/// [cached](continuity_operator::resources::cached) form, by their JSON size, a proxy for
/// their memory.
async fn cached_split(client: &Client, count: usize) {
    async fn listed<K>(client: &Client, selector: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let params = match selector {
            Some(selector) => ListParams::default().labels(selector),
            None => ListParams::default(),
        };
        Api::<K>::all(client.clone())
            .list(&params)
            .await
            .expect("listing")
            .items
    }
    fn json_bytes<T: serde::Serialize>(objects: impl IntoIterator<Item = T>) -> usize {
        objects
            .into_iter()
            .map(|object| serde_json::to_vec(&object).map_or(0, |json| json.len()))
            .sum()
    }
    async fn cached<K: Keep + Clone + std::fmt::Debug>(client: &Client, selector: &str) -> usize {
        json_bytes(listed::<K>(client, Some(selector)).await.into_iter().map(Cached::from))
    }
    let domains = listed::<ContinuityDomain>(client, None)
        .await
        .into_iter()
        .map(|mut domain| {
            domain.managed_fields_mut().clear();
            domain
                .annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
            domain
        });
    let managed = continuity_operator::resources::managed_selector();
    let managed = managed.as_str();
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::networking::v1 as networking;
    let kinds = [
        ("ContinuityDomain", json_bytes(domains)),
        ("ConfigMap", cached::<core::ConfigMap>(client, managed).await),
        ("Secret", cached::<core::Secret>(client, managed).await),
        ("Service", cached::<core::Service>(client, managed).await),
        ("Endpoints", cached::<core::Endpoints>(client, managed).await),
        (
            "NetworkPolicy",
            cached::<networking::NetworkPolicy>(client, managed).await,
        ),
        ("StatefulSet", cached::<StatefulSet>(client, managed).await),
        ("Deployment", cached::<Deployment>(client, managed).await),
        ("Ingress", cached::<networking::Ingress>(client, managed).await),
    ];
    let total: usize = kinds.iter().map(|(_, bytes)| bytes).sum();
    let split: Vec<String> = kinds
        .iter()
        .map(|(name, bytes)| format!("{name} {:.1} KiB", *bytes as f64 / 1024.0 / count as f64))
        .collect();
    println!(
        "scale {count}: cached objects as JSON: {:.1} MiB, per domain {:.1} KiB: {}",
        mib(total as u64),
        total as f64 / 1024.0 / count as f64,
        split.join(", ")
    );
}

/// Waits until the operator sent no write for `span` (by its own count).
/// The status writes the operator counted as heartbeats (nothing but the probe details
/// refreshed) since it started: the audit log cannot tell them from the others.
async fn heartbeats(operator: &Operator) -> f64 {
    operator
        .metric(r#"continuity_api_writes_total{resource="ContinuityDomain",operation="heartbeat"}"#)
        .await
}

/// Waits until the operator wrote no child and no Event for `span`: the flips are over.
/// Status writes do not count: at 10,000 domains the heartbeat writes some every second.
async fn quiet_for(operator: &Operator, span: Duration) {
    async fn flip_writes(operator: &Operator) -> f64 {
        let metrics = operator.metrics().await;
        metrics
            .lines()
            .filter(|l| l.starts_with("continuity_api_writes_total{") && !l.contains(r#"operation="status""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
    loop {
        let before = flip_writes(operator).await;
        tokio::time::sleep(span).await;
        if flip_writes(operator).await == before {
            return;
        }
    }
}

fn start_operator(kubeconfig: &Path) -> Operator {
    let mut options = OperatorOptions::scoped("");
    options.kubeconfig = kubeconfig.to_owned();
    options.lease_namespace = Some("default".into());
    options.lease_name = "continuity-operator-scale".into();
    // Per-probe debug lines would be most of its work.
    options.log_filter = "info".into();
    Operator::start(options)
}

async fn one(count: usize) {
    let kubeconfig = common::kubeconfig().to_owned();
    let client = common::client().await;
    let primaries = listeners(count).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for index in (0..count).step_by(PER_NAMESPACE) {
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(key(index).0),
                // The provider's grant: cluster-wide, namespaces serve only granted domains.
                annotations: Some([(grants::ANNOTATION.to_owned(), "*.scale.example.test".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let _ = namespaces.create(&PostParams::default(), &namespace).await;
    }
    let created = Instant::now();
    futures::stream::iter(0..count)
        .map(|index| {
            let client = client.clone();
            let port = primaries.ports[index];
            async move {
                let (namespace, name) = key(index);
                let api: Api<ContinuityDomain> = Api::namespaced(client, &namespace);
                api.create(
                    &PostParams::default(),
                    &domain(&name, &format!("{name}.scale.example.test"), port),
                )
                .await
                .map(drop)
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("creating the domains");
    println!(
        "scale {count}: created {count} domains in {:.1}s",
        created.elapsed().as_secs_f64()
    );

    let domains: Api<ContinuityDomain> = Api::all(client.clone());
    let mut operator = start_operator(&kubeconfig);
    let started = Instant::now();
    every_domain(&domains, count, |d| {
        d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
    })
    .await;
    let with_status = started.elapsed();
    standbys_ready(&client, count).await;
    every_domain(&domains, count, |d| {
        d.status.as_ref().and_then(|s| s.phase) == Some(DomainPhase::Armed)
    })
    .await;
    println!(
        "scale {count}: converged: every domain has a status for its generation {:.1}s after the operator started; all Armed after {:.1}s",
        with_status.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    cached_split(&client, count).await;

    // Healthy.
    let pid = operator.pid();
    let audit = AuditLog::mark();
    let beats = heartbeats(&operator).await;
    let (_, cpu_before) = usage(pid);
    tokio::time::sleep(MINUTE).await;
    let (rss, cpu_after) = usage(pid);
    let (healthy_writes, by_kind) = writes(&audit);
    println!(
        "scale {count}: steady: RSS {:.1} MiB ({:.1} MiB per 1,000 domains), CPU {:.3} s/s, {healthy_writes} writes per minute ({:.3} per domain; {} status heartbeats) {by_kind:?}",
        mib(rss),
        mib(rss) * 1000.0 / count as f64,
        (cpu_after - cpu_before) / MINUTE.as_secs_f64(),
        healthy_writes as f64 / count as f64,
        heartbeats(&operator).await - beats
    );

    // Half the primaries fail.
    for down in primaries.down.iter().take(count / 2) {
        down.store(true, Ordering::Relaxed);
    }
    let outage = Instant::now();
    let audit = AuditLog::mark();
    tokio::time::sleep(MINUTE).await;
    let (outage_writes, by_kind) = writes(&audit);
    // The failovers themselves (about five writes each) outlast that minute at 10,000 domains:
    // the failed-over steady state starts once every failing primary's domain is on its
    // standby and the others are still on theirs.
    let failing = count / 2;
    every_domain(&domains, count, |d| {
        let index: usize = d.name_any().trim_start_matches('d').parse().unwrap_or(usize::MAX);
        let expected = if index < failing {
            RouteTarget::Standby
        } else {
            RouteTarget::Primary
        };
        d.status.as_ref().and_then(|s| s.routing.as_ref()).map(|r| r.target) == Some(expected)
    })
    .await;
    let failed_over = outage.elapsed();
    let audit = AuditLog::mark();
    let beats = heartbeats(&operator).await;
    tokio::time::sleep(MINUTE).await;
    let (waiting_writes, waiting_by_kind) = writes(&audit);
    let waiting_beats = heartbeats(&operator).await - beats;
    let widespread = operator.metric("continuity_widespread_failure").await;
    println!(
        "scale {count}: outage of half the primaries: {outage_writes} writes in its first minute {by_kind:?}; every failover done {:.1}s after the outage began; then {waiting_writes} writes in a minute ({:.3} per domain; {waiting_beats} status heartbeats) {waiting_by_kind:?}; failovers held as widespread: {}",
        failed_over.as_secs_f64(),
        waiting_writes as f64 / count as f64,
        widespread == 1.0
    );
    for down in &primaries.down {
        down.store(false, Ordering::Relaxed);
    }
    // Back to healthy (failback after the hold), before the restart.
    every_domain(&domains, count, |d| {
        let status = d.status.as_ref();
        status.and_then(|s| s.phase) == Some(DomainPhase::Armed)
            && status
                .and_then(|s| common::condition(&s.conditions, "PrimaryReachable"))
                .is_some_and(|c| c.0 == "True")
    })
    .await;
    quiet_for(&operator, Duration::from_secs(20)).await;

    // Restart.
    let exit = operator.terminate().await;
    assert!(exit.success(), "the operator exits cleanly: {exit}");
    let audit = AuditLog::mark();
    let operator = start_operator(&kubeconfig);
    let restarted = Instant::now();
    let mut probed_at = None;
    let mut resynced_at = None;
    while probed_at.is_none() || resynced_at.is_none() {
        let metrics = operator.metrics().await;
        let probed = metrics
            .lines()
            .filter(|l| l.starts_with("continuity_primary_up{"))
            .count();
        // Domains only: the benchmark makes no ContinuityUsers.
        let reconciled = common::metric_sum(&metrics, "continuity_reconciliations_total");
        if probed >= count && probed_at.is_none() {
            probed_at = Some(restarted.elapsed());
        }
        if reconciled >= count as f64 && resynced_at.is_none() {
            resynced_at = Some(restarted.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let remaining = MINUTE.saturating_sub(restarted.elapsed());
    tokio::time::sleep(remaining).await;
    let (restart_writes, by_kind) = writes(&audit);
    let restart_beats = heartbeats(&operator).await;
    let (rss, _) = usage(operator.pid());
    println!(
        "scale {count}: restart: every domain probed {:.1}s after the start, {count} domain reconciles after {:.1}s; {restart_writes} writes in the first minute ({} status heartbeats, {} other writes) {by_kind:?}; RSS {:.1} MiB",
        probed_at.unwrap_or_default().as_secs_f64(),
        resynced_at.unwrap_or_default().as_secs_f64(),
        restart_beats,
        restart_writes as f64 - restart_beats,
        mib(rss)
    );
}
