//! A tenant's ContinuityDomain never takes over an object its domain does not control:
//! another domain's child, or anything else that happens to have the name. Names that cannot
//! name children are refused before they claim a mail domain.

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

use crate::common::*;
use crate::peers::{Behavior, Peer};

fn with_service_name(name: &str, mail: &str, service: &str) -> String {
    format!("{}  routing:\n    serviceName: {service}\n", domain_yaml(name, mail))
}

fn external_name(service: &Service) -> Option<String> {
    service.spec.as_ref()?.external_name.clone()
}

fn controller(service: &Service) -> Option<String> {
    service
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// Deletes the domain and waits until garbage collection has taken its coverage ConfigMap:
/// whatever it owned is gone by then.
async fn delete_and_collect(scene: &Scene, domain: &str) {
    scene
        .api::<ContinuityDomain>()
        .delete(domain, &DeleteParams::default())
        .await
        .expect("deleting the domain");
    let maps: Api<ConfigMap> = scene.api();
    let coverage = format!("{domain}-coverage");
    wait_for(
        "garbage collection of the deleted domain's children",
        Duration::from_secs(60),
        || async { matches!(maps.get_opt(&coverage).await, Ok(None)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn another_domains_next_hop_is_not_taken_over() {
    let scene = Scene::new("thief").await;
    scene.apply(&domain_yaml("a", &scene.mail)).await;
    let services: Api<Service> = scene.api();
    let victim = wait_for("a's next hop", Duration::from_secs(30), || async {
        services.get_opt("a-next-hop").await.ok().flatten()
    })
    .await;
    assert_eq!(controller(&victim).as_deref(), Some("a"));

    let other_mail = mail_domain("thief-other");
    scene.apply(&with_service_name("b", &other_mail, "a-next-hop")).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let thief = reach(&domains, "b", "Ready", "False", "ChildConflict").await;
    let message = condition(&thief.status.expect("status").conditions, "Ready")
        .expect("Ready")
        .2;
    assert!(message.contains("Service/a-next-hop"), "{message}");

    let after = services.get("a-next-hop").await.expect("a's next hop");
    assert_eq!(controller(&after).as_deref(), Some("a"), "still a's");
    assert_eq!(external_name(&after), external_name(&victim), "still a's route");

    delete_and_collect(&scene, "b").await;
    assert!(
        services.get_opt("a-next-hop").await.expect("get").is_some(),
        "deleting the thief leaves a's next hop"
    );
}

#[tokio::test]
async fn an_unrelated_service_is_never_adopted_nor_deleted() {
    let scene = Scene::new("adopt").await;
    let plain =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: plain\nspec:\n  ports:\n  - port: 80\n    protocol: TCP\n";
    scene.apply(plain).await;
    scene.apply(&with_service_name("d", &scene.mail, "plain")).await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "d", "Ready", "False", "ChildConflict").await;
    let services: Api<Service> = scene.api();
    let service = services.get("plain").await.expect("the Service");
    assert_eq!(service.metadata.owner_references, None, "not adopted");
    assert_eq!(service.spec.and_then(|s| s.type_).as_deref(), Some("ClusterIP"));

    delete_and_collect(&scene, "d").await;
    assert!(
        services.get_opt("plain").await.expect("get").is_some(),
        "not deleted with the domain"
    );
}

#[tokio::test]
async fn the_next_hop_cannot_take_the_standby_services_name() {
    let scene = Scene::new("self-hop").await;
    scene
        .apply(&with_service_name("d", &scene.mail, "d-standby-mail"))
        .await;
    let domains: Api<ContinuityDomain> = scene.api();
    let domain = reach(&domains, "d", "Ready", "False", "InvalidSpec").await;
    let message = condition(&domain.status.expect("status").conditions, "Ready")
        .expect("Ready")
        .2;
    assert!(message.contains("standby mail Service"), "{message}");
    let services: Api<Service> = scene.api();
    assert!(
        services.get_opt("d-standby-mail").await.expect("get").is_none(),
        "nothing built"
    );
}

#[tokio::test]
async fn a_name_that_cannot_name_children_claims_nothing() {
    let scene = Scene::new("bad-name").await;
    let dotted = apply_yaml(&scene.client, &scene.namespace, &domain_yaml("has.dots", &scene.mail)).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let refused = reach(&domains, "has.dots", "Ready", "False", "InvalidSpec").await;
    let message = condition(&refused.status.expect("status").conditions, "Ready")
        .expect("Ready")
        .2;
    assert!(message.contains("at most 39"), "{message}");
    // A later domain for the same mail domain gets it: the refused one claimed nothing.
    created_after(&scene.client, &dotted[0]).await;
    scene.apply(&domain_yaml("later", &scene.mail)).await;
    reach(&domains, "later", "Conflict", "False", "DomainClaimAccepted").await;
}

/// A primary that is some other service (here an SSH server's banner) is a protocol error
/// whose status says nothing of what the service sent: the prober is no banner grabber.
#[tokio::test]
async fn status_never_repeats_what_a_non_smtp_peer_sent() {
    let scene = Scene::new("banner").await;
    let ssh = Peer::start(Behavior::Greets(
        "SSH-2.0-OpenSSH_9.2p1 Debian-2 internal-db.corp.example",
    ))
    .await;
    let yaml = domain_yaml("d", &scene.mail).replace(
        &format!("host: mx.{}", scene.mail),
        &format!("host: localhost\n    port: {}", ssh.port),
    );
    scene.apply(&yaml).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let domain = reach(&domains, "d", "PrimaryReachable", "False", "ProtocolError").await;
    let status = serde_json::to_string(&domain.status).expect("status as JSON");
    for leaked in ["SSH-2.0", "OpenSSH", "internal-db"] {
        assert!(!status.contains(leaked), "status repeats {leaked:?}: {status}");
    }
}

/// A tenant's own image would run with the mail pod's privileges: only images under a prefix
/// the provider allows are used; here it allows none.
#[tokio::test]
async fn an_image_the_provider_did_not_allow_never_runs() {
    let scene = Scene::new("own-image").await;
    let yaml = format!(
        "{}  standby:\n    mail:\n      postfixImage: docker.io/someone/postfix-as-root:latest\n",
        domain_yaml("d", &scene.mail)
    );
    refused_as_invalid(&scene, &yaml, "spec.standby.mail.postfixImage").await;
    let sets: Api<StatefulSet> = scene.api();
    assert!(
        sets.get_opt("d-standby-mail").await.expect("get").is_none(),
        "nothing runs"
    );
}

/// An annotation the ingress controller would execute never reaches the Ingress.
#[tokio::test]
async fn a_snippet_annotation_never_reaches_the_ingress() {
    let scene = Scene::new("snippet").await;
    let yaml = format!(
        "{}  webmail:\n    host: webmail.{}\n    annotations:\n      nginx.ingress.kubernetes.io/server-snippet: \"location /x {{ return 200; }}\"\n",
        domain_yaml("d", &scene.mail),
        scene.mail
    );
    refused_as_invalid(&scene, &yaml, "server-snippet").await;
    let ingresses: Api<Ingress> = scene.api();
    assert!(
        ingresses.get_opt("d-webmail").await.expect("get").is_none(),
        "no Ingress"
    );
}

/// Applies domain `d` as `yaml` and waits until it is `InvalidSpec` with `expected` in the
/// message.
async fn refused_as_invalid(scene: &Scene, yaml: &str, expected: &str) {
    scene.apply(yaml).await;
    let domain = reach(&scene.api::<ContinuityDomain>(), "d", "Ready", "False", "InvalidSpec").await;
    let message = condition(&domain.status.expect("status").conditions, "Ready")
        .expect("Ready")
        .2;
    assert!(message.contains(expected), "{message}");
}

/// A namespace serves only the mail domains the provider granted it (its annotation): an
/// ungranted claim builds nothing, and does not keep a granted one elsewhere from acting.
#[tokio::test]
async fn a_namespace_serves_only_the_mail_domains_granted_to_it() {
    let first_scene = Scene::new("ungranted").await;
    let client = first_scene.client.clone();
    let first_ns = first_scene.namespace.clone();
    let mail = mail_domain("granted");
    grant(&client, &first_ns, "only-this.example.test").await;
    let first = apply_yaml(&client, &first_ns, &domain_yaml("first", &mail)).await;
    let first_domains: Api<ContinuityDomain> = first_scene.api();
    let refused = reach(&first_domains, "first", "Ready", "False", "DomainNotGranted").await;
    assert_eq!(refused.status.expect("status").claimed_domain, None);
    let maps: Api<ConfigMap> = first_scene.api();
    assert!(
        maps.get_opt("first-coverage").await.expect("get").is_none(),
        "nothing built"
    );

    // A later claimant in a namespace granted the domain acts: the ungranted one blocks nobody.
    created_after(&client, &first[0]).await;
    let scene = Scene::new("granted").await;
    scene.apply(&domain_yaml("later", &mail)).await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "later", "Conflict", "False", "DomainClaimAccepted").await;
    scene.coverage_lists("later", &[]).await;

    // The provider grants the first namespace the domain: it is a claim again, and the older.
    grant(&client, &first_ns, &mail).await;
    reach(&first_domains, "first", "Conflict", "False", "DomainClaimAccepted").await;
    reach(&domains, "later", "Conflict", "True", "DomainClaimedElsewhere").await;
}

/// The prober is no port scanner: a primary that resolves to the operator's own host (or the
/// cluster's networks) is never connected to, and one given as such an address is refused.
#[tokio::test]
async fn the_prober_never_reaches_the_operators_host_or_the_cluster() {
    let client = client().await;
    let namespace = namespace(&client, "scan").await;
    // The operator's defaults: no network allowed beyond what is outside host and cluster
    // (any port, to reach the test's listener).
    let _operator = Operator::start(OperatorOptions {
        args: vec!["--allowed-primary-ports=1-65535".to_owned()],
        ..OperatorOptions::scoped(&namespace)
    });
    let mail = mail_domain("scan");
    // A silent listener: were it connected to, the probe would end in a Timeout.
    let local = Peer::start(Behavior::Silent).await;
    let named = domain_yaml("named", &mail).replace(
        &format!("host: mx.{mail}"),
        &format!("host: localhost\n    port: {}", local.port),
    );
    apply_yaml(&client, &namespace, &named).await;
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    let probed = reach(&domains, "named", "PrimaryReachable", "False", "AddressNotAllowed").await;
    let detail = probed.status.and_then(|s| s.primary?.detail).unwrap_or_default();
    assert!(detail.contains("does not let the prober reach"), "{detail}");

    let other_mail = mail_domain("scan-ip");
    let api_server = domain_yaml("by-address", &other_mail)
        .replace(&format!("host: mx.{other_mail}"), "host: 10.96.0.1\n    port: 443");
    apply_yaml(&client, &namespace, &api_server).await;
    let refused = reach(&domains, "by-address", "Ready", "False", "InvalidSpec").await;
    let message = condition(&refused.status.expect("status").conditions, "Ready")
        .expect("Ready")
        .2;
    assert!(message.contains("spec.primary.host"), "{message}");
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client, &namespace);
    assert!(
        endpoints.get_opt("by-address-primary").await.expect("get").is_none(),
        "no Endpoints to it"
    );
}

/// The prober cannot map a host's services for a tenant: it tells an open port from a closed
/// one, so a primary may only name a mail port unless the provider allows more.
#[tokio::test]
async fn the_prober_knocks_only_on_mail_ports() {
    let client = client().await;
    let namespace = namespace(&client, "ports").await;
    // The operator's default ports; loopback allowed, where the listener is.
    let _operator = Operator::start(OperatorOptions {
        args: vec!["--allowed-primary-networks=127.0.0.0/8,::1/128".to_owned()],
        ..OperatorOptions::scoped(&namespace)
    });
    let mail = mail_domain("ports");
    let ssh = Peer::start(Behavior::Greets("SSH-2.0-OpenSSH_9.2p1 internal-host")).await;
    let yaml = domain_yaml("d", &mail).replace(
        &format!("host: mx.{mail}"),
        &format!("host: localhost\n    port: {}", ssh.port),
    );
    apply_yaml(&client, &namespace, &yaml).await;
    let domains: Api<ContinuityDomain> = Api::namespaced(client, &namespace);
    let refused = reach(&domains, "d", "Ready", "False", "InvalidSpec").await;
    let status = refused.status.expect("status");
    let message = condition(&status.conditions, "Ready").expect("Ready").2;
    assert!(message.contains("spec.primary.port"), "{message}");
    assert!(
        message.contains("25, 465, 587, 2525"),
        "the message names what is allowed: {message}"
    );
    assert!(status.primary.is_none(), "never probed: {:?}", status.primary);
}

/// A domain whose shared emergency-password Secret does not exist says so in status, not only
/// which addresses lack a password.
#[tokio::test]
async fn a_missing_password_secret_is_named_in_status() {
    let scene = Scene::new("no-secret").await;
    let mail = &scene.mail;
    let yaml = format!(
        "{}  users:\n    scope: AllUsers\n    directory:\n      static:\n        addresses: [a@{mail}, b@{mail}]\n  emergencyPasswords:\n    secretRef:\n      name: shared-passwords\n",
        domain_yaml("d", mail)
    );
    scene.apply(&yaml).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let users = wait_for("the domain's users in status", Duration::from_secs(30), || async {
        domains.get("d").await.ok()?.status?.users.filter(|u| u.covered == 2)
    })
    .await;
    assert_eq!(users.without_emergency_password, 2);
    assert_eq!(
        users.emergency_password_problems,
        ["Secret shared-passwords does not exist"]
    );
}

/// The standby admits SMTP from the gateway's namespace by `kubernetes.io/metadata.name`,
/// which Kubernetes sets itself only since 1.21. On 1.20 (the test control plane) nothing
/// matches until the provider sets the label, as the README says: the operator warns, and
/// once labelled the rule selects the namespace (the API server evaluates the selector).
#[tokio::test]
async fn the_gateway_namespace_label_is_checked_and_works_once_set_as_documented() {
    let client = client().await;
    let gateway = namespace(&client, "gateway").await;
    let tenant = namespace(&client, "gateway-tenant").await;
    let mut options = OperatorOptions::scoped(&tenant);
    options.args.push(format!("--transport-map-namespace={gateway}"));
    let operator = Operator::start(options);
    let mail = mail_domain("gateway");
    apply_yaml(&client, &tenant, &domain_yaml("d", &mail)).await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &tenant);
    let policy = wait_for("the mail pod's NetworkPolicy", Duration::from_secs(30), || async {
        policies.get_opt("d-standby-mail").await.ok().flatten()
    })
    .await;
    let labels = policy
        .spec
        .and_then(|spec| {
            spec.ingress?
                .into_iter()
                .next()?
                .from?
                .into_iter()
                .next()?
                .namespace_selector?
                .match_labels
        })
        .expect("the SMTP rule selects namespaces by label");
    assert_eq!(labels.get("kubernetes.io/metadata.name"), Some(&gateway));
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let selected = || async {
        let found = namespaces
            .list_metadata(&ListParams::default().labels(&selector.join(",")))
            .await
            .expect("listing namespaces");
        found
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect::<Vec<_>>()
    };

    let labelled_by_kubernetes = selected().await.contains(&gateway);
    if !labelled_by_kubernetes {
        // Kubernetes 1.20: the operator says what is wrong and how to fix it.
        wait_for("the operator's warning", Duration::from_secs(30), || async {
            operator
                .log_text()
                .contains(&format!(
                    "kubectl label namespace {gateway} kubernetes.io/metadata.name={gateway}"
                ))
                .then_some(())
        })
        .await;
        let label = serde_json::json!({ "metadata": { "labels": { "kubernetes.io/metadata.name": gateway } } });
        namespaces
            .patch(&gateway, &PatchParams::default(), &Patch::Merge(&label))
            .await
            .expect("labelling the gateway's namespace");
    }
    assert_eq!(
        selected().await,
        vec![gateway],
        "the rule selects the gateway's namespace, and only it"
    );
}
