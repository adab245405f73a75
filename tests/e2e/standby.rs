//! A domain's standby on real pods: the mail StatefulSet (with its claim bound to a hostPath
//! volume), the webmail Deployment and their Services come up from the project's images, and
//! the domain reaches `Armed` by itself, with a primary that really answers SMTP.

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::DomainPhase;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;

use crate::common::{apply_yaml, client, namespace, wait_for};
use crate::world::{domain_yaml, mailbox_yaml, pod_ready};

#[tokio::test]
async fn a_domain_with_two_users_comes_up_armed_on_real_pods() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-armed").await;
    let mail = "armed.example.test";
    apply_yaml(&client, &namespace, &mailbox_yaml("primary", mail, None)).await;
    let spec = format!(
        "  primary:\n    host: primary.{namespace}.svc.cluster.local\n    port: 25\n  healthCheck:\n    periodSeconds: 5\n"
    );
    let users = [("alice", "alice-e2e-password"), ("bob", "bob-e2e-password")];
    apply_yaml(&client, &namespace, &domain_yaml("armed", mail, &spec, &users)).await;

    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    let armed = wait_for(
        "the domain Armed, its primary probed Ok",
        Duration::from_secs(300),
        || async {
            let domain = domains.get("armed").await.ok()?;
            let status = domain.status.as_ref()?;
            (status.phase == Some(DomainPhase::Armed) && status.primary.as_ref()?.result == "Ok").then_some(domain)
        },
    )
    .await;
    let status = armed.status.expect("status");
    let primary = status.primary.as_ref().map(|p| p.result.as_str());
    assert_eq!(primary, Some("Ok"), "the primary answers SMTP: {:?}", status.primary);
    let users = status.users.expect("users in status");
    assert_eq!(users.covered, 2);
    assert_eq!(users.without_emergency_password, 0);

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    for component in ["standby-mail", "webmail"] {
        let list = pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/component={component}")))
            .await
            .expect("listing pods");
        assert!(list.items.iter().any(pod_ready), "a {component} pod runs and is ready");
        for pod in &list.items {
            if let Some(seconds) = start_seconds(pod) {
                println!("figure: a {component} pod Ready {seconds}s after it was created");
            }
        }
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, &namespace);
    let claim = claims
        .get("data-armed-standby-mail-0")
        .await
        .expect("the mail volume's claim");
    assert_eq!(claim.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
}

/// Seconds from `pod`'s creation to its Ready condition (the API's timestamps, whole seconds).
fn start_seconds(pod: &Pod) -> Option<i64> {
    let created = pod.metadata.creation_timestamp.as_ref()?.0;
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    Some(ready.as_second() - created.as_second())
}
