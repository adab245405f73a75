//! The standby's webmail: a Roundcube Deployment (its non-root image, Pod Security
//! "restricted"), its Service, the ConfigMap pointing it at the mail pod, and the Ingress
//! users reach it through, with TLS from a named Secret, from cert-manager, or from the
//! ingress controller's default certificate.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, HTTPGetAction, PodSecurityContext, PodSpec, Probe, Service, Volume,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use super::pod::{
    cluster_service, container_port, empty_dir, mount, restricted_security, runtime_default_seccomp, service_port,
    template, workload_selector,
};
use crate::api::domain::Webmail;
use crate::standby::layout;
use crate::standby::webmail::{Settings, config_php};
use crate::validation::ValidatedDomain;

/// Component label of the webmail and its objects.
pub const COMPONENT: &str = "webmail";
/// The Roundcube image's web server user and group (`www-data`).
pub const WEBMAIL_UID: i64 = 33;
/// The Service's HTTP port.
pub const HTTP_PORT: u16 = 80;
/// The annotation cert-manager's ingress-shim reads.
pub const CLUSTER_ISSUER_ANNOTATION: &str = "cert-manager.io/cluster-issuer";

/// The Secret holding the webmail's certificate: the named one, or the one cert-manager
/// issues into.
pub fn tls_secret_name(domain: &ValidatedDomain<'_>, webmail: &Webmail) -> Option<String> {
    webmail.tls_secret_name.clone().or_else(|| {
        webmail
            .cluster_issuer
            .as_ref()
            .map(|_| format!("{}-tls", domain.names.webmail))
    })
}

/// The ConfigMap with Roundcube's settings.
pub fn config_map(domain: &ValidatedDomain<'_>) -> ConfigMap {
    let mail_host = domain.standby_host();
    let php = config_php(&Settings {
        domain: &domain.spec.domain,
        mail_host: &mail_host,
    });
    ConfigMap {
        metadata: child_meta(domain, &domain.names.webmail_config, COMPONENT),
        data: Some(BTreeMap::from([("continuity.php".to_owned(), php)])),
        ..ConfigMap::default()
    }
}

fn http_probe(period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The Roundcube Deployment.
pub fn deployment(domain: &ValidatedDomain<'_>) -> Deployment {
    let workload = &domain.spec.standby.webmail;
    let container = Container {
        name: "roundcube".into(),
        image: Some(domain.images.webmail.clone()),
        ports: Some(vec![container_port("http", layout::WEBMAIL_PORT)]),
        readiness_probe: Some(http_probe(10, 3)),
        liveness_probe: Some(http_probe(20, 6)),
        resources: workload.resources.clone(),
        security_context: Some(restricted_security()),
        volume_mounts: Some(vec![
            mount("config", layout::WEBMAIL_CONFIG, true),
            mount("db", "/var/roundcube/db", false),
            mount("tmp", "/tmp", false),
        ]),
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: domain.names.webmail_config.clone(),
                    default_mode: Some(0o444),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            // Roundcube's SQLite database holds sessions and preferences, nothing that must
            // outlive the pod: the mail itself is on the mail pod's volume.
            empty_dir("db", false),
            empty_dir("tmp", false),
        ]),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WEBMAIL_UID),
            run_as_group: Some(WEBMAIL_UID),
            fs_group: Some(WEBMAIL_UID),
            seccomp_profile: runtime_default_seccomp(),
            ..PodSecurityContext::default()
        }),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        ..PodSpec::default()
    };
    Deployment {
        metadata: child_meta(domain, &domain.names.webmail, COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(workload.replicas),
            selector: workload_selector(domain, COMPONENT),
            template: template(domain, COMPONENT, None, pod),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The webmail Service.
pub fn service(domain: &ValidatedDomain<'_>) -> Service {
    // Sessions live on one pod (see `standby.webmail.replicas`).
    let ports = vec![service_port("http", HTTP_PORT)];
    cluster_service(domain, &domain.names.webmail, COMPONENT, ports, Some("ClientIP"))
}

/// The Ingress for `spec.webmail.host`, if the domain has a webmail host.
pub fn ingress(domain: &ValidatedDomain<'_>) -> Option<Ingress> {
    let webmail = domain.spec.webmail.as_ref()?;
    let mut metadata = child_meta(domain, &domain.names.webmail, COMPONENT);
    let mut annotations = webmail.annotations.clone();
    if let Some(issuer) = &webmail.cluster_issuer {
        annotations.insert(CLUSTER_ISSUER_ANNOTATION.to_owned(), issuer.clone());
    }
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: domain.names.webmail.clone(),
            port: Some(ServiceBackendPort {
                name: Some("http".into()),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    };
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: webmail.ingress_class_name.clone(),
            // Without a Secret the controller serves its default certificate: still HTTPS.
            tls: Some(vec![IngressTLS {
                hosts: Some(vec![webmail.host.clone()]),
                secret_name: tls_secret_name(domain, webmail),
            }]),
            rules: Some(vec![IngressRule {
                host: Some(webmail.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend,
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ContinuityDomain;
    use crate::testing::{acting, fixture, pod_security, validated};

    #[test]
    fn the_webmail_meets_restricted_and_has_the_replicas_asked_for() {
        let deployment = deployment(&validated("domain-full.yaml"));
        let spec = deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.as_ref().unwrap();
        assert!(
            pod_security::restricted(pod).is_empty(),
            "{:?}",
            pod_security::restricted(pod)
        );
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some(crate::standby::images::WEBMAIL)
        );
    }

    #[test]
    fn the_config_points_roundcube_at_the_mail_service() {
        let config = config_map(&validated("domain-full.yaml"));
        let php = &config.data.unwrap()["continuity.php"];
        assert!(
            php.contains("'corp-standby-mail.tenant-b.svc.cluster.local:143'"),
            "{php}"
        );
    }

    #[test]
    fn the_ingress_serves_the_host_with_tls_from_cert_manager_or_a_secret() {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        let built = ingress(&acting(domain.clone())).expect("an Ingress");
        let annotations = built.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[CLUSTER_ISSUER_ANNOTATION], "letsencrypt");
        let spec = built.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = &spec.tls.unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("corp-webmail-tls"));
        assert_eq!(
            tls.hosts.as_deref(),
            Some(&["continuity.corp.example.net".to_owned()][..])
        );
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("continuity.corp.example.net"));

        let mut own_secret = domain.clone();
        let webmail = own_secret.spec.webmail.as_mut().unwrap();
        webmail.cluster_issuer = None;
        webmail.tls_secret_name = Some("wildcard-tls".into());
        let built = ingress(&acting(own_secret)).unwrap();
        assert!(
            !built
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key(CLUSTER_ISSUER_ANNOTATION)
        );
        assert_eq!(
            built.spec.unwrap().tls.unwrap()[0].secret_name.as_deref(),
            Some("wildcard-tls")
        );

        assert!(ingress(&validated("domain-minimal.yaml")).is_none());
    }
}
