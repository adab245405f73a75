//! The CRDs install, become Established, and the API server enforces their schema.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

use crate::common::*;

#[tokio::test]
async fn crds_are_established_with_short_names_and_printer_columns() {
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for (name, short) in [
        ("continuitydomains.continuity.mailops.io", "cdom"),
        ("continuityusers.continuity.mailops.io", "cuser"),
    ] {
        let crd = crds.get(name).await.expect("the CRD exists");
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        assert!(established, "{name} is Established");
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| s.iter().any(|s| s == short))
        );
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .expect("printer columns");
        assert!(columns.len() >= 5, "{name} has printer columns");
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
    }
}

/// Sends `spec` as a ContinuityDomain or ContinuityUser and returns the API server's error.
async fn rejection(kind: &str, spec: serde_json::Value) -> kube::core::Status {
    let client = client().await;
    let namespace = namespace(&client, "schema").await;
    let gvk = GroupVersionKind::gvk("continuity.mailops.io", "v1alpha1", kind);
    let plural = format!("{}s", kind.to_lowercase());
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let object = serde_json::json!({
        "apiVersion": "continuity.mailops.io/v1alpha1",
        "kind": kind,
        "metadata": { "name": "invalid" },
        "spec": spec,
    });
    match api
        .patch("invalid", &PatchParams::apply(TEST_MANAGER), &Patch::Apply(&object))
        .await
    {
        Ok(_) => panic!("the API server accepted an invalid {kind}: {spec}"),
        Err(kube::Error::Api(status)) => *status,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn assert_invalid(status: &kube::core::Status, field: &str, says: &str) {
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains(field) && status.message.contains(says),
        "expected {field:?} and {says:?} in the API server's message: {}",
        status.message
    );
}

#[tokio::test]
async fn the_schema_rejects_a_bad_domain_name() {
    for bad in [
        "Example.COM",
        "no_underscores.example",
        "localhost",
        "trailing-.example.com",
        "10.0.0.1",
    ] {
        let status = rejection(
            "ContinuityDomain",
            serde_json::json!({ "domain": bad, "primary": { "host": "mx.example.com" } }),
        )
        .await;
        assert_invalid(&status, "spec.domain", "should match");
    }
}

#[tokio::test]
async fn the_schema_rejects_an_address_without_at_sign() {
    let spec = serde_json::json!({ "domainRef": { "name": "d" }, "address": "alice.example.com" });
    let status = rejection("ContinuityUser", spec).await;
    assert_invalid(&status, "spec.address", "should match");
}

#[tokio::test]
async fn the_schema_rejects_out_of_range_thresholds_and_unknown_enums() {
    let base = |health: serde_json::Value| serde_json::json!({ "domain": "example.com", "primary": { "host": "mx.example.com" }, "healthCheck": health });
    let status = rejection("ContinuityDomain", base(serde_json::json!({ "failureThreshold": 0 }))).await;
    assert_invalid(
        &status,
        "spec.healthCheck.failureThreshold",
        "should be greater than or equal to 1",
    );
    let status = rejection(
        "ContinuityDomain",
        base(serde_json::json!({ "successThreshold": 1000 })),
    )
    .await;
    assert_invalid(
        &status,
        "spec.healthCheck.successThreshold",
        "should be less than or equal to 100",
    );
    let status = rejection(
        "ContinuityDomain",
        base(serde_json::json!({ "failureClasses": ["Sometimes"] })),
    )
    .await;
    assert_invalid(&status, "spec.healthCheck.failureClasses", "Unsupported value");
    let status = rejection(
        "ContinuityDomain",
        serde_json::json!({ "domain": "example.com", "primary": { "host": "mx.example.com", "port": 70000 } }),
    )
    .await;
    assert_invalid(&status, "spec.primary.port", "should be less than or equal to 65535");
}

#[tokio::test]
async fn the_schema_requires_exactly_one_directory_source() {
    let spec = serde_json::json!({
        "domain": "example.com",
        "primary": { "host": "mx.example.com" },
        "users": { "scope": "AllUsers", "directory": {
            "static": { "addresses": ["a@example.com"] },
            "ldap": { "url": "ldap://ldap.example.com", "baseDN": "dc=example,dc=com" }
        } }
    });
    let status = rejection("ContinuityDomain", spec).await;
    assert_invalid(&status, "spec.users.directory", "should have at most 1 properties");
}

/// Checks the stored object, not the Rust struct (whose serde defaults would hide a missing
/// schema default).
#[tokio::test]
async fn defaults_are_filled_in_by_the_api_server() {
    let client = client().await;
    let namespace = namespace(&client, "defaults").await;
    let mail = mail_domain("defaults");
    let stored = apply_yaml(&client, &namespace, &domain_yaml("d", &mail))
        .await
        .remove(0);
    let spec = &stored.data["spec"];
    assert_eq!(spec["primary"]["port"], 25);
    assert_eq!(spec["primary"]["tls"], "Opportunistic");
    assert_eq!(spec["healthCheck"]["periodSeconds"], 3);
    assert_eq!(spec["healthCheck"]["failureThreshold"], 3);
    assert_eq!(spec["activation"]["mode"], "Automatic");
    assert_eq!(spec["users"]["scope"], "SelectedUsers");
    assert_eq!(spec["archive"]["retentionDays"], 90);
}
