//! Deleting a domain whose standby still holds mail for its primary: the deletion waits (the
//! hand-back finalizer, a `Deactivating` condition naming how many messages wait) until the
//! force-delete annotation says otherwise. The primary here never answers (its name does not
//! resolve), so the held message cannot leave.

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::RouteTarget;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::common::{apply_yaml, client, condition, namespace, wait_for};
use crate::mail::{send, service};
use crate::world::domain_yaml;

#[tokio::test]
async fn deletion_waits_for_held_mail_unless_forced() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-deactivate").await;
    let mail = format!("{namespace}.example.test");
    let alice = format!("alice@{mail}");
    let spec = format!(
        "  primary:\n    host: absent.{namespace}.svc.cluster.local\n    port: 25\n  healthCheck:\n    periodSeconds: 2\n    timeoutSeconds: 1\n    failureThreshold: 2\n"
    );
    apply_yaml(
        &client,
        &namespace,
        &domain_yaml("gone", &mail, &spec, &[("alice", "alice-gone-password")]),
    )
    .await;
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    wait_for("the route to the standby", Duration::from_secs(300), || async {
        let status = domains.get("gone").await.ok()?.status?;
        (status.routing?.target == RouteTarget::Standby).then_some(())
    })
    .await;

    let smtp = service(&client, &namespace, "gone-standby-mail", 25).await;
    let id = format!("held-{namespace}@e2e.test");
    wait_for("the standby taking mail", Duration::from_secs(120), || async {
        send(smtp, "sender@e2e.test", &alice, &id).await.ok()
    })
    .await;
    wait_for(
        "the held message in status, and the finalizer",
        Duration::from_secs(120),
        || async {
            let domain = domains.get("gone").await.ok()?;
            let pending = domain.status.as_ref()?.messages.as_ref()?.pending;
            (pending == 1
                && domain
                    .finalizers()
                    .iter()
                    .any(|f| f == "continuity.mailops.io/handback"))
            .then_some(())
        },
    )
    .await;

    domains
        .delete("gone", &DeleteParams::default())
        .await
        .expect("deleting the domain");
    let waiting = wait_for("the deletion waiting", Duration::from_secs(120), || async {
        let domain = domains.get("gone").await.ok()?;
        let (status, reason, message) = condition(&domain.status?.conditions, "Deactivating")?;
        (status == "True" && reason == "HandBackPending").then_some(message)
    })
    .await;
    assert!(waiting.contains("1 held messages"), "{waiting}");

    let patch = serde_json::json!({ "metadata": { "annotations": { "continuity.mailops.io/force-delete": "true" } } });
    domains
        .patch("gone", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("forcing the deletion");
    wait_for("the domain gone", Duration::from_secs(120), || async {
        domains.get_opt("gone").await.ok()?.is_none().then_some(())
    })
    .await;
}
