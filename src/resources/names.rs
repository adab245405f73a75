//! Every child's name, in one place: derived from the domain's name (and, for the next hop,
//! `spec.routing.serviceName`), so the builders, the fetch step and the removal of children
//! the spec no longer asks for all agree.

use crate::api::ContinuityDomainSpec;

/// The names of a domain's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildNames {
    /// The coverage ConfigMap.
    pub coverage: String,
    /// The next-hop Service the gateway relays to.
    pub next_hop: String,
    /// The Service and Endpoints fronting a primary given by IP address.
    pub primary: String,
    /// The standby mail StatefulSet and its Service.
    pub standby_mail: String,
    /// The standby's mail configuration.
    pub standby_config: String,
    /// The Secret holding the emergency password hashes.
    pub standby_passwords: String,
    /// The webmail Deployment, Service and Ingress.
    pub webmail: String,
    /// The webmail's configuration.
    pub webmail_config: String,
}

impl ChildNames {
    /// The names of the children of the domain `name` with `spec`.
    pub fn of(name: &str, spec: &ContinuityDomainSpec) -> Self {
        ChildNames {
            coverage: format!("{name}-coverage"),
            next_hop: spec
                .routing
                .service_name
                .clone()
                .unwrap_or_else(|| format!("{name}-next-hop")),
            primary: format!("{name}-primary"),
            standby_mail: format!("{name}-standby-mail"),
            standby_config: format!("{name}-standby-config"),
            standby_passwords: format!("{name}-standby-passwords"),
            webmail: format!("{name}-webmail"),
            webmail_config: format!("{name}-webmail-config"),
        }
    }
}
