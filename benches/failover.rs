//! Detect-to-flip latency: from the moment a primary dies to the moment its next-hop Service
//! points at the standby in the API server, with 1 s probes and failureThreshold 3 (SPEC 5:
//! p99 <= 5 s), without and with a 200 ms `fastRetryMilliseconds` (goal: p99 <= 1.5 s).
//!
//!     cargo bench --bench failover [-- FAILOVERS]
//!
//! Runs the operator binary against the test control plane (CONTINUITY_TEST_KUBECONFIG, or
//! one it starts), with one scripted primary per domain. A primary dies in one of two ways:
//! it stops listening (probes are refused), or it goes silent (it accepts connections and
//! never greets, so probes time out after their 1 s timeout). FAILOVERS of each kind and
//! retry setting (30 by default) happen one after another at staggered moments, so each
//! starts at a random point of its domain's probe cycle, and a watch on the Services records
//! when each flip lands. As many more primaries (with the fast retry) fail exactly once, a
//! silent spell that one probe meets: none of them may flip.

#[allow(dead_code)]
#[path = "../tests/integration/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/integration/peers.rs"]
mod peers;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Scene, domain_yaml, wait_for};
use continuity_operator::api::ContinuityDomain;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use peers::{Behavior, Peer};

/// How a primary dies.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Death {
    /// It stops listening: probes are refused.
    Refused,
    /// It accepts connections and never greets: probes time out.
    Silent,
    /// It is silent for one probe, then serves again: a single failure, which must not flip.
    Blip,
}

/// What the domain's health check says after a failure.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Retry {
    /// The next probe after `periodSeconds`.
    Period,
    /// `fastRetryMilliseconds: 200`.
    Fast,
}

const FAST_RETRY_MS: u64 = 200;

fn main() {
    let failovers: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(30);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(failovers));
}

async fn run(per_kind: usize) {
    // Every primary dies here, one after another: failovers must not be held as a widespread
    // failure of the operator's own network.
    let scene = Scene::with_flags("bench-failover", &["--widespread-failure-share=1"]).await;
    let kinds = [
        (Death::Refused, Retry::Period),
        (Death::Silent, Retry::Period),
        (Death::Refused, Retry::Fast),
        (Death::Silent, Retry::Fast),
        (Death::Blip, Retry::Fast),
    ];
    let deaths: Vec<(Death, Retry)> = (0..kinds.len() * per_kind).map(|i| kinds[i % kinds.len()]).collect();
    let mut primaries = Vec::new();
    for (i, (_, retry)) in deaths.iter().enumerate() {
        let primary = Peer::start(Behavior::Smtp(None)).await;
        let mail = format!("d{i}.{}", scene.mail);
        let fast = match retry {
            Retry::Period => String::new(),
            Retry::Fast => format!("\n    fastRetryMilliseconds: {FAST_RETRY_MS}"),
        };
        let yaml = domain_yaml(&format!("d{i}"), &mail).replace(
            &format!("host: mx.{mail}"),
            &format!(
                "host: localhost\n    port: {}\n  healthCheck:\n    periodSeconds: 1\n    timeoutSeconds: 1\n    failureThreshold: 3{fast}",
                primary.port
            ),
        );
        scene.apply(&yaml).await;
        primaries.push(Some(primary));
    }
    let domains: Api<ContinuityDomain> = scene.api();
    wait_for("every primary probed healthy", Duration::from_secs(120), || async {
        (holding(&domains, "PrimaryReachable").await? == deaths.len()).then_some(())
    })
    .await;
    // A standby that is not ready is never failed over to: make them ready, as kubelets would.
    wait_for("every standby ready", Duration::from_secs(120), || async {
        common::set_pods_ready(&scene, "standby-mail", true).await;
        common::set_pods_ready(&scene, "webmail", true).await;
        (holding(&domains, "StandbyReady").await? == deaths.len()).then_some(())
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

    let mut died_at = HashMap::new();
    let mut blips = Vec::new();
    for (i, (primary, kind)) in primaries.iter_mut().zip(&deaths).enumerate() {
        // 0.7 s apart plus a varying part, so deaths land all over the 1 s probe cycle.
        tokio::time::sleep(Duration::from_millis(700 + (i as u64 * 137) % 300)).await;
        died_at.insert(format!("d{i}"), (Instant::now(), *kind));
        match kind.0 {
            Death::Refused => drop(primary.take()),
            Death::Silent => primary.as_ref().expect("alive").go_silent(),
            Death::Blip => {
                // Silent a little longer than a probe's timeout: the probe it meets times
                // out, and the next one (the fast retry, 200 ms after that) is answered.
                let peer = primary.take().expect("alive");
                peer.go_silent();
                blips.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1100)).await;
                    peer.set_silent(false);
                    peer
                }));
            }
        }
    }
    let expected = deaths.iter().filter(|(death, _)| *death != Death::Blip).count();
    let mut latencies: HashMap<(Death, Retry), Vec<Duration>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut blips_flipped = 0;
    // Long enough for any blip that were to flip to do so (three failures, at most 4 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settled_at = None;
    while Instant::now() < deadline && settled_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(10)) {
        if let Ok(Some((name, at))) = tokio::time::timeout(Duration::from_secs(1), flipped.recv()).await
            && let Some((died, kind)) = died_at.get(&name)
            && seen.insert(name)
        {
            match kind.0 {
                Death::Blip => blips_flipped += 1,
                _ => latencies.entry(*kind).or_default().push(at.duration_since(*died)),
            }
        }
        if settled_at.is_none() && seen.len() >= expected {
            settled_at = Some(Instant::now());
        }
    }
    watch.abort();
    drop(futures::future::join_all(blips).await);
    assert_eq!(
        seen.len() - blips_flipped,
        expected,
        "every failover is seen within 60 s"
    );

    println!(
        "detect-to-flip latency, 1 s probes (timeout 1 s), failureThreshold 3 (target: p99 <= 5 s; with a {FAST_RETRY_MS} ms fast retry: p99 <= 1.5 s)"
    );
    for kind in kinds.iter().filter(|(death, _)| *death != Death::Blip) {
        let mut samples = latencies.remove(kind).unwrap_or_default();
        samples.sort();
        let percentile = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
        let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap_or(1);
        let retry = match kind.1 {
            Retry::Period => "next probe after the period".to_owned(),
            Retry::Fast => format!("fast retry {FAST_RETRY_MS} ms"),
        };
        println!(
            "  {:<8} {retry:<28} {} failovers: min {:.2?}  p50 {:.2?}  mean {:.2?}  p99 {:.2?}  max {:.2?}",
            format!("{:?}", kind.0),
            samples.len(),
            samples[0],
            percentile(0.50),
            mean,
            percentile(0.99),
            samples[samples.len() - 1]
        );
    }
    println!(
        "  single failures (one probe meets a silent spell), fast retry {FAST_RETRY_MS} ms: {blips_flipped} of {per_kind} flipped"
    );
}

/// How many domains have the condition `type_` True.
async fn holding(domains: &Api<ContinuityDomain>, type_: &str) -> Option<usize> {
    let list = domains.list(&Default::default()).await.ok()?;
    let holds = |d: &&ContinuityDomain| {
        d.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == "True"))
    };
    Some(list.items.iter().filter(holds).count())
}
