//! A quiet cluster is quiet: in every steady state (healthy, failed over and waiting, a
//! primary flapping below its threshold) and after a restart, the operator sends no write
//! to the API server. Counted from outside the operator, in the control plane's audit log,
//! for every kind it writes (status, Services and Endpoints of a primary given by IP address,
//! ConfigMaps, Events, ...).

use std::collections::BTreeMap;

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::RouteTarget;
use kube::Api;

use crate::common::*;
use crate::peers::{Behavior, Peer};

/// An address no host answers at (TEST-NET-1), for a primary that is down for good; given as
/// an IP address, so the domain has its own `<name>-primary` Service and Endpoints.
const DEAD_PRIMARY: &str = "192.0.2.25";

/// Waits for `probes` more health checks of any result.
async fn probes_run(operator: &Operator, probes: f64) {
    let seen = operator.metric_sum("continuity_probes_total").await;
    wait_for(
        &format!("{probes} more probes"),
        std::time::Duration::from_secs(60),
        || async { (operator.metric_sum("continuity_probes_total").await >= seen + probes).then_some(()) },
    )
    .await;
}

fn assert_silent(writes: &BTreeMap<String, usize>, when: &str, operator: &Operator) {
    assert!(
        writes.is_empty(),
        "{when}, the operator wrote {writes:?}\n{}",
        operator.log_text()
    );
}

#[tokio::test]
async fn steady_states_and_a_restart_send_no_writes() {
    let flags = ["--allowed-primary-networks=192.0.2.0/24"];
    let mut scene = Scene::with_flags("quiet", &flags).await;
    let healthy = Peer::start(Behavior::Smtp(None)).await;
    let flapping = Peer::start(Behavior::Flapping(3)).await;
    scene
        .apply(&probed_domain("healthy", &scene.mail, healthy.port, ""))
        .await;
    let flapping_mail = format!("flapping.{}", scene.mail);
    scene
        .apply(&probed_domain("flapping", &flapping_mail, flapping.port, ""))
        .await;
    let down_mail = format!("down.{}", scene.mail);
    scene
        .apply(&probed_domain_at("down", &down_mail, DEAD_PRIMARY, 25, ""))
        .await;
    // Every domain's standby pods exist before they are all made ready at once.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = scene.api();
    wait_for(
        "the standby pods of three domains",
        std::time::Duration::from_secs(60),
        || async {
            let list = pods.list(&Default::default()).await.ok()?;
            (list.items.len() >= 6).then_some(())
        },
    )
    .await;
    for domain in ["healthy", "flapping", "down"] {
        standby_ready(&scene, domain).await;
    }
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "healthy", "PrimaryReachable", "True", "Reachable").await;
    reach(&domains, "flapping", "PrimaryReachable", "True", "Reachable").await;
    wait_for(
        "the dead primary's domain failed over",
        std::time::Duration::from_secs(60),
        || async {
            let status = domains.get("down").await.ok()?.status?;
            (status.routing?.target == RouteTarget::Standby).then_some(())
        },
    )
    .await;
    scene.operator.settled().await;

    // Healthy, flapping (a 421 every third probe) and failed over: 30 probes, no write.
    let audit = AuditLog::mark();
    probes_run(&scene.operator, 30.0).await;
    let greeted_421 = scene
        .operator
        .metric(r#"continuity_probes_total{result="Greeting4xx"}"#)
        .await;
    assert!(
        greeted_421 >= 3.0,
        "the flapping primary answered 421 {greeted_421} times"
    );
    assert_silent(
        &audit.operator_writes(Some(&scene.namespace)),
        "in steady states",
        &scene.operator,
    );

    // A restart with nothing changed: the new operator reads status back, probes every
    // domain from zero again, and writes nothing.
    let exit = scene.operator.terminate().await;
    assert!(exit.success(), "{exit}");
    let audit = AuditLog::mark();
    let mut options = OperatorOptions::scoped(&scene.namespace);
    options.args.extend(flags.iter().map(|f| (*f).to_owned()));
    scene.operator = Operator::start(options);
    wait_for(
        "the new operator leading",
        std::time::Duration::from_secs(60),
        || async { (scene.operator.metric("continuity_leader").await == 1.0).then_some(()) },
    )
    .await;
    // Past every threshold (3 failures, 2 successes) a few times over.
    probes_run(&scene.operator, 30.0).await;
    assert_silent(
        &audit.operator_writes(Some(&scene.namespace)),
        "after a restart",
        &scene.operator,
    );
}
