//! The chart's options for providers running a namespace per customer, through real Helm:
//! the tenants' default roles include our resources, a wrong value fails the install with the
//! schema's message, and the monitoring objects, labels, digest, flags and NetworkPolicy are
//! what the values ask for.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::chart::{chart, helm, install, uninstall};
use crate::common::*;

/// Whether `user` may `verb` ContinuityDomains or ContinuityUsers in `namespace`.
async fn user_may(client: &Client, user: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec!["system:authenticated".into()]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some("continuity.mailops.io".into()),
                resource: Some(resource.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// Stand-ins for the Prometheus Operator's PodMonitor and PrometheusRule CRDs, which this
/// control plane lacks: schemaless, so the API server stores what the chart renders and the
/// test reads it back (the Prometheus Operator itself is not run here).
async fn monitoring_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (kind, plural) in [("PodMonitor", "podmonitors"), ("PrometheusRule", "prometheusrules")] {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "metadata": { "name": format!("{plural}.monitoring.coreos.com") },
            "spec": {
                "group": "monitoring.coreos.com",
                "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List") },
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
                }],
            },
        }))
        .expect("a CRD");
        // Another test may have created it first.
        let _ = crds.create(&PostParams::default(), &crd).await;
        established(&crds, &format!("{plural}.monitoring.coreos.com")).await;
    }
}

fn monitoring(client: &Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

#[tokio::test]
async fn a_wrong_value_fails_the_install_with_the_schemas_message() {
    let kubeconfig = kubeconfig().display().to_string();
    let (chart, namespace) = (chart(), unique("chart-schema"));
    // Helm names the value by its JSON pointer, and says what is wrong with it.
    for (values, names) in [
        (
            json!({ "logging": { "format": "yaml" } }),
            ["/logging/format", "must be one of 'json', 'text'"],
        ),
        (json!({ "replicaCount": "two" }), ["/replicaCount", "want integer"]),
        (json!({ "replicaCont": 2 }), ["'replicaCont'", "not allowed"]),
        (
            json!({ "extraArgs": ["resync-interval=30m"] }),
            ["/extraArgs/0", "does not match pattern '^--'"],
        ),
        (
            json!({ "healthChecks": { "statusHeartbeat": "10 minutes" } }),
            ["/healthChecks/statusHeartbeat", "'10 minutes' does not match"],
        ),
    ] {
        let release = unique("bad");
        let values_text = values.to_string();
        let (ok, output) = helm(&[
            "install",
            &release,
            &chart,
            "--namespace",
            &namespace,
            "--kubeconfig",
            &kubeconfig,
            "--values",
            &values_text,
        ]);
        assert!(!ok, "helm installed the chart with {values}: {output}");
        for name in names {
            assert!(
                output.contains(name),
                "the refusal of {values} names {name:?}: {output}"
            );
        }
    }
}

#[tokio::test]
async fn an_install_for_providers_opens_the_tenant_roles_and_ships_monitoring() {
    let client = client().await;
    monitoring_crds(&client).await;
    let release_ns = unique("chart-options");
    let release = unique("opts");
    let fullname = format!("{release}-continuity-operator");
    let digest = format!("sha256:{}", "ab".repeat(32));
    install(
        &release,
        &release_ns,
        json!({
            "crds": { "install": false },
            // Registered for every namespace, a webhook nobody serves here would slow down
            // every test running beside this one.
            "webhook": { "enabled": false },
            "commonLabels": { "mailops.io/team": "mail" },
            "image": { "digest": digest },
            "extraArgs": ["--resync-interval=30m"],
            "extraEnv": [{ "name": "CONTINUITY_EXTRA", "value": "yes" }],
            "metrics": {
                "podMonitor": { "enabled": true, "labels": { "release": "kube-prometheus" } },
                "prometheusRule": { "enabled": true, "disabledAlerts": ["ContinuityActive"] },
            },
            "grafanaDashboard": { "enabled": true },
        }),
        false,
    );

    // Labels, digest, flags.
    let deployment = Api::<Deployment>::namespaced(client.clone(), &release_ns)
        .get(&fullname)
        .await
        .expect("the operator Deployment");
    assert_eq!(
        deployment
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("mailops.io/team"))
            .map(String::as_str),
        Some("mail")
    );
    let template = deployment.spec.expect("spec").template;
    assert_eq!(
        template
            .metadata
            .and_then(|m| m.labels)
            .and_then(|l| l.get("mailops.io/team").cloned())
            .as_deref(),
        Some("mail")
    );
    let container = template.spec.expect("pod spec").containers.remove(0);
    let image = format!("ghcr.io/mailops/continuity-operator@{digest}");
    assert_eq!(container.image.as_deref(), Some(image.as_str()));
    let args = container.args.unwrap_or_default();
    assert!(args.contains(&format!("--agent-image={image}")), "{args:?}");
    assert_eq!(
        args.last().map(String::as_str),
        Some("--resync-interval=30m"),
        "extraArgs come last, so they win: {args:?}"
    );
    assert!(
        container
            .env
            .unwrap_or_default()
            .iter()
            .any(|e| e.name == "CONTINUITY_EXTRA" && e.value.as_deref() == Some("yes"))
    );

    // The NetworkPolicy admits the HTTP port only (the webhook is off).
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), &release_ns)
        .get(&fullname)
        .await
        .expect("the operator's NetworkPolicy");
    let spec = policy.spec.expect("spec");
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
    let ingress = spec.ingress.unwrap_or_default();
    let ports: Vec<String> = ingress
        .iter()
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .filter_map(|port| match port.port {
            Some(IntOrString::String(name)) => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(ports, ["http"], "{ingress:?}");

    // Monitoring: the PodMonitor, the rules less the disabled alert (their templates left to
    // Prometheus), the dashboard.
    let pod_monitor = monitoring(&client, &release_ns, "PodMonitor", "podmonitors")
        .get(&fullname)
        .await
        .expect("the PodMonitor");
    assert_eq!(
        pod_monitor
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("release"))
            .map(String::as_str),
        Some("kube-prometheus")
    );
    assert_eq!(pod_monitor.data["spec"]["podMetricsEndpoints"][0]["port"], "http");
    let rule = monitoring(&client, &release_ns, "PrometheusRule", "prometheusrules")
        .get(&fullname)
        .await
        .expect("the PrometheusRule");
    let shipped: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("charts/continuity-operator/files/alerts.yaml")).expect("alerts.yaml"),
    )
    .expect("alerts.yaml is YAML");
    let mut expected = shipped["groups"].clone();
    for group in expected.as_array_mut().into_iter().flatten() {
        if let Some(rules) = group["rules"].as_array_mut() {
            rules.retain(|r| r["alert"] != "ContinuityActive");
        }
    }
    assert_eq!(
        rule.data["spec"]["groups"], expected,
        "the rules as files/alerts.yaml has them"
    );
    let dashboard = Api::<ConfigMap>::namespaced(client.clone(), &release_ns)
        .get(&format!("{fullname}-dashboard"))
        .await
        .expect("the dashboard ConfigMap");
    assert_eq!(
        dashboard
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("grafana_dashboard"))
            .map(String::as_str),
        Some("1")
    );
    let shipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("charts/continuity-operator/files/dashboard.json"))
            .expect("dashboard.json"),
    )
    .expect("dashboard.json is JSON");
    let installed: serde_json::Value = serde_json::from_str(
        dashboard
            .data
            .as_ref()
            .and_then(|d| d.get("continuity-operator.json"))
            .expect("the dashboard's key"),
    )
    .expect("the installed dashboard is JSON");
    assert_eq!(installed, shipped);

    // A customer bound to the cluster's `edit` role in its namespace manages our resources
    // there, one bound to `view` reads them (the controller manager aggregates the roles).
    let tenant = namespace(&client, "chart-tenant-roles").await;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &tenant);
    for (user, role) in [("alice", "edit"), ("bob", "view")] {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": user },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
        }))
        .expect("a RoleBinding");
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .expect("binding a tenant");
    }
    wait_for("edit to include ContinuityDomains", Duration::from_secs(30), || async {
        user_may(&client, "alice", "create", "continuitydomains", &tenant)
            .await
            .then_some(())
    })
    .await;
    assert!(user_may(&client, "alice", "delete", "continuityusers", &tenant).await);
    wait_for("view to include ContinuityUsers", Duration::from_secs(30), || async {
        user_may(&client, "bob", "list", "continuityusers", &tenant)
            .await
            .then_some(())
    })
    .await;
    assert!(!user_may(&client, "bob", "create", "continuitydomains", &tenant).await);
    assert!(
        !user_may(&client, "alice", "create", "continuitydomains", "default").await,
        "only in her namespace"
    );

    uninstall(&release, &release_ns);
}
