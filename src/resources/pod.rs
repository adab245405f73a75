//! Building blocks the standby's builders share: volume mounts, ports, the seccomp profile
//! every container runs with, and the ClusterIP Services in front of the pods.

use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, EmptyDirVolumeSource, SeccompProfile, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::{child_labels, child_meta, selector_labels};
use crate::validation::ValidatedDomain;

/// The ClusterIP Service `name` in front of the pods of `component`, with `ports`.
pub fn cluster_service(
    domain: &ValidatedDomain<'_>,
    name: &str,
    component: &str,
    ports: Vec<ServicePort>,
    session_affinity: Option<&str>,
) -> Service {
    Service {
        metadata: child_meta(domain, name, component),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(domain, component)),
            ports: Some(ports),
            session_affinity: session_affinity.map(str::to_owned),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `volume` mounted at `path`.
pub fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// An emptyDir volume; in memory when `memory`.
pub fn empty_dir(name: &str, memory: bool) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".into()),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A named TCP container port.
pub fn container_port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number.into(),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// A Service port forwarding to the container port of the same name.
pub fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: port.into(),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The container runtime's default seccomp profile (Pod Security "restricted" asks for it).
pub fn runtime_default_seccomp() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    })
}

/// A container's security context as Pod Security "restricted" asks: not root, no privilege
/// escalation, no capabilities, the runtime's seccomp profile.
pub fn restricted_security() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: runtime_default_seccomp(),
        ..SecurityContext::default()
    }
}

/// The selector of the pods of `component`, for a workload.
pub fn workload_selector(domain: &ValidatedDomain<'_>, component: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(domain, component)),
        ..LabelSelector::default()
    }
}

/// A workload's pod template: the component's labels, `annotations`, and `spec`.
pub fn template(
    domain: &ValidatedDomain<'_>,
    component: &str,
    annotations: Option<BTreeMap<String, String>>,
    spec: PodSpec,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(child_labels(domain, component)),
            annotations,
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}
