//! The operator's own faults are not the customers' outages: a resolver that fails, or a
//! network that makes many primaries fail at once, holds routing where it is, and says so.

use std::net::Ipv4Addr;
use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::RouteTarget;
use kube::Api;
use kube::api::DeleteParams;

use crate::common::*;
use crate::dns::{Answer, Dns};
use crate::peers::{Behavior, Peer};

fn route_of(domain: &ContinuityDomain) -> Option<RouteTarget> {
    domain.status.as_ref()?.routing.as_ref().map(|r| r.target)
}

#[tokio::test]
async fn a_failing_resolver_is_not_a_customer_outage_but_a_name_that_is_gone_is() {
    let dns = Dns::start().await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    let scene = Scene::with_flags("resolver", &[&format!("--probe-nameservers={}", dns.address)]).await;
    let host = format!("mx.{}", scene.mail);
    dns.set(&host, Answer::Address(Ipv4Addr::LOCALHOST));
    scene
        .apply(&probed_domain_at("d", &scene.mail, &host, primary.port, ""))
        .await;
    standby_ready(&scene, "d").await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;

    let dns_failures = r#"continuity_probes_total{result="DNSFailure"}"#;
    for fault in [Answer::ServFail, Answer::Silent] {
        dns.set(&host, fault);
        let before = scene.operator.metric(dns_failures).await;
        // Twice the failure threshold (3) of lookups that failed.
        wait_for(
            &format!("6 probes failing on {fault:?}"),
            Duration::from_secs(60),
            || async { (scene.operator.metric(dns_failures).await >= before + 6.0).then_some(()) },
        )
        .await;
        let domain = domains.get("d").await.expect("the domain");
        assert_eq!(
            route_of(&domain),
            Some(RouteTarget::Primary),
            "{fault:?} moved the route"
        );
        let result = domain
            .status
            .as_ref()
            .and_then(|s| s.primary.as_ref())
            .map(|p| p.result.clone());
        assert_eq!(result.as_deref(), Some("DNSFailure"), "status names the lookup failure");
    }

    dns.set(&host, Answer::NxDomain);
    let gone = reach(&domains, "d", "ContinuityActive", "True", "PrimaryUnreachable").await;
    assert_eq!(route_of(&gone), Some(RouteTarget::Standby));
}

#[tokio::test]
async fn many_primaries_failing_at_once_hold_failovers_until_fewer_fail() {
    let scene = Scene::with_flags("widespread", &["--widespread-failure-min-primaries=4"]).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let mut primaries = Vec::new();
    for i in 0..4 {
        let primary = Peer::start(Behavior::Smtp(None)).await;
        let mail = format!("d{i}.{}", scene.mail);
        scene
            .apply(&probed_domain(&format!("d{i}"), &mail, primary.port, ""))
            .await;
        primaries.push(primary);
    }
    wait_for("the standbys' pods", Duration::from_secs(60), || async {
        (set_pods_ready(&scene, "standby-mail", true).await >= 4 && set_pods_ready(&scene, "webmail", true).await >= 4)
            .then_some(())
    })
    .await;
    for i in 0..4 {
        let name = format!("d{i}");
        reach(&domains, &name, "StandbyReady", "True", "Provisioned").await;
        reach(&domains, &name, "PrimaryReachable", "True", "Reachable").await;
    }

    // Three of the four primaries stop at once: more than half.
    primaries.truncate(1);
    for name in ["d1", "d2", "d3"] {
        let held = reach(&domains, name, "Ready", "False", "FailoverHeld").await;
        assert_eq!(route_of(&held), Some(RouteTarget::Primary), "{name} failed over");
    }
    assert_eq!(scene.operator.metric("continuity_widespread_failure").await, 1.0);
    assert_eq!(scene.operator.metric("continuity_failover_holds_total").await, 1.0);
    let announced = events_with_reason(&scene, "FailoverHeld").await;
    assert!(
        announced
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("d1")),
        "an Event says why d1 holds"
    );

    // Two of the failing domains go: one failing of two probed is no longer widespread.
    for name in ["d2", "d3"] {
        domains
            .delete(name, &DeleteParams::default())
            .await
            .expect("deleting a domain");
    }
    let active = reach(&domains, "d1", "ContinuityActive", "True", "PrimaryUnreachable").await;
    assert_eq!(route_of(&active), Some(RouteTarget::Standby));
    assert_eq!(scene.operator.metric("continuity_widespread_failure").await, 0.0);
}
