//! The standby's mail pod (SPEC 4.1): a single-replica StatefulSet running Postfix (SMTP in,
//! submission for the webmail), Dovecot (LMTP, IMAP) and the hand-back agent
//! ([`crate::handback`]), whose one volume holds the mail store, Postfix's queue and the
//! agent's ledger, so mail that got a 250 survives a restart and reaches the primary later; the Service gateways
//! and the webmail reach it through; the ConfigMap with the rendered configuration and the
//! Secret with the password hashes.
//!
//! Configuration changes reach the running pod without a restart: the kubelet updates the
//! mounted files and the containers' run scripts reload Postfix and Dovecot (see
//! [`crate::standby`]). Only a change of the run scripts themselves (an operator upgrade), of
//! images or of resources rolls the pod.
//!
//! Privileges: Dovecot runs as the image's unprivileged `vmail` user with no capabilities, as
//! Pod Security "restricted" asks. Postfix cannot: its master refuses to start unless it is
//! root, and drops to the `postfix` user itself. Its container keeps only the capabilities
//! that takes (CHOWN, DAC_OVERRIDE and FOWNER to own its queue, SETGID and SETUID to drop
//! privileges), no privilege escalation and the runtime's seccomp profile; with
//! `userNamespace` its root is an unprivileged user on the node. The pod therefore meets Pod
//! Security "baseline"; every other pod the operator creates meets "restricted".

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, HTTPGetAction, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, Probe, ResourceRequirements, Secret, SecretVolumeSource,
    SecurityContext, Service, TCPSocketAction, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{
    cluster_service, container_port, empty_dir, mount, restricted_security, runtime_default_seccomp, service_port,
    template, workload_selector,
};
use super::{child_labels, child_meta, next_hop, texts_hash};
use crate::api::domain::VolumeOnDelete;
use crate::handback::{settings, tracking};
use crate::standby::{self, CONFIG_FILES, ConfigFiles, PACKED_FILES, PASSWD_KEY, layout};
use crate::validation::ValidatedDomain;

/// Component label of the mail pod and its objects.
pub const COMPONENT: &str = "standby-mail";
/// Name of the volume claim template (the PVC is `data-<statefulset>-0`).
pub const DATA_VOLUME: &str = "data";
/// Pod template annotation holding a hash of the run scripts: a new operator version with new
/// scripts rolls the pod, a new user list does not.
pub const SCRIPTS_HASH_ANNOTATION: &str = "continuity.mailops.io/scripts-hash";
/// The capabilities Postfix's container keeps (see the module documentation).
pub const POSTFIX_CAPABILITIES: [&str; 5] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"];

/// The ConfigMap holding `files` (keyed as [`CONFIG_FILES`] and [`PACKED_FILES`]).
pub fn config_map(domain: &ValidatedDomain<'_>, files: ConfigFiles) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(domain, &domain.names.standby_config, COMPONENT),
        data: Some(files.text),
        binary_data: Some(files.packed),
        ..ConfigMap::default()
    }
}

/// The Secret holding the password file.
pub fn passwords_secret(domain: &ValidatedDomain<'_>, passwd: String) -> Secret {
    Secret {
        metadata: child_meta(domain, &domain.names.standby_passwords, COMPONENT),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            PASSWD_KEY.to_owned(),
            ByteString(passwd.into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// The Service: SMTP on 25 for gateways, submission on 587 and IMAP on 143 for the webmail,
/// the agent's tracking endpoint for the operator and `kubectl continuity` (through the API
/// server's service proxy).
pub fn service(domain: &ValidatedDomain<'_>) -> Service {
    let ports = vec![
        service_port("smtp", next_hop::SMTP_PORT),
        service_port("submission", layout::SUBMISSION_SERVICE_PORT),
        service_port("imap", layout::IMAP_SERVICE_PORT),
        service_port(tracking::PORT_NAME, tracking::PORT),
    ];
    cluster_service(domain, &domain.names.standby_mail, COMPONENT, ports, None)
}

/// The size and class of the mail volume. A StatefulSet's volume claim template cannot change
/// once created, so an existing one is kept as it is (grow the PVC itself to grow the volume).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DataVolume {
    pub size: String,
    pub storage_class_name: Option<String>,
}

/// The volume an existing StatefulSet was created with.
pub fn existing_volume(existing: &StatefulSet) -> Option<DataVolume> {
    let template = existing
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(DATA_VOLUME))?;
    let spec = template.spec.as_ref()?;
    Some(DataVolume {
        size: spec.resources.as_ref()?.requests.as_ref()?.get("storage")?.0.clone(),
        storage_class_name: spec.storage_class_name.clone(),
    })
}

fn tcp_probe(port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn postfix_container(domain: &ValidatedDomain<'_>) -> Container {
    let mail = &domain.spec.standby.mail;
    Container {
        name: "postfix".into(),
        image: Some(domain.images.postfix.clone()),
        command: Some(vec!["/bin/sh".into(), format!("{}/run/postfix.sh", layout::CONFIG)]),
        ports: Some(vec![
            container_port("smtp", layout::SMTP_PORT),
            container_port("submission", layout::SUBMISSION_PORT),
        ]),
        readiness_probe: Some(tcp_probe("smtp", 10, 3)),
        liveness_probe: Some(tcp_probe("smtp", 20, 6)),
        resources: mail.resources.clone(),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(POSTFIX_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            }),
            seccomp_profile: runtime_default_seccomp(),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, layout::DATA, false),
            mount("config", layout::CONFIG, true),
        ]),
        ..Container::default()
    }
}

/// The unprivileged mail user, with nothing else: Dovecot's and the agent's containers.
fn mail_user_security() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(layout::MAIL_UID),
        run_as_group: Some(layout::MAIL_UID),
        ..restricted_security()
    }
}

fn dovecot_container(domain: &ValidatedDomain<'_>) -> Container {
    let mail = &domain.spec.standby.mail;
    Container {
        name: "dovecot".into(),
        image: Some(domain.images.dovecot.clone()),
        command: Some(vec!["/bin/sh".into(), format!("{}/run/dovecot.sh", layout::CONFIG)]),
        ports: Some(vec![container_port("imap", layout::IMAP_PORT)]),
        readiness_probe: Some(tcp_probe("imap", 10, 3)),
        liveness_probe: Some(tcp_probe("imap", 20, 6)),
        resources: mail.resources.clone(),
        security_context: Some(mail_user_security()),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, layout::DATA, false),
            mount("config", layout::CONFIG, true),
            mount("passwords", layout::SECRETS, true),
            mount("run", layout::RUN, false),
        ]),
        ..Container::default()
    }
}

/// The hand-back agent: the operator's binary, unprivileged like Dovecot; it writes its ledger
/// on the volume (the mail group's, through fsGroup) and reads its settings from the
/// ConfigMap.
fn agent_container(domain: &ValidatedDomain<'_>) -> Container {
    Container {
        name: "agent".into(),
        image: Some(domain.images.agent.clone()),
        command: Some(vec![
            "/continuity-agent".into(),
            format!("--data-dir={}", layout::HANDBACK_DIR),
            format!("--settings={}/{}", layout::CONFIG, settings::PATH),
            format!("--lmtp-addr=127.0.0.1:{}", layout::AGENT_LMTP_PORT),
            format!("--http-addr=0.0.0.0:{}", tracking::PORT),
        ]),
        ports: Some(vec![container_port(tracking::PORT_NAME, tracking::PORT)]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::String(tracking::PORT_NAME.into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".into())),
                ("memory".to_owned(), Quantity("32Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("256Mi".into()))])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(mail_user_security()),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, layout::DATA, false),
            mount("config", layout::CONFIG, true),
        ]),
        ..Container::default()
    }
}

fn volumes(domain: &ValidatedDomain<'_>) -> Vec<Volume> {
    vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: domain.names.standby_config.clone(),
                items: Some(
                    CONFIG_FILES
                        .iter()
                        .chain(&PACKED_FILES)
                        .map(|(key, path)| KeyToPath {
                            key: (*key).into(),
                            path: (*path).into(),
                            ..KeyToPath::default()
                        })
                        .collect(),
                ),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "passwords".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(domain.names.standby_passwords.clone()),
                // Readable by the mail group (fsGroup) only.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir("run", true),
    ]
}

/// The StatefulSet; `existing` is the volume it was created with, if it exists.
pub fn stateful_set(domain: &ValidatedDomain<'_>, existing: Option<DataVolume>) -> StatefulSet {
    let archive = &domain.spec.archive;
    let volume = existing.unwrap_or_else(|| DataVolume {
        size: archive.storage_size.clone(),
        storage_class_name: archive.storage_class_name.clone(),
    });
    let scripts = [standby::postfix::run_script(), standby::dovecot::run_script()];
    let scripts_hash = format!("{:016x}", texts_hash(&scripts));
    let pod = PodSpec {
        containers: vec![
            postfix_container(domain),
            dovecot_container(domain),
            agent_container(domain),
        ],
        volumes: Some(volumes(domain)),
        security_context: Some(PodSecurityContext {
            // The volume and the runtime directory belong to the mail group, so Dovecot
            // (not root) can write them.
            fs_group: Some(layout::MAIL_UID),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: runtime_default_seccomp(),
            ..PodSecurityContext::default()
        }),
        host_users: domain.spec.standby.mail.user_namespace.then_some(false),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(60),
        ..PodSpec::default()
    };
    StatefulSet {
        metadata: child_meta(domain, &domain.names.standby_mail, COMPONENT),
        spec: Some(StatefulSetSpec {
            // One Dovecot writes the store; a second replica would need a second volume.
            replicas: Some(1),
            service_name: Some(domain.names.standby_mail.clone()),
            // Set only when asked: clusters before 1.23 do not know the field, and Retain is
            // what they do anyway.
            persistent_volume_claim_retention_policy: (archive.on_delete == VolumeOnDelete::Delete).then(|| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Retain".into()),
                }
            }),
            selector: workload_selector(domain, COMPONENT),
            template: template(
                domain,
                COMPONENT,
                Some(BTreeMap::from([(SCRIPTS_HASH_ANNOTATION.to_owned(), scripts_hash)])),
                pod,
            ),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(DATA_VOLUME.into()),
                    labels: Some(child_labels(domain, COMPONENT)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: volume.storage_class_name,
                    // The API server's default, set here because the templates are owned as
                    // one atomic list: a default filled in would read as a hand edit.
                    volume_mode: Some("Filesystem".into()),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(volume.size))])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ContinuityDomain;
    use crate::testing::{acting, fixture, pod_security, validated};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(set: &StatefulSet) -> &PodSpec {
        set.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn container<'a>(set: &'a StatefulSet, name: &str) -> &'a Container {
        pod(set).containers.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn the_mail_pod_runs_both_servers_with_one_volume_for_queue_and_store() {
        let domain = validated("domain-full.yaml");
        let set = stateful_set(&domain, None);
        assert_eq!(set.metadata.name.as_deref(), Some("corp-standby-mail"));
        let owner: &OwnerReference = &set.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ContinuityDomain", Some(true))
        );
        let spec = set.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast-ssd"));
        assert_eq!(
            claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "50Gi"
        );
        for name in ["postfix", "dovecot"] {
            let mounts = container(&set, name).volume_mounts.as_ref().unwrap();
            assert!(
                mounts
                    .iter()
                    .any(|m| m.name == DATA_VOLUME && m.mount_path == layout::DATA),
                "{name} mounts the data volume"
            );
            assert_eq!(
                container(&set, name).resources,
                domain.spec.standby.mail.resources,
                "{name}: resources from the spec"
            );
        }
        assert_eq!(
            container(&set, "postfix").image.as_deref(),
            Some(crate::standby::images::POSTFIX)
        );
        let ports: Vec<i32> = pod(&set)
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten().map(|p| p.container_port))
            .collect();
        assert!(ports.iter().all(|p| *p > 1024), "unprivileged ports only: {ports:?}");
    }

    #[test]
    fn dovecot_meets_restricted_and_postfix_keeps_only_what_starting_as_root_takes() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let set = stateful_set(&acting(domain.clone()), None);
        let pod = pod(&set);
        assert!(
            pod_security::baseline(pod).is_empty(),
            "{:?}",
            pod_security::baseline(pod)
        );
        let broken = pod_security::restricted(pod);
        assert!(
            broken.iter().all(|b| b.contains("postfix")),
            "only Postfix's root start breaks restricted: {broken:?}"
        );
        assert_eq!(
            broken,
            [
                "runAsNonRoot: postfix",
                "runAsUser: postfix",
                "capabilities_restricted: postfix adds CHOWN",
                "capabilities_restricted: postfix adds DAC_OVERRIDE",
                "capabilities_restricted: postfix adds FOWNER",
                "capabilities_restricted: postfix adds SETGID",
                "capabilities_restricted: postfix adds SETUID",
            ]
        );
        let mut in_user_namespace = domain.clone();
        in_user_namespace.spec.standby.mail.user_namespace = true;
        let set = stateful_set(&acting(in_user_namespace), None);
        assert_eq!(
            set.spec.as_ref().unwrap().template.spec.as_ref().unwrap().host_users,
            Some(false)
        );
    }

    #[test]
    fn an_existing_volume_is_kept_and_the_pod_template_carries_the_run_scripts_hash() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let set = stateful_set(&acting(domain.clone()), None);
        let volume = existing_volume(&set).unwrap();
        assert_eq!(volume.size, "10Gi");
        domain.spec.archive.storage_size = "20Gi".into();
        let again = stateful_set(&acting(domain), Some(volume));
        assert_eq!(again, set, "a claim template cannot change once created");
        // The pod template changes (and the pod rolls) when the run scripts do, and only
        // then: the user list and passwords are not part of the StatefulSet at all.
        let annotations = set
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone();
        let scripts = [standby::postfix::run_script(), standby::dovecot::run_script()];
        assert_eq!(
            annotations.unwrap()[SCRIPTS_HASH_ANNOTATION],
            format!("{:016x}", texts_hash(&scripts))
        );
    }

    #[test]
    fn the_service_maps_standard_ports_to_the_pods() {
        let service = service(&validated("domain-minimal.yaml"));
        let ports: Vec<(i32, String)> = service
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.port, format!("{:?}", p.target_port.unwrap())))
            .collect();
        assert_eq!(
            ports,
            [
                (25, "String(\"smtp\")".to_owned()),
                (587, "String(\"submission\")".to_owned()),
                (143, "String(\"imap\")".to_owned()),
                (8025, "String(\"agent\")".to_owned())
            ]
        );
    }
}
