//! The operator as a provider installs it: a pod from the chart, with its ServiceAccount and
//! its admission webhook.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, PostParams};

use continuity_operator::api::ContinuityDomain;

use crate::common::{client, mail_domain, namespace, wait_for};
use crate::world::pod_ready;

const NAMESPACE: &str = "continuity-system";
const SELECTOR: &str = "app.kubernetes.io/name=continuity-operator";

#[tokio::test]
async fn the_operator_runs_as_a_pod_holds_the_lease_and_serves_metrics() {
    let client = client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod = wait_for(
        "the operator pod Running and Ready",
        Duration::from_secs(120),
        || async {
            let list = pods.list(&ListParams::default().labels(SELECTOR)).await.ok()?;
            list.items.into_iter().find(pod_ready)
        },
    )
    .await;
    let name = pod.metadata.name.clone().expect("a pod name");
    let spec = pod.spec.expect("pod spec");
    let container = &spec.containers[0];
    assert!(
        container
            .image
            .as_deref()
            .is_some_and(|image| image.starts_with("ghcr.io/mailops/continuity-operator:")),
        "the chart's default image: {:?}",
        container.image
    );

    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    wait_for(
        "the operator pod to hold the Lease",
        Duration::from_secs(60),
        || async {
            let list = leases.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .any(|lease| {
                    lease
                        .spec
                        .and_then(|s| s.holder_identity)
                        .is_some_and(|holder| holder.starts_with(&name))
                })
                .then_some(())
        },
    )
    .await;

    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let service = services
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .expect("listing Services")
        .items
        .into_iter()
        .find(|s| s.metadata.name.as_deref().is_some_and(|n| n.ends_with("-metrics")))
        .expect("the metrics Service");
    let path = format!(
        "/api/v1/namespaces/{NAMESPACE}/services/{}:http-metrics/proxy/metrics",
        service.metadata.name.expect("a name")
    );
    let body = wait_for("/metrics through the Service", Duration::from_secs(60), || async {
        let request = http::Request::get(&path).body(Vec::new()).ok()?;
        client.request_text(request).await.ok()
    })
    .await;
    assert!(body.contains("continuity_leader 1"), "{body}");
}

/// The webhook as the chart installs it: the API server reaches the operator pod through the
/// webhook Service, trusting the chart's generated CA, and refuses what this API server's
/// schema lets through (Kubernetes 1.20 drops the CRD's CEL rules).
#[tokio::test]
async fn the_chart_installed_webhook_refuses_a_spec_the_operator_would_not_act_on() {
    let client = client().await;
    let tenant = namespace(&client, "e2e-webhook").await;
    let domain: ContinuityDomain = serde_saphyr::from_str(&format!(
        "apiVersion: continuity.mailops.io/v1alpha1\nkind: ContinuityDomain\nmetadata:\n  name: hasty\nspec:\n  domain: {}\n  primary:\n    host: mx.example.test\n  healthCheck:\n    periodSeconds: 2\n    timeoutSeconds: 5\n",
        mail_domain("hasty")
    ))
    .expect("valid YAML");
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &tenant);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // Until the operator pod is Ready, the Service has no endpoint and Ignore admits.
    let refusal = wait_for("the webhook to refuse", Duration::from_secs(180), || async {
        match domains.create(&dry_run, &domain).await {
            Err(kube::Error::Api(status)) => Some(status.message),
            _ => None,
        }
    })
    .await;
    assert!(
        refusal.contains("admission webhook \"domains.continuity.mailops.io\" denied the request")
            && refusal.contains("timeoutSeconds must not exceed periodSeconds"),
        "{refusal}"
    );
}
