//! The Pod Security Standards' checks (Kubernetes' pod-security-admission, policy version
//! "latest"), applied to a pod spec: each returns what the pod breaks, with the upstream
//! check's ID. The 1.20 test control plane has no Pod Security admission to ask, so the unit
//! tests (on what the builders build) and the integration tests (on what the chart renders,
//! which include this file) ask this one checker.

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// Capabilities "baseline" lets a container add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
/// Volume types "restricted" allows.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn containers(pod: &PodSpec) -> impl Iterator<Item = &Container> {
    pod.init_containers.iter().flatten().chain(&pod.containers)
}

/// What breaks "baseline".
pub fn baseline(pod: &PodSpec) -> Vec<String> {
    let mut broken = Vec::new();
    if pod.host_network == Some(true) || pod.host_pid == Some(true) || pod.host_ipc == Some(true) {
        broken.push("hostNamespaces".into());
    }
    for volume in pod.volumes.iter().flatten() {
        if volume.host_path.is_some() {
            broken.push(format!("hostPathVolumes: {}", volume.name));
        }
    }
    for container in containers(pod) {
        let context = container.security_context.clone().unwrap_or_default();
        if context.privileged == Some(true) {
            broken.push(format!("privileged: {}", container.name));
        }
        for added in context.capabilities.and_then(|c| c.add).unwrap_or_default() {
            if !BASELINE_CAPABILITIES.contains(&added.as_str()) {
                broken.push(format!("capabilities_baseline: {} adds {added}", container.name));
            }
        }
        for port in container.ports.iter().flatten() {
            if port.host_port.unwrap_or(0) != 0 {
                broken.push(format!("hostPorts: {}", container.name));
            }
        }
        if let Some(seccomp) = context.seccomp_profile
            && seccomp.type_ == "Unconfined"
        {
            broken.push(format!("seccompProfile_baseline: {}", container.name));
        }
    }
    broken
}

/// What breaks "restricted" (which includes "baseline").
pub fn restricted(pod: &PodSpec) -> Vec<String> {
    let mut broken = baseline(pod);
    let pod_context = pod.security_context.clone().unwrap_or_default();
    // Relaxed for pods in a user namespace (hostUsers: false), as upstream does.
    let user_namespace = pod.host_users == Some(false);
    for volume in pod.volumes.iter().flatten() {
        let value = serde_json::to_value(volume).unwrap_or_default();
        let kinds: Vec<&String> = value
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .filter(|k| *k != "name")
            .collect();
        if kinds.iter().any(|k| !RESTRICTED_VOLUMES.contains(&k.as_str())) {
            broken.push(format!("restrictedVolumes: {}", volume.name));
        }
    }
    for container in containers(pod) {
        let context = container.security_context.clone().unwrap_or_default();
        if context.allow_privilege_escalation != Some(false) {
            broken.push(format!("allowPrivilegeEscalation: {}", container.name));
        }
        let non_root = context.run_as_non_root.or(pod_context.run_as_non_root) == Some(true);
        if !non_root && !user_namespace {
            broken.push(format!("runAsNonRoot: {}", container.name));
        }
        if context.run_as_user.or(pod_context.run_as_user) == Some(0) && !user_namespace {
            broken.push(format!("runAsUser: {}", container.name));
        }
        let seccomp = context.seccomp_profile.or(pod_context.seccomp_profile.clone());
        if !seccomp.is_some_and(|s| s.type_ == "RuntimeDefault" || s.type_ == "Localhost") {
            broken.push(format!("seccompProfile_restricted: {}", container.name));
        }
        let capabilities = context.capabilities.unwrap_or_default();
        if !capabilities.drop.unwrap_or_default().iter().any(|c| c == "ALL") {
            broken.push(format!("capabilities_restricted: {} does not drop ALL", container.name));
        }
        for added in capabilities.add.unwrap_or_default() {
            if added != "NET_BIND_SERVICE" {
                broken.push(format!("capabilities_restricted: {} adds {added}", container.name));
            }
        }
    }
    broken
}
