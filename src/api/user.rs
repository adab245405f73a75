//! `ContinuityUser`: one user added on their own to a domain whose scope is `SelectedUsers`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::domain::LocalObjectReference;
use super::{ADDRESS_PATTERN, OBJECT_NAME_PATTERN, SECRET_KEY_PATTERN};

/// A single user covered by the Continuity Service of a ContinuityDomain whose scope is
/// `SelectedUsers`. Deleting it removes the user from the service.
// Each printcolumn(...) repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "continuity.mailops.io",
    version = "v1alpha1",
    kind = "ContinuityUser",
    doc = "A single user covered by a ContinuityDomain whose scope is SelectedUsers.",
    plural = "continuityusers",
    singular = "continuityuser",
    shortname = "cuser",
    category = "continuity",
    namespaced,
    status = "ContinuityUserStatus",
    derive = "PartialEq",
    cel,
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domainRef.name"),
    printcolumn(
        name = "Covered",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Covered")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Covered")].reason"#
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ContinuityUserSpec {
    /// The ContinuityDomain (in this namespace) whose service covers the user.
    pub domain_ref: LocalObjectReference,

    /// The user's mail address; it must belong to the referenced domain.
    #[schemars(pattern(ADDRESS_PATTERN), length(max = 254))]
    pub address: String,

    /// The user's emergency password for the continuity webmail, from a Secret in this
    /// namespace. Takes precedence over the domain's `emergencyPasswords`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_password: Option<SecretKeySelector>,
}

/// A key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[schemars(pattern(OBJECT_NAME_PATTERN), length(max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(pattern(SECRET_KEY_PATTERN), length(max = 253))]
    pub key: String,
}

/// Observed state of a ContinuityUser. Written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContinuityUserStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Covered` (whether the domain's service covers this user, and why not) and `Ready`
    /// (covered and the mailbox is provisioned on the standby).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
