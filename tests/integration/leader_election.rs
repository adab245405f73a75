//! Leader election: of two operator processes only the Lease holder reconciles; when it is
//! killed the other takes over once the Lease expires, and on SIGTERM it releases the Lease
//! before it exits. (How long takeovers take is a figure for a benchmark, not a test.)

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::common::*;

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get(name)
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

async fn converged(domains: &Api<ContinuityDomain>, name: &str) {
    reach(domains, name, "Ready", "False", "StandbyNotReady").await;
}

#[tokio::test]
async fn one_replica_acts_and_another_takes_over_when_it_dies() {
    let client = client().await;
    let namespace = namespace(&client, "election").await;
    let lease_name = "continuity-leader".to_owned();
    let start = |identity: &str| {
        Operator::start(OperatorOptions {
            lease_name: lease_name.clone(),
            identity: identity.to_owned(),
            ..OperatorOptions::scoped(&namespace)
        })
    };
    let mut replicas = [start("replica-a"), start("replica-b")];
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);

    let leader = wait_for("a Lease holder", Duration::from_secs(30), || {
        holder(&leases, &lease_name)
    })
    .await;
    apply_yaml(&client, &namespace, &domain_yaml("before", &mail_domain("election"))).await;
    converged(&domains, "before").await;

    let leader_index = replicas
        .iter()
        .position(|r| r.identity == leader)
        .expect("the holder is one of ours");
    let follower_index = 1 - leader_index;
    {
        let (leader, follower) = (&replicas[leader_index], &replicas[follower_index]);
        assert_eq!(leader.metric("continuity_leader").await, 1.0);
        assert_eq!(follower.metric("continuity_leader").await, 0.0);
        assert!(leader.metric_sum("continuity_reconciliations_total").await >= 1.0);
        assert_eq!(
            follower.metric_sum("continuity_reconciliations_total").await,
            0.0,
            "the standby replica must not reconcile\n{}",
            follower.log_text()
        );
        let (code, body) = follower.get("/readyz").await.expect("/readyz");
        assert_eq!(code, 200, "a standby replica is ready: {body}");
        assert!(body.contains("standby"), "{body}");
    }

    // SIGKILL: the Lease is not released and must expire.
    replicas[leader_index].kill().await;
    let survivor = replicas[follower_index].identity.clone();
    wait_for("the survivor to hold the Lease", Duration::from_secs(30), || async {
        (holder(&leases, &lease_name).await.as_deref() == Some(survivor.as_str())).then_some(())
    })
    .await;

    apply_yaml(&client, &namespace, &domain_yaml("after", &mail_domain("election"))).await;
    converged(&domains, "after").await;

    // SIGTERM: a clean shutdown releases the Lease, so a new standby takes over at once.
    let mut standby = start("replica-c");
    wait_for("replica-c to stand by", Duration::from_secs(30), || async {
        let (code, body) = standby.get("/readyz").await?;
        (code == 200 && body.contains("standby")).then_some(())
    })
    .await;
    let status = replicas[follower_index].terminate().await;
    assert!(status.success(), "a clean shutdown exits 0, got {status}");
    // Released before the exit: nobody holds the Lease, or replica-c already does.
    let after_exit = holder(&leases, &lease_name).await;
    assert!(
        after_exit.is_none() || after_exit.as_deref() == Some("replica-c"),
        "the Lease is still held by {after_exit:?} after a clean shutdown"
    );
    wait_for("replica-c to hold the Lease", Duration::from_secs(30), || async {
        (holder(&leases, &lease_name).await.as_deref() == Some("replica-c")).then_some(())
    })
    .await;
    apply_yaml(&client, &namespace, &domain_yaml("last", &mail_domain("election"))).await;
    converged(&domains, "last").await;
    standby.kill().await;
}
