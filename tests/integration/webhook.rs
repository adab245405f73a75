//! The validating admission webhook, called for real: the operator binary serves it over
//! https with a certificate from a private CA, and the test control plane's API server calls
//! it by URL (a ValidatingWebhookConfiguration that selects only the test's namespace, so
//! tests running beside it are untouched). What a user sees is checked: `kubectl apply`'s
//! refusal message and the `Warning` headers it prints.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use continuity_operator::api::{ContinuityDomain, ContinuityUser};
use continuity_operator::webhook::{DOMAINS_PATH, USERS_PATH};

use crate::common::*;
use crate::peers::PrivateCa;

/// Registers the operator's webhook for `namespace`, refusing writes when it cannot be reached
/// (so a test cannot pass because the webhook was never called).
async fn register(client: &Client, name: &str, namespace: &str, addr: std::net::SocketAddr, ca_pem: &str) {
    let label = serde_json::json!({ "metadata": { "labels": { "continuity-test/webhook": name } } });
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("labelling the namespace");
    let ca = k8s_openapi::ByteString(ca_pem.as_bytes().to_vec());
    let hook = |hook_name: &str, path: &str, resource: &str| {
        serde_json::json!({
            "name": hook_name,
            "clientConfig": { "url": format!("https://{addr}{path}"), "caBundle": ca },
            "rules": [{
                "apiGroups": ["continuity.mailops.io"], "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"], "resources": [resource]
            }],
            // Kubernetes 1.20 (the test control plane) has no kubernetes.io/metadata.name label.
            "namespaceSelector": { "matchLabels": { "continuity-test/webhook": name } },
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10
        })
    };
    let configuration: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": name },
        "webhooks": [
            hook("domains.continuity.mailops.io", DOMAINS_PATH, "continuitydomains"),
            hook("users.continuity.mailops.io", USERS_PATH, "continuityusers"),
        ]
    }))
    .expect("a webhook configuration");
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .expect("registering the webhook");
}

/// Creates `yaml` (one object) in `namespace`; the refusal's message if refused.
async fn create<K>(client: &Client, namespace: &str, yaml: &str) -> Result<K, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_saphyr::from_str(yaml).expect("valid YAML");
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) => status.message,
            other => panic!("creating failed for another reason than a refusal: {other}"),
        })
}

/// Merge-patches ContinuityDomain `name`: (HTTP status, body, the `Warning` headers).
async fn patch_domain(
    client: &Client,
    namespace: &str,
    name: &str,
    patch: serde_json::Value,
) -> (u16, String, Vec<String>) {
    let request = kube::core::Request::new(format!(
        "/apis/continuity.mailops.io/v1alpha1/namespaces/{namespace}/continuitydomains"
    ))
    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
    .expect("a patch request")
    .map(kube::client::Body::from);
    let response = client.send(request).await.expect("the API server answers");
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let body = response.into_body().collect_bytes().await.expect("a body");
    (status, String::from_utf8_lossy(&body).into_owned(), warnings)
}

#[tokio::test]
async fn the_api_server_calls_the_webhook_which_refuses_what_the_controller_would_not_act_on() {
    let ca = PrivateCa::new();
    let certs = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("webhook-certs"));
    std::fs::create_dir_all(&certs).expect("a certificate directory");
    std::fs::write(certs.join("tls.crt"), &ca.chain_pem).expect("writing tls.crt");
    std::fs::write(certs.join("tls.key"), &ca.key_pem).expect("writing tls.key");
    let scene = Scene::with_flags(
        "webhook",
        &[
            &format!("--webhook-cert-dir={}", certs.display()),
            "--webhook-addr=127.0.0.1:0",
            "--allowed-image-prefixes=registry.provider.example/",
        ],
    )
    .await;
    let client = &scene.client;
    let ns = &scene.namespace;
    let configuration = unique("continuity-webhook");
    register(client, &configuration, ns, scene.operator.webhook().await, &ca.ca_pem).await;

    // A rule the CRD cannot state (the provider's image policy) refuses the create. The API
    // server picks new webhook configurations up from a watch: dry runs tell when it has.
    let imaged = format!(
        "{}  standby:\n    mail:\n      postfixImage: evil.example/postfix:1\n",
        domain_yaml("imaged", &scene.mail)
    );
    let object: ContinuityDomain = serde_saphyr::from_str(&imaged).expect("valid YAML");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_for(
        "the API server to call the webhook",
        Duration::from_secs(30),
        || async { scene.api::<ContinuityDomain>().create(&dry_run, &object).await.err() },
    )
    .await;
    let refusal = create::<ContinuityDomain>(client, ns, &imaged).await.unwrap_err();
    assert!(
        refusal.contains("admission webhook \"domains.continuity.mailops.io\" denied the request")
            && refusal.contains("spec.standby.mail.postfixImage"),
        "{refusal}"
    );

    // A CEL rule of the CRD, which this API server (Kubernetes 1.20) does not evaluate.
    let hasty = format!(
        "{}  healthCheck:\n    periodSeconds: 2\n    timeoutSeconds: 5\n",
        domain_yaml("hasty", &scene.mail)
    );
    let refusal = create::<ContinuityDomain>(client, ns, &hasty).await.unwrap_err();
    assert!(
        refusal.contains("timeoutSeconds must not exceed periodSeconds"),
        "{refusal}"
    );

    // A mail domain the provider did not grant this namespace.
    let ungranted = domain_yaml("ungranted", "elsewhere.example.org");
    let refusal = create::<ContinuityDomain>(client, ns, &ungranted).await.unwrap_err();
    assert!(
        refusal.contains("may not serve mail domain elsewhere.example.org"),
        "{refusal}"
    );

    // A mail domain another tenant serves: refused, and that tenant is not named.
    let other = namespace(client, "webhook-other").await;
    let taken = mail_domain("taken");
    create::<ContinuityDomain>(client, &other, &domain_yaml("first", &taken))
        .await
        .expect("the first claim, outside the webhook's namespaces");
    // The webhook reads claims from a watch: wait (dry runs) until it has seen the first.
    let second: ContinuityDomain = serde_saphyr::from_str(&domain_yaml("second", &taken)).expect("valid YAML");
    let refusal = wait_for(
        "the webhook to see the first claim",
        Duration::from_secs(30),
        || async {
            match scene.api::<ContinuityDomain>().create(&dry_run, &second).await {
                Err(kube::Error::Api(status)) => Some(status.message),
                _ => None,
            }
        },
    )
    .await;
    create::<ContinuityDomain>(client, ns, &domain_yaml("second", &taken))
        .await
        .expect_err("the second claim is refused");
    assert!(
        refusal.contains("already served by a ContinuityDomain in another namespace"),
        "{refusal}"
    );
    assert!(!refusal.contains(&other) && !refusal.contains("first"), "{refusal}");

    // A valid domain and its user are admitted; a user outside the domain is not.
    create::<ContinuityDomain>(client, ns, &domain_yaml("mail", &scene.mail))
        .await
        .expect("a valid domain is admitted");
    create::<ContinuityUser>(
        client,
        ns,
        &user_yaml("alice", "mail", &format!("alice@{}", scene.mail)),
    )
    .await
    .expect("a user of the domain is admitted");
    let refusal = create::<ContinuityUser>(client, ns, &user_yaml("mallory", "mail", "mallory@example.org"))
        .await
        .unwrap_err();
    assert!(
        refusal.contains(&format!("mallory@example.org does not belong to {}", scene.mail)),
        "{refusal}"
    );

    // The switch to AllUsers, once the operator serves SelectedUsers: refused until confirmed,
    // then admitted with a warning naming the user it deletes.
    let domains: Api<ContinuityDomain> = scene.api();
    wait_for("the domain to serve SelectedUsers", Duration::from_secs(60), || async {
        let domain = domains.get("mail").await.ok()?;
        domain
            .status?
            .users?
            .scope
            .filter(|s| *s == continuity_operator::api::domain::UserScope::SelectedUsers)
    })
    .await;
    let all_users = serde_json::json!({ "spec": { "users": {
        "scope": "AllUsers",
        "directory": { "ldap": { "url": "ldap://127.0.0.1:1", "baseDN": "dc=example,dc=test" } }
    } } });
    let (status, body, _) = patch_domain(client, ns, "mail", all_users.clone()).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("deletes this domain's 1 ContinuityUsers (alice)")
            && body.contains("continuity.mailops.io/confirm-scope-change=AllUsers"),
        "{body}"
    );
    let mut confirmed = all_users;
    confirmed["metadata"] =
        serde_json::json!({ "annotations": { "continuity.mailops.io/confirm-scope-change": "AllUsers" } });
    let (status, body, warnings) = patch_domain(client, ns, "mail", confirmed).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("switching to AllUsers deletes 1 ContinuityUsers of mail:"))
            && warnings.iter().any(|w| w.contains("\"alice\"") || w.contains(" alice")),
        "{warnings:?}"
    );

    let denied = scene
        .operator
        .metric("continuity_webhook_admissions_total{kind=\"ContinuityDomain\",result=\"denied\"}")
        .await;
    assert!(denied >= 5.0, "denied domain admissions counted: {denied}");

    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(&configuration, &DeleteParams::default())
        .await
        .expect("removing the webhook");
    let _ = std::fs::remove_dir_all(&certs);
}
