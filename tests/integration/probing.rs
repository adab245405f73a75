//! Probing does not wait for a reconcile turn: a restarted operator probes every domain that
//! acted on its current spec as soon as its watch lists it, even when no reconcile can run.

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;

use crate::common::*;
use crate::peers::{Behavior, Peer};

/// An operator identity that may do its whole job in `namespace` except list Endpoints: its
/// Endpoints cache never syncs, so no reconcile ever acts (a reconcile waits for every cache).
async fn starved_operator(scene: &Scene) -> std::path::PathBuf {
    let namespace = &scene.namespace;
    let name = format!("starved-{namespace}");
    let created = PostParams::default();
    Api::<ServiceAccount>::namespaced(scene.client.clone(), namespace)
        .create(
            &created,
            &serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).expect("a ServiceAccount"),
        )
        .await
        .expect("creating the ServiceAccount");
    let subject = serde_json::json!([{ "kind": "ServiceAccount", "name": name, "namespace": namespace }]);
    let everything = ["get", "list", "watch", "create", "update", "patch", "delete"];
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "rules": [
            { "apiGroups": ["continuity.mailops.io"], "resources": ["continuitydomains", "continuitydomains/status", "continuityusers", "continuityusers/status"], "verbs": everything },
            { "apiGroups": [""], "resources": ["configmaps", "secrets", "services", "events"], "verbs": everything },
            { "apiGroups": ["apps"], "resources": ["statefulsets", "deployments"], "verbs": everything },
            { "apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies", "ingresses"], "verbs": everything },
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": everything },
            { "apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": everything },
        ],
    }))
    .expect("a Role");
    Api::<Role>::namespaced(scene.client.clone(), namespace)
        .create(&created, &role)
        .await
        .expect("creating the Role");
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": subject,
    }))
    .expect("a RoleBinding");
    Api::<RoleBinding>::namespaced(scene.client.clone(), namespace)
        .create(&created, &binding)
        .await
        .expect("creating the RoleBinding");
    // Claims are checked against every namespace.
    let claims: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "rules": [{ "apiGroups": ["continuity.mailops.io"], "resources": ["continuitydomains"], "verbs": ["list", "watch"] }],
    }))
    .expect("a ClusterRole");
    Api::<ClusterRole>::all(scene.client.clone())
        .create(&created, &claims)
        .await
        .expect("creating the ClusterRole");
    let cluster_binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
        "subjects": subject,
    }))
    .expect("a ClusterRoleBinding");
    Api::<ClusterRoleBinding>::all(scene.client.clone())
        .create(&created, &cluster_binding)
        .await
        .expect("creating the ClusterRoleBinding");
    service_account_kubeconfig(&scene.client, (namespace, &name)).await
}

#[tokio::test]
async fn a_restarted_operator_probes_acting_domains_before_any_reconcile() {
    let mut scene = Scene::new("probing").await;
    let primary = Peer::start(Behavior::Smtp(None)).await;
    scene.apply(&probed_domain("d", &scene.mail, primary.port, "")).await;
    standby_ready(&scene, "d").await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "Ready", "True", "Armed").await;
    assert!(scene.operator.terminate().await.success());

    let kubeconfig = starved_operator(&scene).await;
    scene.operator = Operator::start(OperatorOptions {
        kubeconfig,
        ..OperatorOptions::scoped(&scene.namespace)
    });
    let series = format!(r#"continuity_primary_up{{namespace="{}",name="d"}}"#, scene.namespace);
    wait_for(
        "the domain probed by the new operator",
        Duration::from_secs(30),
        || async { (scene.operator.metric(&series).await == 1.0).then_some(()) },
    )
    .await;
    // No reconcile acted: the operator is still waiting for its caches.
    let (code, _) = scene.operator.get("/readyz").await.expect("/readyz answers");
    assert_ne!(code, 200, "the starved operator never synced its caches");
    assert!(
        scene.operator.log_text().contains("endpoints"),
        "its Endpoints watch is refused:\n{}",
        scene.operator.log_text()
    );
}
