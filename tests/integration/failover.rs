//! Failover and failback on the control plane, with real Postfix instances as the customer's
//! primary, the standby side and the provider's gateway.

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::{DomainPhase, RouteTarget};
use continuity_operator::resources::packed;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::common::*;
use crate::peers::{Behavior, Peer};
use crate::postfix::{Postfix, Role, send_mail};

async fn route(domains: &Api<ContinuityDomain>, name: &str, target: RouteTarget) -> ContinuityDomain {
    wait_for(
        &format!("{name} routed to {target:?}"),
        Duration::from_secs(30),
        || async {
            let domain = domains.get(name).await.ok()?;
            (domain.status.as_ref()?.routing.as_ref()?.target == target).then_some(domain)
        },
    )
    .await
}

fn external_name(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.external_name.clone())
        .unwrap_or_default()
}

async fn transport_map(scene: &Scene) -> String {
    let maps: Api<ConfigMap> = scene.api();
    maps.get_opt("continuity-transport")
        .await
        .ok()
        .flatten()
        .and_then(|m| packed::table(&m, "transport.gz"))
        .unwrap_or_default()
}

/// Waits until the gateway's journal copies table copies `address`'s mail.
async fn journal_copies_list(scene: &Scene, address: &str) {
    let maps: Api<ConfigMap> = scene.api();
    wait_for(
        &format!("the journal copies table to list {address}"),
        Duration::from_secs(30),
        || async {
            let map = maps.get_opt("continuity-transport").await.ok()??;
            let table = packed::table(&map, "recipient_bcc.gz")?;
            table
                .lines()
                .any(|l| l.starts_with(&format!("{address}\t")))
                .then_some(())
        },
    )
    .await;
}

/// The gateway copies mail for the standby's archive of every covered user, those added
/// after the table was first built too (their standby's recipient table changes).
#[tokio::test]
async fn journal_copies_follow_users_added_later() {
    let scene = Scene::new("journal").await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    for user in ["alice", "bob"] {
        let address = format!("{user}@{}", scene.mail);
        scene.apply(&user_yaml(user, "d", &address)).await;
        journal_copies_list(&scene, &address).await;
    }
}

async fn transport_map_lists(scene: &Scene, line: &str) -> String {
    wait_for(
        &format!("the transport map to list {line:?}"),
        Duration::from_secs(30),
        || async {
            let text = transport_map(scene).await;
            text.lines().any(|l| l == line).then_some(text)
        },
    )
    .await
}

#[tokio::test]
async fn a_stopped_postfix_primary_fails_over_and_comes_back_after_the_hold_time() {
    let scene = Scene::new("failover").await;
    let mut primary = Postfix::start("primary", Role::Mailbox { domain: &scene.mail }).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    standby_ready(&scene, "d").await;
    let domains: Api<ContinuityDomain> = scene.api();
    let services: Api<Service> = scene.api();

    // Healthy: reachable, routed to the primary.
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;
    let healthy = reach(&domains, "d", "ContinuityActive", "False", "PrimaryServing").await;
    assert_eq!(
        healthy
            .status
            .as_ref()
            .and_then(|s| s.routing.as_ref())
            .map(|r| r.target),
        Some(RouteTarget::Primary)
    );
    let next_hop = services.get("d-next-hop").await.expect("the next-hop Service");
    assert_eq!(external_name(&next_hop), "localhost");
    transport_map_lists(&scene, &format!("{}\tsmtp:[localhost]:{}", scene.mail, primary.port)).await;

    // Stopped: after three refused probes mail goes to the standby.
    primary.stop();
    let failed = reach(&domains, "d", "ContinuityActive", "True", "PrimaryUnreachable").await;
    let status = failed.status.expect("status");
    assert_eq!(status.phase, Some(DomainPhase::Active));
    assert_eq!(
        condition(&status.conditions, "PrimaryReachable").map(|c| c.1),
        Some("Refused".into())
    );
    let probe = status.primary.expect("the last probe");
    assert_eq!((probe.result.as_str(), probe.consecutive_failures), ("Refused", 3));
    assert_eq!(status.continuity.as_ref().map(|c| c.activations), Some(1));
    let failed_over_at = status.routing.expect("routing").since.0;
    let next_hop = services.get("d-next-hop").await.expect("the next-hop Service");
    assert_eq!(
        external_name(&next_hop),
        format!("d-standby-mail.{}.svc.cluster.local", scene.namespace)
    );
    transport_map_lists(
        &scene,
        &format!(
            "{}\tsmtp:[d-standby-mail.{}.svc.cluster.local]:25",
            scene.mail, scene.namespace
        ),
    )
    .await;
    let activated = events_with_reason(&scene, "ContinuityActivated").await;
    assert_eq!(activated.len(), 1, "one Event for one flip");
    assert_eq!(activated[0].type_.as_deref(), Some("Warning"));

    // Back: two successes and five seconds after the flip, mail returns to the primary.
    primary.resume().await;
    let back = route(&domains, "d", RouteTarget::Primary).await;
    let status = back.status.expect("status");
    let failed_back_at = status.routing.as_ref().expect("routing").since.0;
    let held = failed_back_at.duration_since(failed_over_at);
    assert!(
        held.as_secs_f64() >= 5.0,
        "failback after {held:?}, before the 5 s hold time"
    );
    assert!(
        status
            .continuity
            .as_ref()
            .and_then(|c| c.last_deactivation_time.clone())
            .is_some()
    );
    reach(&domains, "d", "ContinuityActive", "False", "PrimaryServing").await;
    assert_eq!(
        external_name(&services.get("d-next-hop").await.expect("Service")),
        "localhost"
    );
    wait_for("a ContinuityDeactivated Event", Duration::from_secs(10), || async {
        (!events_with_reason(&scene, "ContinuityDeactivated").await.is_empty()).then_some(())
    })
    .await;
    let operator = &scene.operator;
    assert_eq!(
        operator.metric(r#"continuity_routing_flips_total{to="standby"}"#).await,
        1.0
    );
    assert_eq!(
        operator.metric(r#"continuity_routing_flips_total{to="primary"}"#).await,
        1.0
    );
    assert!(operator.metric("continuity_active_seconds_total").await >= 5.0);
    assert!(operator.metric(r#"continuity_probes_total{result="Refused"}"#).await >= 3.0);
}

#[tokio::test]
async fn only_the_configured_failure_classes_flip() {
    let scene = Scene::new("classes").await;
    let busy = Peer::start(Behavior::Greets("421 4.3.2 Service shutting down")).await;
    let classes = "    failureClasses: [Refused, Timeout]\n";
    scene.apply(&probed_domain("d", &scene.mail, busy.port, classes)).await;
    standby_ready(&scene, "d").await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "PrimaryReachable", "False", "Greeting4xx").await;
    // Twice the failure threshold of 4xx greetings later, routing has not moved: 421 is not
    // a configured class.
    let greetings = r#"continuity_probes_total{result="Greeting4xx"}"#;
    let seen = scene.operator.metric(greetings).await;
    wait_for("six more probes", Duration::from_secs(20), || async {
        (scene.operator.metric(greetings).await >= seen + 6.0).then_some(())
    })
    .await;
    let still = domains.get("d").await.expect("domain");
    assert_eq!(
        still.status.as_ref().and_then(|s| s.routing.as_ref()).map(|r| r.target),
        Some(RouteTarget::Primary)
    );
    assert_eq!(
        condition(&still.status.expect("status").conditions, "ContinuityActive").map(|c| c.0),
        Some("False".into())
    );

    // Listing the class makes the same greetings fail over.
    let counted = "    failureClasses: [Refused, Timeout, Greeting4xx]\n";
    scene.apply(&probed_domain("d", &scene.mail, busy.port, counted)).await;
    reach(&domains, "d", "ContinuityActive", "True", "PrimaryUnreachable").await;
}

#[tokio::test]
async fn manual_mode_follows_the_override_and_still_reports_health() {
    let scene = Scene::new("manual").await;
    let primary = Postfix::start("primary", Role::Mailbox { domain: &scene.mail }).await;
    let manual = "  activation:\n    mode: Manual\n    override: Active\n";
    scene
        .apply(&probed_domain("d", &scene.mail, primary.port, manual))
        .await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "ContinuityActive", "True", "ManualOverride").await;
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;
    let inactive = "  activation:\n    mode: Manual\n    override: Inactive\n";
    scene
        .apply(&probed_domain("d", &scene.mail, primary.port, inactive))
        .await;
    reach(&domains, "d", "ContinuityActive", "False", "ManualOverride").await;
    route(&domains, "d", RouteTarget::Primary).await;
}

#[tokio::test]
async fn a_restarted_operator_keeps_the_route_without_flipping() {
    let scene = Scene::new("restart").await;
    let mut primary = Postfix::start("primary", Role::Mailbox { domain: &scene.mail }).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    standby_ready(&scene, "d").await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;
    primary.stop();
    let failed = route(&domains, "d", RouteTarget::Standby).await;
    let since = failed
        .status
        .as_ref()
        .and_then(|s| s.routing.clone())
        .expect("routing")
        .since;

    // A new operator process (same Lease, so it takes over once the old one is gone) has no
    // probe history: it keeps the route from status and counts activations on from there.
    let namespace = scene.namespace.clone();
    let Scene { mut operator, .. } = scene;
    operator.kill().await;
    let successor = Operator::start(OperatorOptions::scoped(&namespace));
    wait_for("the successor to lead", Duration::from_secs(30), || async {
        let (code, body) = successor.get("/readyz").await?;
        (code == 200 && body.contains("leading")).then_some(())
    })
    .await;
    // Its own probes, one more than the failure threshold: the reconcile the threshold
    // triggered is over by the time the next probe runs, a period later.
    wait_for(
        "the successor's own refused probes",
        Duration::from_secs(30),
        || async { (successor.metric(r#"continuity_probes_total{result="Refused"}"#).await >= 4.0).then_some(()) },
    )
    .await;
    let after = domains.get("d").await.expect("domain");
    let status = after.status.expect("status");
    assert_eq!(
        status.routing.as_ref().map(|r| (r.target, r.since.clone())),
        Some((RouteTarget::Standby, since))
    );
    assert_eq!(
        status.continuity.map(|c| c.activations),
        Some(1),
        "no second activation"
    );
    assert_eq!(successor.metric_sum("continuity_routing_flips_total").await, 0.0);

    primary.resume().await;
    route(&domains, "d", RouteTarget::Primary).await;
}

#[tokio::test]
async fn mail_through_the_gateway_lands_at_the_primary_and_after_the_flip_at_the_standby() {
    let scene = Scene::new("mailflow").await;
    let mut primary = Postfix::start("primary", Role::Mailbox { domain: &scene.mail }).await;
    let standby = Postfix::start("standby", Role::Mailbox { domain: &scene.mail }).await;
    let gateway = Postfix::start("gateway", Role::Gateway { domain: &scene.mail }).await;
    let next_hop = format!(
        "  routing:\n    standbyNextHop:\n      host: 127.0.0.1\n      port: {}\n",
        standby.port
    );
    scene
        .apply(&probed_domain("d", &scene.mail, primary.port, &next_hop))
        .await;
    standby_ready(&scene, "d").await;
    let domains: Api<ContinuityDomain> = scene.api();
    let to = format!("alice@{}", scene.mail);

    // The gateway takes its routes from the operator's transport map, as a sidecar would.
    let map = transport_map_lists(&scene, &format!("{}\tsmtp:[localhost]:{}", scene.mail, primary.port)).await;
    gateway.set_transport_map(&map);
    let sent = send_mail(gateway.port, &to, "while the primary is healthy");
    assert!(sent.contains("250"), "{sent}");
    wait_for("delivery at the primary", Duration::from_secs(30), || async {
        primary
            .delivered()
            .iter()
            .any(|m| m.contains("Subject: while the primary is healthy"))
            .then_some(())
    })
    .await;

    primary.stop();
    route(&domains, "d", RouteTarget::Standby).await;
    let map = transport_map_lists(&scene, &format!("{}\tsmtp:[127.0.0.1]:{}", scene.mail, standby.port)).await;
    gateway.set_transport_map(&map);
    send_mail(gateway.port, &to, "during the outage");
    wait_for("delivery at the standby", Duration::from_secs(30), || async {
        standby
            .delivered()
            .iter()
            .any(|m| m.contains("Subject: during the outage"))
            .then_some(())
    })
    .await;
    assert_eq!(primary.delivered().len(), 1, "the primary got only the first message");
    assert!(
        standby
            .delivered()
            .iter()
            .all(|m| !m.contains("while the primary is healthy")),
        "the standby got only the second"
    );
}

#[tokio::test]
async fn a_primary_given_by_address_is_fronted_by_a_service_with_endpoints() {
    let scene = Scene::new("by-address").await;
    // TEST-NET-1: routable in form, never answering; the routing objects are what matter here.
    let yaml =
        domain_yaml("d", &scene.mail).replace(&format!("host: mx.{}", scene.mail), "host: 192.0.2.25\n    port: 2525");
    scene.apply(&yaml).await;
    let services: Api<Service> = scene.api();
    let next_hop = wait_for("the next-hop Service", Duration::from_secs(30), || async {
        services.get_opt("d-next-hop").await.ok().flatten()
    })
    .await;
    assert_eq!(
        external_name(&next_hop),
        format!("d-primary.{}.svc.cluster.local", scene.namespace)
    );
    let front = wait_for("the primary's Service", Duration::from_secs(30), || async {
        services.get_opt("d-primary").await.ok().flatten()
    })
    .await;
    let port = &front.spec.expect("spec").ports.expect("ports")[0];
    assert_eq!(port.port, 25);
    let all_endpoints: Api<Endpoints> = scene.api();
    let endpoints = wait_for("the primary's Endpoints", Duration::from_secs(30), || async {
        all_endpoints.get_opt("d-primary").await.ok().flatten()
    })
    .await;
    let subset = &endpoints.subsets.expect("subsets")[0];
    assert_eq!(subset.addresses.as_ref().expect("addresses")[0].ip, "192.0.2.25");
    assert_eq!(subset.ports.as_ref().expect("ports")[0].port, 2525);
    transport_map_lists(&scene, &format!("{}\tsmtp:[192.0.2.25]:2525", scene.mail)).await;
}

#[tokio::test]
async fn a_loopback_primary_address_is_refused_with_a_reason() {
    let scene = Scene::new("loopback").await;
    let yaml = domain_yaml("d", &scene.mail).replace(&format!("host: mx.{}", scene.mail), "host: 127.0.0.1");
    scene.apply(&yaml).await;
    let domain = reach(&scene.api::<ContinuityDomain>(), "d", "Ready", "False", "InvalidSpec").await;
    let message = condition(&domain.status.expect("status").conditions, "Ready")
        .expect("Ready")
        .2;
    assert!(message.contains("cannot route to"), "{message}");
}

/// A healthy, unchanged domain: probes go on, status is not rewritten, and a metadata edit
/// changes nothing either.
#[tokio::test]
async fn a_healthy_domain_stays_put_and_writes_status_only_on_the_heartbeat() {
    let scene = Scene::new("quiet").await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let operator = &scene.operator;
    operator.settled().await;
    // Heartbeats are status writes too.
    let status_writes = || async {
        operator
            .metric(r#"continuity_api_writes_total{resource="ContinuityDomain",operation="status"}"#)
            .await
            + operator
                .metric(r#"continuity_api_writes_total{resource="ContinuityDomain",operation="heartbeat"}"#)
                .await
    };
    let writes = status_writes().await;
    let probes = operator.metric(r#"continuity_probes_total{result="Ok"}"#).await;
    let patch = serde_json::json!({ "metadata": { "labels": { "touched": "yes" } } });
    domains
        .patch("d", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("labelling");
    wait_for("ten more probes", Duration::from_secs(30), || async {
        (operator.metric(r#"continuity_probes_total{result="Ok"}"#).await >= probes + 10.0).then_some(())
    })
    .await;
    let more_probes = operator.metric(r#"continuity_probes_total{result="Ok"}"#).await - probes;
    let more_writes = status_writes().await - writes;
    assert_eq!(
        more_writes, 0.0,
        "{more_probes} successful probes and a label edit wrote status {more_writes} times"
    );
    let status = domains.get("d").await.expect("domain").status.expect("status");
    assert_eq!(status.routing.map(|r| r.target), Some(RouteTarget::Primary));
    assert_eq!(status.continuity, None, "never activated");
}

/// SPEC 4.9: a refused edit takes nothing down. The route, its Service and the transport map
/// stay as they were.
#[tokio::test]
async fn a_refused_edit_leaves_routing_and_the_transport_map_alone() {
    let scene = Scene::new("refused-edit").await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;
    let line = format!("{}\tsmtp:[localhost]:{}", scene.mail, primary.port);
    transport_map_lists(&scene, &line).await;

    let broken = probed_domain("d", &scene.mail, primary.port, "").replace("host: localhost", "host: 127.0.0.1");
    scene.apply(&broken).await;
    reach(&domains, "d", "Ready", "False", "InvalidSpec").await;
    // The map is rebuilt from every domain whenever one changes: once a second domain shows
    // in it, it has been rebuilt since the refused edit.
    let other_mail = format!("other-{}", scene.mail);
    scene.apply(&probed_domain("e", &other_mail, primary.port, "")).await;
    let text = transport_map_lists(&scene, &format!("{other_mail}\tsmtp:[localhost]:{}", primary.port)).await;
    assert!(text.lines().any(|l| l == line), "{text}");
    let services: Api<Service> = scene.api();
    assert_eq!(
        external_name(&services.get("d-next-hop").await.expect("Service")),
        "localhost"
    );
}

/// A primary that hangs (accepts connections, never greets) fails over on timeouts.
#[tokio::test]
async fn a_hung_primary_fails_over_on_timeouts() {
    let scene = Scene::new("hung").await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    standby_ready(&scene, "d").await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;
    primary.go_silent();
    reach(&domains, "d", "ContinuityActive", "True", "PrimaryUnreachable").await;
    let status = domains.get("d").await.expect("domain").status.expect("status");
    assert_eq!(
        condition(&status.conditions, "PrimaryReachable").map(|c| c.1),
        Some("Timeout".into())
    );
}

/// A flapping primary (1 s probes, failover after 3 failures, failback after 2 successes, 10 s
/// between flips): every flip, failover or failback, comes at least 10 s after the one
/// before. The primary is driven by probe counts: down for 4 probes, up for 2, six times.
#[tokio::test]
async fn a_flapping_primary_flips_no_faster_than_the_minimum_interval() {
    let scene = Scene::new("flapping").await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    let yaml = probed_domain("d", &scene.mail, primary.port, "")
        .replace("minFlipIntervalSeconds: 5", "minFlipIntervalSeconds: 10");
    scene.apply(&yaml).await;
    standby_ready(&scene, "d").await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;

    // Every route the status shows, with the second it was decided.
    let routes: std::sync::Arc<std::sync::Mutex<Vec<(RouteTarget, i64)>>> = Default::default();
    let recorder = {
        let (watching, routes) = (domains.clone(), routes.clone());
        tokio::spawn(async move {
            loop {
                if let Some(route) = watching.get("d").await.ok().and_then(|d| d.status?.routing) {
                    let seen = (route.target, route.since.0.as_second());
                    let mut routes = routes.lock().expect("routes");
                    if routes.last() != Some(&seen) {
                        routes.push(seen);
                    }
                }
                // The poll interval bounds nothing the test asserts: flips are seconds apart.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let operator = &scene.operator;
    let (timeouts, oks) = (
        r#"continuity_probes_total{result="Timeout"}"#,
        r#"continuity_probes_total{result="Ok"}"#,
    );
    for _ in 0..6 {
        primary.set_silent(true);
        let seen = operator.metric(timeouts).await;
        wait_for("four failed probes", Duration::from_secs(30), || async {
            (operator.metric(timeouts).await >= seen + 4.0).then_some(())
        })
        .await;
        primary.set_silent(false);
        let seen = operator.metric(oks).await;
        wait_for("two good probes", Duration::from_secs(30), || async {
            (operator.metric(oks).await >= seen + 2.0).then_some(())
        })
        .await;
    }
    recorder.abort();
    let routes = routes.lock().expect("routes").clone();
    let flips: Vec<i64> = routes.iter().skip(1).map(|(_, since)| *since).collect();
    assert!(flips.len() >= 2, "it fails over and back: {routes:?}");
    assert!(
        flips.windows(2).all(|pair| pair[1] - pair[0] >= 10),
        "two flips less than 10 s apart: {routes:?}"
    );
}

/// A leader that dies between a flip and the transport map write leaves the map stale; the
/// next leader writes it from the routes in status as soon as its caches are synced, not at
/// the next resync (ten minutes).
#[tokio::test]
async fn a_new_leader_corrects_a_stale_transport_map_at_once() {
    let scene = Scene::new("stale-map").await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    let line = format!("{}\tsmtp:[localhost]:{}", scene.mail, primary.port);
    transport_map_lists(&scene, &line).await;

    let namespace = scene.namespace.clone();
    let Scene { mut operator, .. } = scene;
    operator.kill().await;
    let client = client().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let stale = serde_json::json!({
        "binaryData": { "transport.gz": packed::pack("# written before the crash\n") }
    });
    maps.patch("continuity-transport", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .expect("making the map stale");

    let _successor = Operator::start(OperatorOptions::scoped(&namespace));
    wait_for("the successor to rewrite the map", Duration::from_secs(60), || async {
        let map = maps.get_opt("continuity-transport").await.ok().flatten()?;
        packed::table(&map, "transport.gz")?
            .lines()
            .any(|l| l == line)
            .then_some(())
    })
    .await;
}

/// A primary that fails while its standby cannot serve (every new domain with a mistyped
/// primary, say) keeps the route: the gateway queues, a standby that is not ready would
/// bounce. Once the standby is ready, it takes over.
#[tokio::test]
async fn a_failing_primary_keeps_the_route_while_the_standby_is_not_ready() {
    let scene = Scene::new("blocked").await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;
    drop(primary);
    let blocked = reach(&domains, "d", "ContinuityActive", "False", "FailoverBlocked").await;
    let status = blocked.status.expect("status");
    assert_eq!(status.phase, Some(DomainPhase::Degraded));
    assert_eq!(status.routing.map(|r| r.target), Some(RouteTarget::Primary));
    reach(&domains, "d", "Ready", "False", "FailoverBlocked").await;

    standby_ready(&scene, "d").await;
    reach(&domains, "d", "ContinuityActive", "True", "PrimaryUnreachable").await;
}
