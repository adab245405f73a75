//! `ContinuityDomain`: one mail domain protected by the Continuity Service, with the
//! customer's primary server, how it is health-checked, who is covered, and the standby
//! stack that takes over when the primary fails.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ADDRESS_PATTERN, DOMAIN_PATTERN, HOST_PATTERN, OBJECT_NAME_PATTERN};

/// A mail domain protected by the Continuity Service: while the customer's own mail server
/// (the primary) is healthy, mail flows to it; when health checks show it has failed, a
/// standby mail system kept warm by the operator takes over for the covered users, who keep
/// reading and sending mail through a webmail. When the primary is back, routing returns to
/// it and the mail received meanwhile is handed back.
// Each printcolumn(...) repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "continuity.mailops.io",
    version = "v1alpha1",
    kind = "ContinuityDomain",
    doc = "A mail domain protected by the Continuity Service.",
    plural = "continuitydomains",
    singular = "continuitydomain",
    shortname = "cdom",
    category = "continuity",
    namespaced,
    status = "ContinuityDomainStatus",
    derive = "PartialEq",
    cel,
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Route", type_ = "string", json_path = ".status.routing.target"),
    printcolumn(
        name = "Primary",
        type_ = "string",
        description = "Outcome of the latest health check of the primary server",
        json_path = r#".status.conditions[?(@.type=="PrimaryReachable")].reason"#
    ),
    printcolumn(
        name = "Users",
        type_ = "integer",
        description = "Covered users",
        json_path = ".status.users.covered"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("!has(self.users.directory) || !has(self.users.directory.static) || self.users.directory.static.addresses.all(a, a.lowerAscii().endsWith('@' + self.domain))").message("every address in users.directory.static must belong to the domain"),
    validation = Rule::new("self.users.exclude.all(a, a.lowerAscii().endsWith('@' + self.domain))").message("every address in users.exclude must belong to the domain")
)]
#[serde(rename_all = "camelCase")]
pub struct ContinuityDomainSpec {
    /// The protected mail domain, lower case (for example `example.com`). Immutable: to protect
    /// another domain, create another ContinuityDomain. Only one ContinuityDomain in the whole
    /// cluster may claim a domain; a later claimant is put in the `Conflict` condition.
    #[schemars(pattern(DOMAIN_PATTERN), length(max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("domain is immutable; create another ContinuityDomain instead"))]
    pub domain: String,

    /// The customer's own mail server, which receives the domain's mail while it is healthy.
    pub primary: PrimaryServer,

    /// How the primary is health-checked and when a failure flips routing to the standby.
    #[serde(default)]
    pub health_check: HealthCheck,

    /// Whether continuity follows the health checks or the administrator's explicit choice.
    #[serde(default)]
    pub activation: Activation,

    /// Which users of the domain the Continuity Service covers.
    #[serde(default)]
    pub users: UserCoverage,

    /// Where the emergency passwords for the continuity webmail come from. Users synchronised
    /// from a directory cannot log in to the webmail without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_passwords: Option<EmergencyPasswords>,

    /// How long mail is kept on the standby and where it is stored.
    #[serde(default)]
    pub archive: Archive,

    /// The standby mail and webmail workloads.
    #[serde(default)]
    pub standby: Standby,

    /// How users reach the continuity webmail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webmail: Option<Webmail>,

    /// How the provider's inbound gateway finds the current next hop for the domain.
    #[serde(default)]
    pub routing: Routing,

    /// Pause reconciliation: the operator changes nothing for this domain (routing stays as it
    /// is) until this is false again. For maintenance and GitOps freezes.
    #[serde(default)]
    pub suspend: bool,
}

/// The customer's own mail server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryServer {
    /// DNS name or IP address of the customer's mail server.
    #[schemars(pattern(HOST_PATTERN), length(min = 1, max = 253))]
    pub host: String,

    /// SMTP port of the customer's mail server.
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// What the primary is expected to offer for TLS: `None` (plain SMTP), `Opportunistic`
    /// (STARTTLS when offered, certificate not checked) or `Required` (STARTTLS with a valid
    /// certificate, checked every `healthCheck.tlsPeriodSeconds`; a TLS problem is a failed
    /// health check of class `TLSFailure`).
    #[serde(default)]
    pub tls: TlsMode,

    /// PEM-encoded CA certificates trusted, besides the public Web PKI roots, when checking the
    /// primary's certificate (for a primary whose certificate comes from a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
}

fn default_smtp_port() -> u16 {
    25
}

/// TLS expectation towards the primary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP.
    None,
    /// STARTTLS when the server offers it, without certificate verification.
    #[default]
    Opportunistic,
    /// STARTTLS with a verified certificate is required.
    Required,
}

/// Health checking of the primary. Defaults detect a dead primary within about 12 seconds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.timeoutSeconds <= self.periodSeconds").message("timeoutSeconds must not exceed periodSeconds"))]
pub struct HealthCheck {
    /// Seconds between two probes of the primary.
    #[serde(default = "default_period_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: u32,

    /// Seconds a probe may take (connect, greeting, EHLO, QUIT) before it counts as a timeout.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: u32,

    /// Consecutive failed probes after which continuity activates (in Automatic mode).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,

    /// Consecutive successful probes after which routing returns to the primary.
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: u32,

    /// Minimum seconds between two routing flips, so a flapping primary cannot bounce mail
    /// back and forth.
    #[serde(default = "default_min_flip_interval_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub min_flip_interval_seconds: u32,

    /// Seconds between two STARTTLS probes with certificate verification (run less often than
    /// the plain probe). Only used when `primary.tls` is `Required`.
    #[serde(default = "default_tls_period_seconds")]
    #[schemars(range(min = 10, max = 86400))]
    pub tls_period_seconds: u32,

    /// Which probe outcomes count as a failure. Outcomes not listed are reported in status but
    /// never flip routing.
    #[serde(default = "default_failure_classes")]
    #[schemars(length(min = 1))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub failure_classes: Vec<ProbeFailureClass>,
}

fn default_period_seconds() -> u32 {
    3
}
fn default_timeout_seconds() -> u32 {
    2
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    3
}
fn default_min_flip_interval_seconds() -> u32 {
    60
}
fn default_tls_period_seconds() -> u32 {
    300
}
fn default_failure_classes() -> Vec<ProbeFailureClass> {
    ProbeFailureClass::ALL.to_vec()
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            period_seconds: default_period_seconds(),
            timeout_seconds: default_timeout_seconds(),
            failure_threshold: default_failure_threshold(),
            success_threshold: default_success_threshold(),
            min_flip_interval_seconds: default_min_flip_interval_seconds(),
            tls_period_seconds: default_tls_period_seconds(),
            failure_classes: default_failure_classes(),
        }
    }
}

/// How a failed probe of the primary is classified.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeFailureClass {
    /// The TCP connection was refused or reset.
    Refused,
    /// Connecting or waiting for the greeting took longer than `timeoutSeconds`.
    Timeout,
    /// The server greeted with a 4xx code (temporarily unavailable).
    Greeting4xx,
    /// The server greeted with a 5xx code (refuses service).
    Greeting5xx,
    /// STARTTLS or certificate verification failed.
    #[serde(rename = "TLSFailure")]
    TlsFailure,
    /// The server spoke something that is not SMTP.
    ProtocolError,
    /// The primary's host name could not be resolved.
    #[serde(rename = "DNSFailure")]
    DnsFailure,
}

impl ProbeFailureClass {
    /// What the class means, in a few words that do not change from probe to probe.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Refused => "the connection was refused or reset",
            Self::Timeout => "no answer within the timeout",
            Self::Greeting4xx => "the server greets with a temporary refusal (4xx)",
            Self::Greeting5xx => "the server greets with a permanent refusal (5xx)",
            Self::TlsFailure => "STARTTLS or the certificate check failed",
            Self::ProtocolError => "the server does not speak SMTP",
            Self::DnsFailure => "the name does not resolve",
        }
    }

    /// The name used in the API (and in status and metrics).
    pub fn name(self) -> &'static str {
        match self {
            Self::Refused => "Refused",
            Self::Timeout => "Timeout",
            Self::Greeting4xx => "Greeting4xx",
            Self::Greeting5xx => "Greeting5xx",
            Self::TlsFailure => "TLSFailure",
            Self::ProtocolError => "ProtocolError",
            Self::DnsFailure => "DNSFailure",
        }
    }

    /// Every class, in the order the schema lists them.
    pub const ALL: [ProbeFailureClass; 7] = [
        Self::Refused,
        Self::Timeout,
        Self::Greeting4xx,
        Self::Greeting5xx,
        Self::TlsFailure,
        Self::ProtocolError,
        Self::DnsFailure,
    ];
}

/// Whether continuity follows health checks or an explicit decision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode != 'Manual' || has(self.override)").message("activation.override is required when activation.mode is Manual"),
    validation = Rule::new("self.mode == 'Manual' || !has(self.override)").message("activation.override is only allowed when activation.mode is Manual")
)]
pub struct Activation {
    /// `Automatic` (the default) activates continuity when the health checks fail and
    /// deactivates it when the primary is back. `Manual` follows `override` only; the primary
    /// is still probed and its health reported.
    #[serde(default)]
    pub mode: ActivationMode,

    /// With `mode: Manual`, whether continuity is `Active` (mail goes to the standby) or
    /// `Inactive` (mail goes to the primary).
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub manual_override: Option<ManualOverride>,
}

/// Activation mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ActivationMode {
    /// Follow the health checks.
    #[default]
    Automatic,
    /// Follow `activation.override`.
    Manual,
}

/// The administrator's explicit choice in Manual mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualOverride {
    /// Continuity is on: mail is routed to the standby.
    Active,
    /// Continuity is off: mail is routed to the primary.
    Inactive,
}

/// Which users the service covers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scope == 'AllUsers' || !has(self.directory)").message("users.directory is only used with scope AllUsers"),
    validation = Rule::new("self.scope != 'AllUsers' || has(self.directory)").message("users.directory is required with scope AllUsers"),
    validation = Rule::new("self.scope == 'AllUsers' || size(self.exclude) == 0").message("users.exclude is only used with scope AllUsers")
)]
pub struct UserCoverage {
    /// `SelectedUsers` (the default): exactly the ContinuityUsers that reference this domain.
    /// `AllUsers`: every address the directory lists for the domain, minus `exclude`.
    #[serde(default)]
    pub scope: UserScope,

    /// With scope `AllUsers`: the directory that lists the domain's addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<Directory>,

    /// With scope `AllUsers`: addresses the service does not cover although the directory
    /// lists them.
    #[serde(default)]
    #[schemars(inner(pattern(ADDRESS_PATTERN), length(max = 254)), length(max = 1000))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub exclude: Vec<String>,
}

/// Coverage scope.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UserScope {
    /// Every address the directory lists, minus the excluded ones.
    AllUsers,
    /// Only the ContinuityUsers that reference this domain.
    #[default]
    SelectedUsers,
}

/// The source of the domain's addresses: exactly one of `ldap` or `static`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct Directory {
    /// An LDAP directory (for example Active Directory or OpenLDAP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<LdapDirectory>,

    /// A fixed list of addresses.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_list: Option<StaticDirectory>,
}

/// An LDAP directory listing the domain's users.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LdapDirectory {
    /// `ldap://` or `ldaps://` URL of the directory server.
    #[schemars(pattern(r"^ldaps?://[^\s/]+(:[0-9]{1,5})?/?$"))]
    pub url: String,

    /// Secret in this namespace holding the bind DN (key `bindDN`) and password (key
    /// `password`). Omit for an anonymous bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_secret_ref: Option<LocalObjectReference>,

    /// Base DN of the search, for example `ou=people,dc=example,dc=com`.
    #[serde(rename = "baseDN")]
    #[schemars(length(min = 1))]
    pub base_dn: String,

    /// LDAP search filter selecting the users.
    #[serde(default = "default_ldap_filter")]
    #[schemars(length(min = 1))]
    pub filter: String,

    /// Attribute holding a user's mail address.
    #[serde(default = "default_mail_attribute")]
    #[schemars(length(min = 1))]
    pub mail_attribute: String,
}

fn default_ldap_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_mail_attribute() -> String {
    "mail".into()
}

/// A fixed list of the domain's addresses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StaticDirectory {
    /// The addresses; each must belong to the domain.
    #[schemars(inner(pattern(ADDRESS_PATTERN), length(max = 254)), length(max = 5000))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub addresses: Vec<String>,
}

/// Reference to an object in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the object.
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(max = 253))]
    pub name: String,
}

/// Source of per-user emergency passwords.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyPasswords {
    /// Secret in this namespace whose keys are the local parts of addresses (`alice` for
    /// `alice@example.com`) and whose values are the users' emergency passwords (UTF-8; one
    /// trailing newline is ignored). A ContinuityUser's own `emergencyPassword` takes
    /// precedence. The standby stores only SHA512-CRYPT hashes of them.
    pub secret_ref: LocalObjectReference,
}

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

/// Observed state of a ContinuityDomain. Written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContinuityDomainStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `StandbyReady`, `PrimaryReachable`, `ContinuityActive`, `Conflict`: each with
    /// reason, message and the time its status last flipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Summary of the domain's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DomainPhase>,

    /// The domain this resource acts for. Set once the claim is accepted; `spec.domain` may not
    /// diverge from it afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_domain: Option<String>,

    /// The latest health check of the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<PrimaryProbeStatus>,

    /// Where mail for the domain is currently routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingStatus>,

    /// Who is covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersStatus>,

    /// Continuity activations and deactivations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuity: Option<ContinuityEvents>,

    /// Mail held on the standby and handed back to the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessageCounts>,
}

/// Phase of a ContinuityDomain.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainPhase {
    /// The standby is being provisioned; continuity cannot take over yet.
    Provisioning,
    /// The standby is ready and waits; mail goes to the primary.
    Armed,
    /// Something the standby needs is missing or unhealthy.
    Degraded,
    /// Continuity is active: mail goes to the standby.
    Active,
    /// The primary is back; held mail is being handed back to it.
    FailingBack,
    /// `spec.suspend` is set; nothing is changed.
    Suspended,
    /// The spec cannot be acted on (invalid, or the domain is claimed elsewhere).
    Error,
}

/// The latest health check of the primary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryProbeStatus {
    /// When the probe ran.
    pub last_probe_time: Time,
    /// `Ok` or the failure class.
    pub result: String,
    /// How long the probe took, in milliseconds.
    pub latency_milliseconds: u64,
    /// Failed probes in a row.
    pub consecutive_failures: u32,
    /// Successful probes in a row.
    pub consecutive_successes: u32,
    /// What the probe saw: the greeting, or where and why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where mail is routed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoutingStatus {
    /// `Primary` or `Standby`.
    pub target: RouteTarget,
    /// Since when mail goes there.
    pub since: Time,
    /// The next hop as the transport map lists it, for example `smtp:[mx.example.com]:25`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
}

/// A next hop.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// The customer's own server.
    Primary,
    /// The continuity standby.
    Standby,
}

/// Who is covered.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsersStatus {
    /// Number of addresses the service covers.
    pub covered: u32,
    /// Number of covered addresses without an emergency password: they receive mail on the
    /// standby but cannot log in to the webmail.
    #[serde(default)]
    pub without_emergency_password: u32,
    /// The first of those addresses (at most 50, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_emergency_password_addresses: Vec<String>,
}

/// Continuity activations.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContinuityEvents {
    /// When continuity last became active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activation_time: Option<Time>,
    /// When continuity last ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deactivation_time: Option<Time>,
    /// How often continuity became active.
    pub activations: u32,
}

/// Mail held and handed back.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageCounts {
    /// Messages received by the standby that still await replay to the primary.
    pub held: u64,
    /// Messages replayed to the primary.
    pub replayed: u64,
}
