//! The standby: mail retention, the workloads, the webmail, and routing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::health::default_smtp_port;
use crate::api::{DOMAIN_PATTERN, HOST_PATTERN, OBJECT_NAME_PATTERN};

/// Mail retention on the standby.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Archive {
    /// Days the standby keeps mail before expunging it.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub retention_days: u32,

    /// Size of the volume holding the mail store and the mail queue.
    #[serde(default = "default_storage_size")]
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub storage_size: String,

    /// StorageClass of that volume; the cluster default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// What happens to the mail volume when the ContinuityDomain is deleted (once held mail
    /// is handed back, or the deletion is forced): `Retain` (the default) keeps the
    /// PersistentVolumeClaim for the provider to remove, `Delete` removes it with the standby.
    #[serde(default)]
    pub on_delete: VolumeOnDelete,
}

/// What happens to the mail volume when its domain goes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VolumeOnDelete {
    /// The PersistentVolumeClaim stays.
    #[default]
    Retain,
    /// The PersistentVolumeClaim is deleted with the standby's StatefulSet.
    Delete,
}

/// How mail the standby held is handed back to the primary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HandBack {
    /// At most this many messages per second go to the primary, so a primary just back is
    /// not flooded.
    #[serde(default = "default_messages_per_second")]
    #[schemars(range(min = 1, max = 1000))]
    pub messages_per_second: u32,

    /// Seconds to wait after the primary answers 4xx (or cannot be reached) before trying
    /// again; the wait doubles with every attempt, up to 16 times this.
    #[serde(default = "default_retry_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub retry_seconds: u32,
}

fn default_messages_per_second() -> u32 {
    20
}
fn default_retry_seconds() -> u32 {
    60
}

impl Default for HandBack {
    fn default() -> Self {
        Self {
            messages_per_second: default_messages_per_second(),
            retry_seconds: default_retry_seconds(),
        }
    }
}

fn default_retention_days() -> u32 {
    90
}
fn default_storage_size() -> String {
    "10Gi".into()
}

impl Default for Archive {
    fn default() -> Self {
        Self {
            retention_days: default_retention_days(),
            storage_size: default_storage_size(),
            storage_class_name: None,
            on_delete: VolumeOnDelete::Retain,
        }
    }
}

/// The standby workloads.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Standby {
    /// The mail pod (Postfix and Dovecot). It runs as a single replica: the mail store is a
    /// ReadWriteOnce volume that only one Dovecot may write.
    #[serde(default)]
    pub mail: MailWorkload,

    /// The webmail pods (Roundcube).
    #[serde(default)]
    pub webmail: WebmailWorkload,
}

/// The standby mail pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MailWorkload {
    /// Postfix image; the operator's default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postfix_image: Option<String>,

    /// Dovecot image; the operator's default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dovecot_image: Option<String>,

    /// Compute resources of each mail container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Where the standby sends the mail its users write, as Postfix's `relayhost`: for
    /// example `[smtp.provider.example]:587`. Delivered directly (MX lookup) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(RELAY_HOST_PATTERN), length(max = 260))]
    pub relay_host: Option<String>,

    /// Run the mail pod in a user namespace of its own (`hostUsers: false`). Postfix must start
    /// as root; in a user namespace that root is an unprivileged user on the node. Needs
    /// Kubernetes 1.33 or later with user namespaces supported by the nodes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user_namespace: bool,
}

/// A Postfix relayhost: a host name, or a bracketed name or address (no MX lookup), with an
/// optional port.
const RELAY_HOST_PATTERN: &str = r"^(\[[-a-zA-Z0-9.:]+\]|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)(:[0-9]{1,5})?$";

/// The standby webmail pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebmailWorkload {
    /// Roundcube image; the operator's default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Number of webmail pods. Roundcube keeps a session on the pod it was opened on: with
    /// more than one, the Ingress must send each user to the same pod (cookie affinity; for
    /// ingress-nginx, `nginx.ingress.kubernetes.io/affinity: cookie` in `webmail.annotations`).
    #[serde(default = "default_webmail_replicas")]
    #[schemars(range(min = 0, max = 20))]
    pub replicas: i32,

    /// Compute resources of each webmail pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_webmail_replicas() -> i32 {
    1
}

impl Default for WebmailWorkload {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_webmail_replicas(),
            resources: None,
        }
    }
}

/// How users reach the continuity webmail.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.tlsSecretName) && has(self.clusterIssuer))").message("set webmail.tlsSecretName or webmail.clusterIssuer, not both"))]
pub struct Webmail {
    /// Host name of the webmail, for example `continuity.example.com`.
    #[schemars(pattern(DOMAIN_PATTERN), length(max = 253))]
    pub host: String,

    /// IngressClass of the webmail Ingress; the cluster default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,

    /// Secret holding the webmail's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(OBJECT_NAME_PATTERN))]
    pub tls_secret_name: Option<String>,

    /// cert-manager ClusterIssuer that issues the webmail's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_issuer: Option<String>,

    /// Extra annotations for the webmail Ingress.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// How the provider's inbound gateway finds the current next hop.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    /// Name of the per-domain Service whose cluster DNS name the gateway relays to; it points
    /// at the primary or at the standby. Defaults to `<name>-next-hop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub service_name: Option<String>,

    /// Whether the domain's next hop is listed in the operator's Postfix transport map.
    #[serde(default = "default_true")]
    pub transport_map: bool,

    /// Where gateways reach this domain's standby, as written into the transport map; by
    /// default the standby mail Service's cluster DNS name, port 25. Set it for gateways
    /// outside the cluster (a LoadBalancer address, for example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_next_hop: Option<NextHop>,
}

/// A host and port to relay mail to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NextHop {
    /// DNS name or IP address.
    #[schemars(pattern(HOST_PATTERN), length(min = 1, max = 253))]
    pub host: String,

    /// SMTP port.
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

fn default_true() -> bool {
    true
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            service_name: None,
            transport_map: true,
            standby_next_hop: None,
        }
    }
}
