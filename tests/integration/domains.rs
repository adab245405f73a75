//! ContinuityDomains against the real API server: the examples converge, children are owned,
//! garbage-collected and put back when edited, claims conflict across namespaces, rules the
//! 1.20 API server cannot enforce are enforced by the operator, and a steady state writes
//! nothing.

use std::time::Duration;

use continuity_operator::api::domain::{DomainPhase, ProbeFailureClass};
use continuity_operator::api::{ContinuityDomain, ContinuityUser};
use continuity_operator::resources::packed;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::common::*;

#[tokio::test]
async fn the_examples_apply_and_their_statuses_converge() {
    let scene = Scene::new("examples").await;
    grant(
        &scene.client,
        &scene.namespace,
        "example.com, shop.example.org, corp.example.net",
    )
    .await;
    for file in [
        "domain-minimal.yaml",
        "domain-static.yaml",
        "domain-full.yaml",
        "users.yaml",
    ] {
        scene
            .apply(&std::fs::read_to_string(repo().join("examples").join(file)).expect("example file"))
            .await;
    }
    let domains: Api<ContinuityDomain> = scene.api();

    // (name, covered users, why not ready): SelectedUsers with alice and bob; a static list
    // minus one exclusion; an LDAP directory not read yet. The examples' primaries do not
    // exist here: once probed, the first two would fail over but for their standbys.
    let standby_missing = ["StandbyNotReady", "FailoverBlocked"].as_slice();
    for (name, covered, waiting_for) in [
        ("example-com", Some(2), standby_missing),
        ("shop-example-org", Some(2), standby_missing),
        ("corp", None, ["DirectoryNotRead"].as_slice()),
    ] {
        wait_for(
            &format!("{name} not ready: {waiting_for:?}"),
            Duration::from_secs(30),
            || async {
                let status = domains.get(name).await.ok()?.status?;
                let (ready, reason, _) = condition(&status.conditions, "Ready")?;
                (ready == "False" && waiting_for.contains(&reason.as_str())).then_some(())
            },
        )
        .await;
        let domain = wait_for(&format!("{name} covered users"), Duration::from_secs(30), || async {
            let latest = domains.get(name).await.ok()?;
            (latest.status.as_ref()?.users.as_ref().map(|u| u.covered) == covered).then_some(latest)
        })
        .await;
        let status = domain.status.as_ref().expect("status");
        assert!(
            matches!(status.phase, Some(DomainPhase::Provisioning | DomainPhase::Degraded)),
            "{name}: {:?}",
            status.phase
        );
        assert_eq!(status.observed_generation, domain.metadata.generation, "{name}");
        assert_eq!(
            condition(&status.conditions, "Conflict").map(|c| c.0),
            Some("False".into()),
            "{name}"
        );
        assert_eq!(status.claimed_domain.as_deref(), Some(domain.spec.domain.as_str()));
        for c in &status.conditions {
            assert_eq!(c.observed_generation, domain.metadata.generation, "{name} {}", c.type_);
        }
    }
    let users: Api<ContinuityUser> = scene.api();
    // Both receive mail on the standby; Bob, without an emergency password, cannot log in.
    for (name, ready_reason) in [("alice", "StandbyNotReady"), ("bob", "EmergencyPasswordMissing")] {
        reach(&users, name, "Covered", "True", "Covered").await;
        reach(&users, name, "Ready", "False", ready_reason).await;
    }
    let users_status = domains
        .get("example-com")
        .await
        .expect("example-com")
        .status
        .and_then(|s| s.users);
    assert_eq!(
        users_status.map(|u| (u.without_emergency_password, u.without_emergency_password_addresses)),
        Some((1, vec!["bob@example.com".to_owned()]))
    );
    scene
        .coverage_lists("example-com", &["alice@example.com".into(), "bob@example.com".into()])
        .await;
    let probed = wait_for("example-com probed", Duration::from_secs(30), || async {
        let status = domains.get("example-com").await.ok()?.status?;
        let (reachable, reason, _) = condition(&status.conditions, "PrimaryReachable")?;
        (reachable == "False" && reason != "NotProbed").then_some(reason)
    })
    .await;
    let classes = ProbeFailureClass::ALL.map(ProbeFailureClass::name);
    assert!(
        classes.contains(&probed.as_str()),
        "mx.example.com is not ours to reach: {probed}"
    );
    assert_eq!(
        scene.operator.metric_sum("continuity_reconcile_errors_total").await,
        0.0,
        "{}",
        scene.operator.log_text()
    );

    // The examples claim fixed mail domains; release them for later runs on this cluster.
    Api::<Namespace>::all(scene.client.clone())
        .delete(&scene.namespace, &DeleteParams::default())
        .await
        .expect("deleting the examples namespace");
}

#[tokio::test]
async fn children_are_owned_and_garbage_collected_with_their_domain() {
    let scene = Scene::new("gc").await;
    scene.domain_with_user("d", "u").await;
    let map = scene.coverage_lists("d", &[format!("u@{}", scene.mail)]).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let domain = domains.get("d").await.expect("domain");
    let owner = map
        .owner_references()
        .first()
        .expect("the coverage ConfigMap has an ownerReference");
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("ContinuityDomain", "d"));
    assert_eq!(Some(&owner.uid), domain.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));

    domains
        .delete("d", &DeleteParams::background())
        .await
        .expect("deleting the domain");
    // kube-controller-manager's garbage collector, not the operator, removes the child.
    let maps: Api<ConfigMap> = scene.api();
    wait_for(
        "the garbage collector to delete d-coverage",
        Duration::from_secs(60),
        || async { matches!(maps.get_opt("d-coverage").await, Ok(None)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_hand_edited_child_is_put_back() {
    let scene = Scene::new("drift").await;
    scene.domain_with_user("d", "u").await;
    let expected = [format!("u@{}", scene.mail)];
    scene.coverage_lists("d", &expected).await;
    // An edit that keeps the spec-hash annotation: only the content tells it apart.
    let edit = serde_json::json!({
        "binaryData": { "addresses.gz": packed::pack("intruder@example.org\n") }
    });
    let maps: Api<ConfigMap> = scene.api();
    maps.patch("d-coverage", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("editing the child");
    scene.coverage_lists("d", &expected).await;
    // A workload's spec, which the operator's cache does not hold: scaled to zero by hand, the
    // mail StatefulSet is scaled back.
    let sets: Api<StatefulSet> = scene.api();
    let scaled = serde_json::json!({ "spec": { "replicas": 0 } });
    sets.patch("d-standby-mail", &PatchParams::default(), &Patch::Merge(&scaled))
        .await
        .expect("scaling the mail StatefulSet by hand");
    wait_for(
        "the mail StatefulSet back at one replica",
        Duration::from_secs(30),
        || async {
            let set = sets.get("d-standby-mail").await.ok()?;
            (set.spec?.replicas == Some(1)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_domain_claimed_in_another_namespace_is_a_conflict_until_released() {
    let client = client().await;
    let first_ns = namespace(&client, "claim-first").await;
    let mail = mail_domain("claimed");
    // The first claimant lives in a namespace this operator does not reconcile: claims are
    // checked cluster-wide anyway.
    let first = apply_yaml(&client, &first_ns, &domain_yaml("first", &mail)).await;
    created_after(&client, &first[0]).await;
    let scene = Scene::new("claim-later").await;
    scene.apply(&domain_yaml("later", &mail)).await;
    scene.apply(&user_yaml("u", "later", &format!("u@{mail}"))).await;

    let domains: Api<ContinuityDomain> = scene.api();
    let later = reach(&domains, "later", "Conflict", "True", "DomainClaimedElsewhere").await;
    let status = later.status.expect("status");
    assert_eq!(status.phase, Some(DomainPhase::Error));
    let (_, _, message) = condition(&status.conditions, "Conflict").expect("Conflict condition");
    assert!(
        !message.contains(&first_ns),
        "another tenant's namespace is not named: {message}"
    );
    assert_eq!(
        condition(&status.conditions, "Ready").map(|c| c.1),
        Some("DomainClaimedElsewhere".into())
    );
    assert_eq!(status.claimed_domain, None);
    // It does not act: no children.
    let maps: Api<ConfigMap> = scene.api();
    assert!(maps.get_opt("later-coverage").await.expect("get").is_none());
    // Its user is told why it is not covered.
    let users: Api<ContinuityUser> = scene.api();
    reach(&users, "u", "Covered", "False", "DomainNotActing").await;
    // A Warning Event names the problem.
    let events: Api<Event> = scene.api();
    wait_for("a DomainClaimedElsewhere Event", Duration::from_secs(10), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("DomainClaimedElsewhere") && e.type_.as_deref() == Some("Warning"))
            .then_some(())
    })
    .await;

    // Releasing the first claim lets the later one act.
    Api::<ContinuityDomain>::namespaced(client.clone(), &first_ns)
        .delete("first", &DeleteParams::default())
        .await
        .expect("deleting the first claimant");
    reach(&domains, "later", "Conflict", "False", "DomainClaimAccepted").await;
    scene.coverage_lists("later", &[format!("u@{mail}")]).await;
    reach(&users, "u", "Covered", "True", "Covered").await;
}

#[tokio::test]
async fn the_later_of_two_claims_in_one_namespace_is_the_conflict() {
    let scene = Scene::new("claim-same").await;
    let first = apply_yaml(&scene.client, &scene.namespace, &domain_yaml("zz-first", &scene.mail)).await;
    created_after(&scene.client, &first[0]).await;
    scene.apply(&domain_yaml("aa-second", &scene.mail)).await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "aa-second", "Conflict", "True", "DomainClaimedElsewhere").await;
    reach(&domains, "zz-first", "Conflict", "False", "DomainClaimAccepted").await;
}

#[tokio::test]
async fn rules_the_old_api_server_drops_are_enforced_by_the_operator() {
    let scene = Scene::new("cel").await;
    // `exclude` with SelectedUsers breaks a CEL rule; the 1.20 API server accepts it anyway.
    let mail = &scene.mail;
    scene
        .apply(&format!(
            "{}  users:\n    scope: SelectedUsers\n    exclude: [x@{mail}]\n",
            domain_yaml("d", mail)
        ))
        .await;
    let domain = reach(&scene.api::<ContinuityDomain>(), "d", "Ready", "False", "InvalidSpec").await;
    let status = domain.status.expect("status");
    assert_eq!(status.phase, Some(DomainPhase::Error));
    let (_, _, message) = condition(&status.conditions, "Ready").expect("Ready");
    assert!(
        message.contains("users.exclude is only used with scope AllUsers"),
        "{message}"
    );
    let maps: Api<ConfigMap> = scene.api();
    assert!(
        maps.get_opt("d-coverage").await.expect("get").is_none(),
        "an invalid domain does not act"
    );
}

#[tokio::test]
async fn a_claimed_domain_name_cannot_be_changed_and_working_parts_stay() {
    let scene = Scene::new("immutable").await;
    scene.domain_with_user("d", "u").await;
    let before = scene.coverage_lists("d", &[format!("u@{}", scene.mail)]).await;

    let other = mail_domain("elsewhere");
    scene.apply(&domain_yaml("d", &other)).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let domain = reach(&domains, "d", "Ready", "False", "DomainImmutable").await;
    let status = domain.status.expect("status");
    assert_eq!(status.claimed_domain.as_deref(), Some(scene.mail.as_str()));
    assert!(
        condition(&status.conditions, "Ready")
            .expect("Ready")
            .2
            .contains("spec.domain is immutable")
    );
    let after = scene
        .api::<ConfigMap>()
        .get("d-coverage")
        .await
        .expect("the coverage ConfigMap is kept");
    assert_eq!(
        (after.data, after.binary_data),
        (before.data, before.binary_data),
        "the working parts are left as they were"
    );

    scene.apply(&domain_yaml("d", &scene.mail)).await;
    reach(&domains, "d", "Ready", "False", "StandbyNotReady").await;
}

#[tokio::test]
async fn a_steady_state_reconcile_writes_nothing() {
    let scene = Scene::new("steady").await;
    // A healthy primary, so that probing settles too.
    let primary = crate::peers::Peer::start(crate::peers::Behavior::Smtp(None)).await;
    let health = format!(
        "host: localhost\n    port: {}\n  healthCheck:\n    periodSeconds: 1\n    timeoutSeconds: 1\n    successThreshold: 1",
        primary.port
    );
    scene
        .apply(&domain_yaml("d", &scene.mail).replace(&format!("host: mx.{}", scene.mail), &health))
        .await;
    scene.apply(&user_yaml("u", "d", &format!("u@{}", scene.mail))).await;
    let (domains, users): (Api<ContinuityDomain>, Api<ContinuityUser>) = (scene.api(), scene.api());
    wait_for("one covered user", Duration::from_secs(30), || async {
        (domains.get("d").await.ok()?.status?.users?.covered == 1).then_some(())
    })
    .await;
    reach(&users, "u", "Covered", "True", "Covered").await;
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;
    let operator = &scene.operator;
    operator.settled().await;
    let writes = operator.metric_sum("continuity_api_writes_total").await;
    let reconciles = operator.metric_sum("continuity_reconciliations_total").await;
    assert!(writes > 0.0 && reconciles > 0.0, "the operator has been working");
    // Metadata-only edits trigger reconciles of both objects (a user change also reconciles
    // its domain) without changing anything the operator derives.
    for round in 0..3 {
        let patch = serde_json::json!({ "metadata": { "labels": { "touched": round.to_string() } } });
        domains
            .patch("d", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("labelling the domain");
        users
            .patch("u", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("labelling the user");
    }
    wait_for(
        "the touched objects to be reconciled",
        Duration::from_secs(30),
        || async { (operator.metric_sum("continuity_reconciliations_total").await >= reconciles + 2.0).then_some(()) },
    )
    .await;
    // A write held back by the memo would be sent once it forgets.
    operator.probes_pass(Operator::PAST_THE_MEMO).await;
    assert_eq!(
        operator.metric_sum("continuity_api_writes_total").await,
        writes,
        "reconciles without a change must not write\n{}",
        operator.log_text()
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let scene = Scene::new("endpoints").await;
    let operator = &scene.operator;
    wait_for("/readyz to pass", Duration::from_secs(30), || async {
        let (code, body) = operator.get("/readyz").await?;
        (code == 200 && body.contains("leading")).then_some(())
    })
    .await;
    let (code, _) = operator.get("/healthz").await.expect("/healthz answers");
    assert_eq!(code, 200);
    scene.apply(&domain_yaml("d", &scene.mail)).await;
    wait_for("a counted reconcile", Duration::from_secs(30), || async {
        (operator
            .metric(r#"continuity_reconciliations_total{kind="ContinuityDomain"}"#)
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    let body = operator.metrics().await;
    for family in [
        "continuity_reconcile_duration_seconds_bucket",
        "continuity_api_writes_total",
        "continuity_leader 1",
    ] {
        assert!(body.contains(family), "{family} in\n{body}");
    }
}
