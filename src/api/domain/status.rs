//! Observed state of a ContinuityDomain, written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// The scope users are covered by now. It follows `spec.users.scope`, except that a
    /// switch from `SelectedUsers` to `AllUsers` that would remove ContinuityUsers waits for
    /// the `continuity.mailops.io/confirm-scope-change` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<super::UserScope>,
    /// Number of addresses the service covers.
    pub covered: u32,
    /// Number of covered addresses without an emergency password: they receive mail on the
    /// standby but cannot log in to the webmail.
    #[serde(default)]
    pub without_emergency_password: u32,
    /// The first of those addresses (at most 50, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_emergency_password_addresses: Vec<String>,
    /// Why they have none, each reason once (at most 10): a Secret that does not exist, a key
    /// it lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emergency_password_problems: Vec<String>,
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

/// Mail held by the standby for the primary, as its hand-back agent last reported (one per
/// message and recipient).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageCounts {
    /// Every message the standby accepted for a covered user and held for the primary.
    pub held: u64,
    /// Accepted by the primary.
    pub delivered: u64,
    /// Still waiting for the primary.
    pub pending: u64,
    /// Refused by the primary for good (`kubectl continuity messages --state Failed`).
    pub failed: u64,
    /// When the oldest pending message was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_time: Option<Time>,
}
