//! Who is covered: the scope, the directory the addresses come from, emergency passwords.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{ADDRESS_PATTERN, OBJECT_NAME_PATTERN};

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
