//! The custom resources of `continuity.mailops.io/v1alpha1`: their Rust types (from which the
//! CRD YAML in `crds/` is generated) and the condition vocabulary. The rules the schema cannot
//! enforce on every cluster we support are in [`crate::validation`].

pub mod conditions;
pub mod domain;
pub mod user;

pub use domain::{ContinuityDomain, ContinuityDomainSpec, ContinuityDomainStatus};
pub use user::{ContinuityUser, ContinuityUserSpec, ContinuityUserStatus};

/// A lower-case DNS name with at least two labels whose last label starts with a letter, so
/// that an IPv4 address is never mistaken for a mail domain.
pub const DOMAIN_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";

/// A mail address: a dot-atom local part (RFC 5322, without quoted strings) and a DNS domain.
/// Upper case is accepted; the operator compares addresses case-insensitively.
pub const ADDRESS_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$";

/// A host: a lower-case DNS name, an IPv4 address or an IPv6 address. The schema only checks
/// the shape; [`crate::validation`] parses IP addresses exactly.
pub const HOST_PATTERN: &str =
    r"^(([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$";

/// Name of a Kubernetes object (RFC 1123 subdomain).
pub const OBJECT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";

/// A key of a Secret's data.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
