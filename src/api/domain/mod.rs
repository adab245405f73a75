//! `ContinuityDomain`: one mail domain protected by the Continuity Service, with the
//! customer's primary server, how it is health-checked, who is covered, and the standby
//! stack that takes over when the primary fails. The spec's parts live in submodules (the
//! primary and its health check, the users covered, the standby and routing, the status);
//! they are re-exported here.

mod health;
mod standby;
mod status;
mod users;

pub use health::*;
pub use standby::*;
pub use status::*;
pub use users::*;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::api::DOMAIN_PATTERN;

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

    /// How the mail the standby held is handed back to the primary after failback.
    #[serde(default)]
    pub hand_back: HandBack,

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
