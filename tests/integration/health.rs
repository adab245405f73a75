//! The SMTP probe against real peers: Postfix running and stopped, and scripted fault peers
//! for every failure class; and the scheduler keeping one slow primary from delaying others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use continuity_operator::api::domain::ProbeFailureClass;
use continuity_operator::health::probe::{self, Outcome, Target, verifying_tls};
use continuity_operator::health::scheduler::{Prober, Registration};
use continuity_operator::health::tracker::Policy;
use continuity_operator::telemetry::Metrics;

use crate::peers::{Behavior, Peer, PrivateCa};
use crate::postfix::{Postfix, Role};

fn target(host: &str, port: u16, timeout_ms: u64) -> Target {
    Target {
        host: host.into(),
        port,
        timeout: Duration::from_millis(timeout_ms),
    }
}

async fn outcome_of(
    behavior: Behavior,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
) -> (Outcome, String, Duration) {
    let peer = Peer::start(behavior).await;
    let report = probe::probe(&target("127.0.0.1", peer.port, 1000), "probe.test", tls.as_ref()).await;
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
    let healthy = probe::probe(&target("127.0.0.1", postfix.port, 2000), "probe.test", None).await;
    assert_eq!(healthy.outcome, Outcome::Ok, "{}", healthy.detail);
    assert!(
        healthy.detail.starts_with("220 primary.test ESMTP"),
        "{}",
        healthy.detail
    );
    postfix.stop();
    let stopped = probe::probe(&target("127.0.0.1", postfix.port, 2000), "probe.test", None).await;
    assert_eq!(
        stopped.outcome,
        Outcome::Failed(ProbeFailureClass::Refused),
        "{}",
        stopped.detail
    );
    // The probe said goodbye: Postfix logged a clean QUIT, not a lost connection.
    assert!(postfix.log().contains("quit=1"), "{}", postfix.log());
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
    let dns = probe::probe(&target("no-such-host.invalid", 25, 3000), "probe.test", None).await;
    assert_eq!(
        dns.outcome,
        Outcome::Failed(ProbeFailureClass::DnsFailure),
        "{}",
        dns.detail
    );
}

#[tokio::test]
async fn the_certificate_check_fails_on_every_tls_problem_and_passes_a_trusted_certificate() {
    let ca = PrivateCa::new();
    let public_roots = verifying_tls(None).expect("TLS client");
    let with_ca = verifying_tls(Some(&ca.ca_pem)).expect("TLS client with the private CA");

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

#[tokio::test]
async fn a_primary_that_never_speaks_delays_no_other_domain() {
    let silent = Peer::start(Behavior::Silent).await;
    let mut healthy = Vec::new();
    for _ in 0..20 {
        healthy.push(Peer::start(Behavior::Smtp(None)).await);
    }
    let notified: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counter = notified.clone();
    // One probe at a time would let the silent primary block the others for its 2 s timeout;
    // with 4 slots the rest go on.
    let (prober, run) = Prober::new(
        "probe.test".into(),
        4,
        Arc::new(Metrics::default()),
        move |(_, name)| {
            *counter.lock().unwrap().entry(name.clone()).or_default() += 1;
        },
    );
    tokio::spawn(run);
    let registration = |port: u16, timeout_ms: u64| Registration {
        target: target("127.0.0.1", port, timeout_ms),
        period: Duration::from_millis(200),
        policy: Policy {
            failure_threshold: 3,
            success_threshold: 3,
            failure_classes: ProbeFailureClass::ALL.to_vec(),
            heartbeat: Duration::from_secs(60),
        },
        tls: None,
    };
    prober.register(
        &("ns".into(), "silent".into()),
        Registration {
            period: Duration::from_millis(2000),
            ..registration(silent.port, 2000)
        },
    );
    for (i, peer) in healthy.iter().enumerate() {
        prober.register(&("ns".into(), format!("healthy-{i}")), registration(peer.port, 500));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..healthy.len() {
        let health = prober.health(&("ns".into(), format!("healthy-{i}"))).expect("probed");
        assert_eq!(health.last.outcome, Outcome::Ok);
        assert!(
            health.consecutive_successes >= 4,
            "healthy-{i} probed only {} times in 1.5 s",
            health.consecutive_successes
        );
    }
    assert!(
        prober.health(&("ns".into(), "silent".into())).is_none(),
        "the silent one is still waiting for its greeting"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let silent_health = prober
        .health(&("ns".into(), "silent".into()))
        .expect("timed out by now");
    assert_eq!(silent_health.last.outcome, Outcome::Failed(ProbeFailureClass::Timeout));
    assert!(notified.lock().unwrap().contains_key("silent"));
}
