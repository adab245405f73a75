//! The SMTP probe against real peers: Postfix running and stopped, and scripted fault peers
//! for every failure class; and the scheduler keeping one slow primary from delaying others.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use continuity_operator::api::domain::ProbeFailureClass;
use continuity_operator::health::probe::{self, Outcome, ProbeClient, Target};
use continuity_operator::health::resolver::Resolver;
use continuity_operator::health::scheduler::{Prober, Registration};
use continuity_operator::health::widespread::Threshold;
use continuity_operator::telemetry::Metrics;
use continuity_operator::tls;

use crate::common::{loopback_allowed, probe_client, probe_registration, wait_for};
use crate::dns::{Answer, Dns};
use crate::peers::{Behavior, Peer, PrivateCa};
use crate::postfix::{Postfix, Role};

fn target(host: &str, port: u16, timeout_ms: u64) -> Target {
    Target {
        host: host.into(),
        port,
        timeout: Duration::from_millis(timeout_ms),
        networks: loopback_allowed(),
    }
}

async fn outcome_of(
    behavior: Behavior,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
) -> (Outcome, String, Duration) {
    let peer = Peer::start(behavior).await;
    let report = probe::probe(
        &target("127.0.0.1", peer.port, 1000),
        &probe_client("probe.test"),
        tls.as_ref(),
    )
    .await;
    (report.outcome, report.detail, report.latency)
}

#[tokio::test]
async fn a_running_postfix_is_reachable_and_a_stopped_one_refuses() {
    let mut postfix = Postfix::start(
        "primary",
        Role::Mailbox {
            domain: "probe.example.test",
        },
    )
    .await;
    let healthy = probe::probe(
        &target("127.0.0.1", postfix.port, 2000),
        &probe_client("probe.test"),
        None,
    )
    .await;
    assert_eq!(healthy.outcome, Outcome::Ok, "{}", healthy.detail);
    assert!(
        healthy.detail.starts_with("220 primary.test ESMTP"),
        "{}",
        healthy.detail
    );
    // The probe said goodbye: Postfix logs a clean QUIT, not a lost connection.
    wait_for("Postfix to log the QUIT", Duration::from_secs(10), || async {
        postfix.log().contains("quit=1").then_some(())
    })
    .await;
    postfix.stop();
    let stopped = probe::probe(
        &target("127.0.0.1", postfix.port, 2000),
        &probe_client("probe.test"),
        None,
    )
    .await;
    assert_eq!(
        stopped.outcome,
        Outcome::Failed(ProbeFailureClass::Refused),
        "{}",
        stopped.detail
    );
}

#[tokio::test]
async fn every_fault_is_classified() {
    let cases = [
        (Behavior::Silent, ProbeFailureClass::Timeout),
        (
            Behavior::Greets("421 4.3.2 Service shutting down"),
            ProbeFailureClass::Greeting4xx,
        ),
        (
            Behavior::Greets("554 5.3.2 No SMTP service here"),
            ProbeFailureClass::Greeting5xx,
        ),
        (Behavior::Garbage, ProbeFailureClass::ProtocolError),
    ];
    for (behavior, expected) in cases {
        let (outcome, detail, latency) = outcome_of(behavior, None).await;
        assert_eq!(outcome, Outcome::Failed(expected), "{detail}");
        assert!(
            latency < Duration::from_millis(1500),
            "a probe never outlasts its timeout: {latency:?}"
        );
    }
    let dns = probe::probe(
        &target("no-such-host.invalid", 25, 3000),
        &probe_client("probe.test"),
        None,
    )
    .await;
    assert_eq!(
        dns.outcome,
        Outcome::Failed(ProbeFailureClass::NameNotFound),
        "{}",
        dns.detail
    );
}

#[tokio::test]
async fn a_name_is_classified_by_what_its_dns_says_and_a_failing_resolver_apart() {
    let dns = Dns::start().await;
    let peer = Peer::start(Behavior::Smtp(None)).await;
    let client = ProbeClient {
        helo: "probe.test".into(),
        resolver: Resolver::with_servers(&[dns.address]),
    };
    let cases = [
        ("up.dns.test", Answer::Address(Ipv4Addr::LOCALHOST), Outcome::Ok),
        (
            "gone.dns.test",
            Answer::NxDomain,
            Outcome::Failed(ProbeFailureClass::NameNotFound),
        ),
        (
            "broken.dns.test",
            Answer::ServFail,
            Outcome::Failed(ProbeFailureClass::DnsFailure),
        ),
        (
            "mute.dns.test",
            Answer::Silent,
            Outcome::Failed(ProbeFailureClass::DnsFailure),
        ),
        (
            "metadata.dns.test",
            Answer::Address(Ipv4Addr::new(169, 254, 169, 254)),
            Outcome::Failed(ProbeFailureClass::AddressNotAllowed),
        ),
    ];
    for (name, answer, expected) in cases {
        dns.set(name, answer);
        let report = probe::probe(&target(name, peer.port, 1000), &client, None).await;
        assert_eq!(report.outcome, expected, "{name}: {}", report.detail);
    }
}

#[tokio::test]
async fn the_certificate_check_fails_on_every_tls_problem_and_passes_a_trusted_certificate() {
    let ca = PrivateCa::new();
    let public_roots = tls::verifying(None).expect("TLS client");
    let with_ca = tls::verifying(Some(&ca.ca_pem)).expect("TLS client with the private CA");

    let (outcome, detail, _) = outcome_of(Behavior::BrokenTls, Some(with_ca.clone())).await;
    assert_eq!(outcome, Outcome::Failed(ProbeFailureClass::TlsFailure), "{detail}");
    let (outcome, detail, _) = outcome_of(Behavior::Smtp(None), Some(with_ca.clone())).await;
    assert_eq!(outcome, Outcome::Failed(ProbeFailureClass::TlsFailure), "{detail}");
    assert!(detail.contains("does not offer STARTTLS"), "{detail}");
    let (outcome, detail, _) = outcome_of(Behavior::Smtp(Some(ca.server.clone())), Some(public_roots)).await;
    assert_eq!(
        outcome,
        Outcome::Failed(ProbeFailureClass::TlsFailure),
        "an unknown issuer: {detail}"
    );
    let (outcome, detail, _) = outcome_of(Behavior::Smtp(Some(ca.server.clone())), Some(with_ca)).await;
    assert_eq!(outcome, Outcome::Ok, "{detail}");
    assert!(detail.contains("certificate verified"), "{detail}");
}

fn key(name: &str) -> (String, String) {
    ("ns".into(), name.into())
}

fn prober(concurrency: usize) -> Arc<Prober> {
    let (prober, run) = Prober::new(
        probe_client("probe.test"),
        concurrency,
        Threshold::default(),
        Arc::new(Metrics::default()),
        |_| {},
    );
    tokio::spawn(run);
    prober
}

#[tokio::test]
async fn a_primary_that_never_speaks_delays_no_other_domain() {
    let silent = Peer::start(Behavior::Silent).await;
    let mut healthy = Vec::new();
    for _ in 0..20 {
        healthy.push(Peer::start(Behavior::Smtp(None)).await);
    }
    // Four probe slots: the silent primary holds one for its whole 2 s timeout, the others
    // keep probing every 200 ms. (With one slot, it would block them all.)
    let prober = prober(4);
    prober.register(&key("silent"), probe_registration(silent.port, 300, 2000));
    for (i, peer) in healthy.iter().enumerate() {
        prober.register(&key(&format!("healthy-{i}")), probe_registration(peer.port, 200, 500));
    }
    // Every healthy primary gets four probes through while the silent one's first is still
    // waiting for its timeout.
    wait_for(
        "four probes of every healthy primary",
        Duration::from_secs(10),
        || async {
            (0..healthy.len())
                .all(|i| {
                    prober
                        .health(&key(&format!("healthy-{i}")))
                        .is_some_and(|h| h.last.outcome == Outcome::Ok && h.consecutive_successes >= 4)
                })
                .then_some(())
        },
    )
    .await;
    assert!(
        prober.health(&key("silent")).is_none(),
        "the silent primary's first probe is still waiting"
    );
    wait_for("the silent primary's timeout", Duration::from_secs(5), || async {
        let health = prober.health(&key("silent"))?;
        (health.last.outcome == Outcome::Failed(ProbeFailureClass::Timeout)).then_some(())
    })
    .await;
}

/// The certificate is checked only every hour, but once a check fails every probe checks it,
/// so a broken certificate reaches the failure threshold at the probe period.
#[tokio::test]
async fn a_failing_certificate_check_counts_at_the_probe_period() {
    let ca = PrivateCa::new();
    let peer = Peer::start(Behavior::Smtp(Some(ca.server.clone()))).await;
    let prober = prober(4);
    let tls = continuity_operator::health::scheduler::TlsCheck {
        period: Duration::from_secs(3600),
        ca_bundle: None, // the private CA is not trusted
    };
    prober.register(
        &key("tls"),
        Registration {
            tls: Some(tls),
            ..probe_registration(peer.port, 200, 1000)
        },
    );
    let health = wait_for(
        "three certificate failures in a row",
        Duration::from_secs(10),
        || async { prober.health(&key("tls")).filter(|h| h.consecutive_failures >= 3) },
    )
    .await;
    assert_eq!(
        health.last.outcome,
        Outcome::Failed(ProbeFailureClass::TlsFailure),
        "{}",
        health.last.detail
    );
}

#[tokio::test]
async fn a_new_period_applies_at_once() {
    let peer = Peer::start(Behavior::Smtp(None)).await;
    let prober = prober(4);
    prober.register(&key("d"), probe_registration(peer.port, 3_600_000, 1000));
    prober.register(&key("d"), probe_registration(peer.port, 100, 1000));
    wait_for("probes at the new period", Duration::from_secs(5), || async {
        prober.health(&key("d")).filter(|h| h.consecutive_successes >= 3)
    })
    .await;
}
