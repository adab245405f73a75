//! The Helm chart, through real Helm (helm-sdkpy): it lints, installs into the control plane,
//! its RBAC is enough for the operator and no more, and its pods meet the Pod Security
//! Standard "restricted".

use std::path::{Path, PathBuf};
use std::time::Duration;

use continuity_operator::api::{ContinuityDomain, ContinuityUser};
use continuity_operator::resources::packed;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::common::*;
use crate::pod_security;

/// The Python with helm-sdkpy: hack/test.sh passes it; otherwise the venv is made once.
fn helm_python() -> &'static PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(python) = std::env::var_os("CONTINUITY_HELM_PYTHON") {
            return PathBuf::from(python);
        }
        let output = std::process::Command::new(repo().join("hack/helm-venv.sh"))
            .output()
            .expect("running hack/helm-venv.sh");
        assert!(
            output.status.success(),
            "hack/helm-venv.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Runs hack/helm.py; returns (success, its JSON output).
pub(crate) fn helm(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(helm_python())
        .arg(repo().join("hack/helm.py"))
        .args(args)
        .output()
        .expect("running hack/helm.py");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.success(),
        format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
    )
}

pub(crate) fn chart() -> String {
    repo().join("charts/continuity-operator").display().to_string()
}

pub(crate) fn install(release: &str, namespace: &str, values: serde_json::Value, take_ownership: bool) {
    let mut extra = Vec::new();
    if take_ownership {
        extra.push("--take-ownership");
    }
    release_chart("install", release, namespace, &values, &extra);
}

fn upgrade(release: &str, namespace: &str, values: serde_json::Value) {
    release_chart("upgrade", release, namespace, &values, &[]);
}

/// `helm install` or `helm upgrade` of the chart.
fn release_chart(command: &str, release: &str, namespace: &str, values: &serde_json::Value, extra: &[&str]) {
    let (chart, kubeconfig, values) = (chart(), kubeconfig().display().to_string(), values.to_string());
    let mut args = vec![
        command,
        release,
        &chart,
        "--namespace",
        namespace,
        "--kubeconfig",
        &kubeconfig,
        "--values",
        &values,
    ];
    args.extend(extra);
    let (ok, output) = helm(&args);
    assert!(ok, "helm {command} failed: {output}");
}

pub(crate) fn uninstall(release: &str, namespace: &str) {
    let kubeconfig = kubeconfig().display().to_string();
    let (ok, output) = helm(&[
        "uninstall",
        release,
        "--namespace",
        namespace,
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(ok, "helm uninstall failed: {output}");
}

/// Whether the ServiceAccount may `verb` `resource` (in `namespace`, or cluster-wide).
async fn may(
    client: &Client,
    account: (&str, &str),
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let (sa_namespace, sa_name) = account;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{sa_namespace}:{sa_name}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{sa_namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: namespace.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// `helm lint`'s findings: (severity, path, reason).
fn lint(chart: &str) -> (bool, Vec<(String, String, String)>) {
    let (ok, output) = helm(&["lint", chart]);
    let report: serde_json::Value = serde_json::from_str(output.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("hack/helm.py lint printed no JSON ({e}): {output}"));
    let findings = report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings list: {output}"))
        .iter()
        .map(|f| {
            let field = |name: &str| f[name].as_str().unwrap_or_default().to_owned();
            (field("severity"), field("path"), field("reason"))
        })
        .collect();
    (ok, findings)
}

/// Copies the directory `from` to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a directory");
    for entry in std::fs::read_dir(from).expect("reading a directory").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copying a file");
        }
    }
}

#[test]
fn the_chart_lints() {
    let (ok, findings) = lint(&chart());
    let serious: Vec<_> = findings.iter().filter(|(severity, _, _)| severity != "INFO").collect();
    assert!(ok && serious.is_empty(), "helm lint: {serious:?}");

    // The same check on a broken copy fails, and says why.
    let broken = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("broken-chart"));
    copy_dir(Path::new(&chart()), &broken);
    let manifest = std::fs::read_to_string(broken.join("Chart.yaml")).expect("Chart.yaml");
    let manifest: String = manifest
        .lines()
        .map(|line| {
            if line.starts_with("version:") {
                "version: not-semver\n".to_owned()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(broken.join("Chart.yaml"), manifest).expect("breaking Chart.yaml");
    let (ok, findings) = lint(&broken.display().to_string());
    assert!(!ok, "a chart with an invalid version lints: {findings:?}");
    assert!(
        findings
            .iter()
            .any(|(severity, _, reason)| severity == "ERROR" && reason.contains("not-semver")),
        "{findings:?}"
    );
}

#[tokio::test]
async fn a_namespaced_install_runs_the_operator_with_least_privilege() {
    let client = client().await;
    let release_ns = unique("chart-system");
    let tenant = namespace(&client, "chart-tenant").await;
    // Releases are cluster-wide objects too (ClusterRoles): unique names.
    let release = unique("cop");
    let fullname = format!("{release}-continuity-operator");
    let lease_name = format!("{fullname}-leader");
    install(
        &release,
        &release_ns,
        serde_json::json!({ "watchNamespace": tenant }),
        true,
    );

    let account = (release_ns.as_str(), fullname.as_str());
    let deployment = Api::<Deployment>::namespaced(client.clone(), &release_ns)
        .get(&fullname)
        .await
        .expect("the operator Deployment");
    let pod = deployment.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(account.1));
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap_or_default();
    assert!(args.contains(&format!("--namespace={tenant}")), "{args:?}");
    assert!(args.contains(&format!("--lease-name={lease_name}")), "{args:?}");
    assert_eq!(probe_path(container.liveness_probe.as_ref()), Some("/healthz"));
    assert_eq!(probe_path(container.readiness_probe.as_ref()), Some("/readyz"));
    assert!(
        container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| r.contains_key("memory"))
    );
    let broken = pod_security::restricted(&pod);
    assert!(
        broken.is_empty(),
        "the operator pod breaks Pod Security \"restricted\": {broken:?}"
    );

    // Least privilege: the reconciled namespace only, Leases in the release namespace only;
    // ContinuityDomains readable everywhere for the claims check; deleted only what a spec
    // may stop asking for (the Ingress, and the Service and Endpoints fronting a primary
    // given by address), in the reconciled namespace.
    let (in_tenant, in_release) = (Some(tenant.as_str()), Some(release_ns.as_str()));
    let expectations = [
        (true, "patch", "", "configmaps", in_tenant),
        (false, "patch", "", "configmaps", Some("default")),
        (false, "list", "", "secrets", None),
        (true, "get", "", "secrets", in_tenant),
        (true, "watch", "", "secrets", in_tenant),
        (false, "delete", "", "secrets", in_tenant),
        (false, "get", "", "secrets", in_release),
        (true, "patch", "apps", "statefulsets", in_tenant),
        (true, "patch", "apps", "deployments", in_tenant),
        (false, "delete", "apps", "statefulsets", in_tenant),
        (true, "patch", "networking.k8s.io", "ingresses", in_tenant),
        (true, "patch", "networking.k8s.io", "networkpolicies", in_tenant),
        (false, "patch", "apps", "deployments", Some("default")),
        (true, "list", "continuity.mailops.io", "continuitydomains", None),
        (true, "watch", "", "namespaces", None),
        (false, "patch", "", "namespaces", None),
        (false, "list", "continuity.mailops.io", "continuityusers", None),
        (
            true,
            "patch",
            "continuity.mailops.io",
            "continuitydomains/status",
            in_tenant,
        ),
        (
            true,
            "update",
            "continuity.mailops.io",
            "continuitydomains/finalizers",
            in_tenant,
        ),
        (true, "create", "events.k8s.io", "events", in_tenant),
        (true, "create", "coordination.k8s.io", "leases", in_release),
        (false, "create", "coordination.k8s.io", "leases", in_tenant),
        (true, "patch", "", "services", in_tenant),
        (true, "patch", "", "endpoints", in_tenant),
        (false, "patch", "", "services", Some("default")),
        (true, "create", "", "configmaps", in_release),
        (true, "delete", "", "services", in_tenant),
        (true, "delete", "", "endpoints", in_tenant),
        (true, "delete", "networking.k8s.io", "ingresses", in_tenant),
        (false, "delete", "", "services", Some("default")),
        (false, "delete", "networking.k8s.io", "ingresses", Some("default")),
        (false, "delete", "", "configmaps", in_tenant),
        (false, "delete", "", "configmaps", in_release),
        (false, "delete", "apps", "deployments", in_tenant),
        (false, "delete", "networking.k8s.io", "networkpolicies", in_tenant),
        (false, "delete", "continuity.mailops.io", "continuitydomains", in_tenant),
        (false, "delete", "continuity.mailops.io", "continuityusers", in_tenant),
        (false, "delete", "coordination.k8s.io", "leases", in_release),
    ];
    check_access(&client, account, &expectations).await;

    // The webhook is registered for the reconciled namespace, trusting the CA of the Secret
    // the operator serves from; an upgrade keeps that CA.
    let certs = webhook_certificate(&client, &release_ns, &fullname, &tenant).await;
    upgrade(&release, &release_ns, serde_json::json!({ "watchNamespace": tenant }));
    let kept = webhook_certificate(&client, &release_ns, &fullname, &tenant).await;
    assert_eq!(certs.ca, kept.ca, "an upgrade keeps the webhook's CA");

    // The operator, authenticated as the chart's ServiceAccount, does its whole job, and
    // serves the webhook with the chart's certificate, for the Service's name.
    let sa_kubeconfig = service_account_kubeconfig(&client, account).await;
    let cert_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("chart-webhook-tls"));
    std::fs::create_dir_all(&cert_dir).expect("a certificate directory");
    std::fs::write(cert_dir.join("tls.crt"), &certs.cert).expect("tls.crt");
    std::fs::write(cert_dir.join("tls.key"), &certs.key).expect("tls.key");
    let mut options = OperatorOptions {
        kubeconfig: sa_kubeconfig,
        lease_name: lease_name.clone(),
        lease_namespace: Some(release_ns.clone()),
        ..OperatorOptions::scoped(&tenant)
    };
    options.args.push(format!("--webhook-cert-dir={}", cert_dir.display()));
    options.args.push("--webhook-addr=127.0.0.1:0".into());
    let operator = Operator::start(options);
    let service_name = format!("{fullname}-webhook.{release_ns}.svc");
    handshake(operator.webhook().await, &certs.ca, &service_name).await;
    let mail = mail_domain("chart");
    apply_yaml(&client, &tenant, &domain_yaml("d", &mail)).await;
    apply_yaml(&client, &tenant, &user_yaml("u", "d", &format!("u@{mail}"))).await;
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &tenant);
    reach(&domains, "d", "Ready", "False", "StandbyNotReady").await;
    reach(
        &Api::<ContinuityUser>::namespaced(client.clone(), &tenant),
        "u",
        "Covered",
        "True",
        "Covered",
    )
    .await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &tenant);
    wait_for("the coverage ConfigMap", Duration::from_secs(30), || async {
        maps.get_opt("d-coverage").await.ok().flatten()
    })
    .await;
    // The transport map lives in the release namespace; the Role there permits it.
    let transport: Api<ConfigMap> = Api::namespaced(client.clone(), &release_ns);
    wait_for(
        "the transport map listing the domain",
        Duration::from_secs(30),
        || async {
            let map = transport.get_opt("continuity-transport").await.ok().flatten()?;
            packed::table(&map, "transport.gz")?
                .contains(mail.as_str())
                .then_some(())
        },
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &release_ns);
    let lease = leases.get(&lease_name).await.expect("Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        Some(operator.identity.clone())
    );
    // A second claim on the same mail domain raises a Warning Event: Events are permitted.
    apply_yaml(&client, &tenant, &domain_yaml("zz-second", &mail)).await;
    reach(&domains, "zz-second", "Conflict", "True", "DomainClaimedElsewhere").await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &tenant);
    wait_for("the Warning Event", Duration::from_secs(30), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("DomainClaimedElsewhere"))
            .then_some(())
    })
    .await;
    assert_eq!(
        operator.metric_sum("continuity_reconcile_errors_total").await,
        0.0,
        "no request was forbidden\n{}",
        operator.log_text()
    );
    assert!(
        !operator.log_text().contains("cannot publish Event"),
        "{}",
        operator.log_text()
    );
    // SIGTERM releases the Lease: patching it by name is permitted too.
    let mut operator = operator;
    assert!(operator.terminate().await.success(), "{}", operator.log_text());
    let released = leases
        .get(&lease_name)
        .await
        .expect("Lease")
        .spec
        .and_then(|s| s.holder_identity)
        .filter(|holder| !holder.is_empty());
    assert_eq!(released, None, "the Lease is released on shutdown");

    uninstall(&release, &release_ns);
    let gone = Api::<Deployment>::namespaced(client.clone(), &release_ns)
        .get_opt(&fullname)
        .await
        .expect("get");
    assert!(gone.is_none(), "uninstall removes the Deployment");
    let crd = Api::<CustomResourceDefinition>::all(client)
        .get_opt("continuitydomains.continuity.mailops.io")
        .await
        .expect("get");
    assert!(
        crd.is_some(),
        "uninstall keeps the CRDs, and with them every customer's resources"
    );
}

#[tokio::test]
async fn a_cluster_wide_install_grants_every_namespace_but_deletes_nothing() {
    let client = client().await;
    let release_ns = unique("chart-cluster");
    let release = unique("wide");
    let fullname = format!("{release}-continuity-operator");
    install(
        &release,
        &release_ns,
        // Registered for every namespace, a webhook nobody serves here would slow down every
        // test running beside this one.
        serde_json::json!({ "crds": { "install": false }, "replicaCount": 2, "webhook": { "enabled": false } }),
        false,
    );
    let account = (release_ns.as_str(), fullname.as_str());
    let mut expectations = vec![
        (true, "list", "", "secrets", None),
        (false, "delete", "", "secrets", Some("default")),
        (false, "delete", "apps", "statefulsets", Some("default")),
        (false, "delete", "", "persistentvolumeclaims", Some("default")),
        (
            false,
            "delete",
            "continuity.mailops.io",
            "continuitydomains",
            Some("default"),
        ),
    ];
    for namespace in [Some("default"), Some("any-customer")] {
        expectations.push((true, "list", "continuity.mailops.io", "continuityusers", namespace));
        expectations.push((true, "patch", "", "configmaps", namespace));
        expectations.push((true, "create", "events.k8s.io", "events", namespace));
    }
    check_access(&client, account, &expectations).await;
    let deployment = Api::<Deployment>::namespaced(client.clone(), &release_ns)
        .get(&fullname)
        .await
        .expect("the operator Deployment");
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));
    uninstall(&release, &release_ns);
}

/// The webhook's certificate as the chart made it (PEM).
struct WebhookCertificate {
    ca: String,
    cert: String,
    key: String,
}

/// Checks the chart's ValidatingWebhookConfiguration (both kinds, through the Service, the
/// reconciled namespace only, failurePolicy Ignore) and returns the Secret it trusts.
async fn webhook_certificate(client: &Client, namespace: &str, fullname: &str, tenant: &str) -> WebhookCertificate {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&format!("{fullname}-webhook-tls"))
        .await
        .expect("the webhook's certificate Secret");
    let data = secret.data.unwrap_or_default();
    let field = |key: &str| String::from_utf8(data.get(key).map(|b| b.0.clone()).unwrap_or_default()).expect("PEM");
    let certificate = WebhookCertificate {
        ca: field("ca.crt"),
        cert: field("tls.crt"),
        key: field("tls.key"),
    };
    let configuration = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(&format!("{fullname}-webhook"))
        .await
        .expect("the ValidatingWebhookConfiguration");
    let hooks = configuration.webhooks.unwrap_or_default();
    let names: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["domains.continuity.mailops.io", "users.continuity.mailops.io"]);
    for hook in &hooks {
        let ca = hook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b.0).into_owned());
        assert_eq!(ca.as_deref(), Some(certificate.ca.as_str()), "{}: caBundle", hook.name);
        let service = hook.client_config.service.as_ref().expect("a Service reference");
        assert_eq!(service.name, format!("{fullname}-webhook"));
        assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
        let selected = hook
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|labels| labels.get("kubernetes.io/metadata.name"));
        assert_eq!(selected.map(String::as_str), Some(tenant), "{}", hook.name);
    }
    certificate
}

/// Completes a TLS handshake with `addr`, trusting only `ca_pem`, for `server_name`.
async fn handshake(addr: std::net::SocketAddr, ca_pem: &str, server_name: &str) {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("a usable CA certificate");
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting to the webhook");
    let name = ServerName::try_from(server_name.to_owned()).expect("a server name");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .unwrap_or_else(|e| panic!("the webhook's certificate does not verify for {server_name}: {e}"));
}

/// Asserts each (allowed, verb, group, resource, namespace) for the ServiceAccount.
async fn check_access(client: &Client, account: (&str, &str), expectations: &[(bool, &str, &str, &str, Option<&str>)]) {
    for &(allowed, verb, group, resource, namespace) in expectations {
        let answer = may(client, account, verb, group, resource, namespace).await;
        assert_eq!(answer, allowed, "may {verb} {group}/{resource} in {namespace:?}");
    }
}

fn probe_path(probe: Option<&k8s_openapi::api::core::v1::Probe>) -> Option<&str> {
    probe?.http_get.as_ref()?.path.as_deref()
}
