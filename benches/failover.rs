//! Detect-to-flip latency: from the moment a primary dies to the moment its next-hop Service
//! points at the standby in the API server, with 1 s probes and failureThreshold 3 (SPEC 5:
//! p99 <= 5 s).
//!
//!     cargo bench --bench failover [-- FAILOVERS]
//!
//! Runs the operator binary against the test control plane (CONTINUITY_TEST_KUBECONFIG, or
//! one it starts), with one scripted primary per domain; the primaries are stopped one after
//! another at staggered moments, so each failover starts at a random point of its domain's
//! probe cycle, and a watch on the Services records when each flip lands.

#[allow(dead_code)]
#[path = "../tests/integration/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/integration/peers.rs"]
mod peers;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use continuity_operator::api::ContinuityDomain;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use common::{Scene, domain_yaml, wait_for};
use peers::{Behavior, Peer};

fn main() {
    let failovers: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(30);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(failovers));
}

async fn run(failovers: usize) {
    let scene = Scene::new("bench-failover").await;
    let mut primaries = Vec::new();
    for i in 0..failovers {
        let primary = Peer::start(Behavior::Smtp(None)).await;
        let mail = format!("d{i}.{}", scene.mail);
        let yaml = domain_yaml(&format!("d{i}"), &mail).replace(
            &format!("host: mx.{mail}"),
            &format!(
                "host: localhost\n    port: {}\n  healthCheck:\n    periodSeconds: 1\n    timeoutSeconds: 1\n    failureThreshold: 3",
                primary.port
            ),
        );
        scene.apply(&yaml).await;
        primaries.push(Some(primary));
    }
    let domains: Api<ContinuityDomain> = scene.api();
    wait_for("every primary probed healthy", Duration::from_secs(120), || async {
        let list = domains.list(&Default::default()).await.ok()?;
        let healthy = list
            .items
            .iter()
            .filter(|d| {
                d.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "PrimaryReachable" && c.status == "True")
                })
            })
            .count();
        (healthy == failovers).then_some(())
    })
    .await;

    // Record when each next-hop Service starts pointing at the standby.
    let services: Api<Service> = scene.api();
    let standby_suffix = format!("-standby-mail.{}.svc.cluster.local", scene.namespace);
    let (flipped_tx, mut flipped) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(services, watcher::Config::default()).applied_objects());
        while let Some(Ok(service)) = stream.next().await {
            let points_at_standby = service
                .spec
                .as_ref()
                .and_then(|s| s.external_name.as_deref())
                .is_some_and(|name| name.ends_with(&standby_suffix));
            if points_at_standby {
                let name = service.metadata.name.unwrap_or_default();
                let _ = flipped_tx.send((name.trim_end_matches("-next-hop").to_owned(), Instant::now()));
            }
        }
    });

    let mut killed_at = HashMap::new();
    for (i, primary) in primaries.iter_mut().enumerate() {
        // 0.7 s apart plus a varying part, so kills land all over the 1 s probe cycle.
        tokio::time::sleep(Duration::from_millis(700 + (i as u64 * 137) % 300)).await;
        killed_at.insert(format!("d{i}"), Instant::now());
        primary.take();
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = HashMap::new();
    while seen.len() < failovers && Instant::now() < deadline {
        if let Ok(Some((name, at))) = tokio::time::timeout(Duration::from_secs(1), flipped.recv()).await
            && let Some(killed) = killed_at.get(&name)
            && !seen.contains_key(&name)
        {
            seen.insert(name, at);
            latencies.push(at.duration_since(*killed));
        }
    }
    watch.abort();
    assert_eq!(latencies.len(), failovers, "every failover is seen within 60 s");

    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!("detect-to-flip latency over {failovers} failovers (1 s probes, failureThreshold 3)");
    println!(
        "  min {:?}  p50 {:?}  mean {:?}  p99 {:?}  max {:?}",
        latencies[0],
        percentile(0.50),
        mean,
        percentile(0.99),
        latencies[latencies.len() - 1]
    );
    println!("  target: p99 <= 5 s");
}
