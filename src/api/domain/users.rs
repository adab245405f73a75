//! Who is covered: the scope, the directory the addresses come from, emergency passwords.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{ADDRESS_PATTERN, OBJECT_NAME_PATTERN};

/// Which users the service covers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scope != 'AllUsers' || has(self.directory)").message("users.directory is required with scope AllUsers"),
    validation = Rule::new("self.scope == 'AllUsers' || size(self.exclude) == 0").message("users.exclude is only used with scope AllUsers")
)]
pub struct UserCoverage {
    /// `SelectedUsers` (the default): exactly the ContinuityUsers that reference this domain.
    /// `AllUsers`: every address the directory lists for the domain, minus `exclude`.
    #[serde(default)]
    pub scope: UserScope,

    /// The directory that lists the domain's addresses. With scope `AllUsers` it decides who
    /// is covered; with `SelectedUsers` it is where users are chosen from: `kubectl
    /// continuity users add` checks addresses against it and suggests from it.
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
#[x_kube(
    validation = Rule::new("!has(self.tls) || self.tls.mode != 'LDAPS' || self.url.startsWith('ldaps://')").message("tls.mode LDAPS needs an ldaps:// URL"),
    validation = Rule::new("!has(self.tls) || self.tls.mode == 'LDAPS' || self.url.startsWith('ldap://')").message("tls.mode None and StartTLS need an ldap:// URL")
)]
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
    #[schemars(pattern(ATTRIBUTE_PATTERN), length(max = 128))]
    pub mail_attribute: String,

    /// Attribute holding more addresses of a user (for example `mailAlternateAddress`, or
    /// Active Directory's `proxyAddresses`, whose `smtp:` prefixes are removed). Those of
    /// the domain are covered too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ATTRIBUTE_PATTERN), length(max = 128))]
    pub alias_attribute: Option<String>,

    /// How the connection is secured. Without it: `LDAPS` for an `ldaps://` URL, else `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<LdapTls>,

    /// Entries asked for per page (the simple paged results control, RFC 2696).
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub page_size: u32,

    /// Seconds between two reads of the directory.
    #[serde(default = "default_resync_period_seconds")]
    #[schemars(range(min = 10, max = 86400))]
    pub resync_period_seconds: u32,

    /// Seconds one read (connect, bind and every page) may take.
    #[serde(default = "default_ldap_timeout_seconds")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: u32,
}

/// An LDAP attribute name (a descriptor, RFC 4512).
const ATTRIBUTE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9-]*$";

fn default_ldap_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_mail_attribute() -> String {
    "mail".into()
}
fn default_page_size() -> u32 {
    500
}
fn default_resync_period_seconds() -> u32 {
    300
}
fn default_ldap_timeout_seconds() -> u32 {
    30
}

/// TLS towards the directory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LdapTls {
    /// `None` (plain LDAP), `StartTLS` (an `ldap://` URL, upgraded before the bind) or
    /// `LDAPS` (an `ldaps://` URL).
    pub mode: LdapTlsMode,

    /// PEM-encoded CA certificates trusted, besides the public Web PKI roots, when checking
    /// the directory's certificate (for a directory whose certificate comes from a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
}

/// How the connection to the directory is secured.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LdapTlsMode {
    None,
    #[serde(rename = "StartTLS")]
    StartTls,
    #[serde(rename = "LDAPS")]
    Ldaps,
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
    /// trailing newline is ignored). A key is the local part in lower case, each byte other
    /// than `a-z`, `0-9`, `.`, `_` and `-` written `X` and two upper-case hex digits
    /// (`bobX2Bnews` for `bob+news@…`). A ContinuityUser's own `emergencyPassword` takes
    /// precedence. The standby stores only SHA512-CRYPT hashes of them.
    pub secret_ref: LocalObjectReference,
}
