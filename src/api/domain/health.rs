//! The primary server, how it is health-checked, and how continuity is activated.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::HOST_PATTERN;

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

pub(super) fn default_smtp_port() -> u16 {
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
#[x_kube(validation = Rule::new("!has(self.fastRetryMilliseconds) || self.fastRetryMilliseconds < self.periodSeconds * 1000").message("fastRetryMilliseconds must be shorter than periodSeconds"))]
pub struct HealthCheck {
    /// Seconds between two probes of the primary.
    #[serde(default = "default_period_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: u32,

    /// Seconds a probe may take (connect, greeting, EHLO, QUIT) before it counts as a timeout.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: u32,

    /// After a failed probe, probe again this soon instead of after `periodSeconds`, until
    /// `failureThreshold` is reached or a probe passes; likewise after a passed probe that
    /// follows failures, until `successThreshold` (HAProxy's `fastinter`). A dead primary is
    /// then detected in about `periodSeconds + (failureThreshold - 1) x fastRetryMilliseconds`
    /// instead of `failureThreshold x periodSeconds`, and a single failure still flips nothing.
    /// Unset: every probe waits `periodSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 60000))]
    pub fast_retry_milliseconds: Option<u32>,

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
    /// never flip routing. The default is every class but `DNSFailure`: a lookup that fails
    /// (rather than the name not existing) is most often the operator's own network.
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
    ProbeFailureClass::counted_by_default()
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            period_seconds: default_period_seconds(),
            timeout_seconds: default_timeout_seconds(),
            fast_retry_milliseconds: None,
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
    /// The primary's host name does not exist (NXDOMAIN) or has no address: the customer's
    /// DNS says so.
    NameNotFound,
    /// The primary's name resolves to an address the provider does not let the prober reach
    /// (the operator's host, the cluster's networks); nothing is connected to.
    AddressNotAllowed,
    /// Looking up the primary's host name failed (resolver timeout, SERVFAIL): most often the
    /// operator's own network, so not counted towards failover unless listed.
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
            Self::NameNotFound => "the name does not exist or has no address",
            Self::AddressNotAllowed => "the name resolves to an address the prober may not reach",
            Self::DnsFailure => "looking up the name failed",
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
            Self::NameNotFound => "NameNotFound",
            Self::AddressNotAllowed => "AddressNotAllowed",
            Self::DnsFailure => "DNSFailure",
        }
    }

    /// Every class, in the order the schema lists them.
    pub const ALL: [ProbeFailureClass; 9] = [
        Self::Refused,
        Self::Timeout,
        Self::Greeting4xx,
        Self::Greeting5xx,
        Self::TlsFailure,
        Self::ProtocolError,
        Self::NameNotFound,
        Self::AddressNotAllowed,
        Self::DnsFailure,
    ];

    /// What counts towards failover unless a domain lists its own: everything the primary or
    /// its DNS can say, not a lookup that failed on the operator's side.
    pub fn counted_by_default() -> Vec<ProbeFailureClass> {
        Self::ALL
            .into_iter()
            .filter(|class| *class != Self::DnsFailure)
            .collect()
    }
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
