//! Checks, when this replica starts leading, that the provider's settings can work where the
//! API server cannot tell: today, that some namespace has the labels the standby
//! NetworkPolicies admit the gateway's SMTP from. The default selects the operator's
//! namespace by `kubernetes.io/metadata.name`, a label Kubernetes sets itself only since 1.21;
//! on 1.20 nothing matches until the provider sets it, and every standby would refuse the
//! gateway's mail at the moment it is needed. Warnings only: nothing here stops the operator.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::{Api, Client};
use tracing::{debug, warn};

/// Warns when no namespace carries `labels` (the gateway's namespace selector).
pub async fn gateway_namespace(client: &Client, labels: &BTreeMap<String, String>) {
    if labels.is_empty() {
        return;
    }
    let selector: Vec<String> = labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
    let selector = selector.join(",");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces
        .list_metadata(&ListParams::default().labels(&selector).limit(1))
        .await
    {
        Ok(found) if found.items.is_empty() => {
            let fix = labels
                .get("kubernetes.io/metadata.name")
                .map(|name| format!(" On Kubernetes 1.20, label it: kubectl label namespace {name} kubernetes.io/metadata.name={name}"))
                .unwrap_or_default();
            warn!(
                selector,
                "no namespace has the labels the standby NetworkPolicies admit the gateway's SMTP from: no standby would accept its mail (--gateway-namespace-labels).{fix}"
            );
        }
        Ok(_) => debug!(selector, "the gateway's namespace is found"),
        // Without the right to list namespaces (domain grants off), there is nothing to check with.
        Err(error) => debug!(selector, %error, "cannot check the gateway's namespace"),
    }
}
