//! The per-domain next-hop Service (SPEC 4.4): an `ExternalName` Service whose cluster DNS
//! name the provider's gateway relays to, and which names either the primary or the standby
//! mail Service. Flipping it is one write, and it works on every Kubernetes version.
//!
//! `ExternalName` needs a DNS name. For a primary given as an IP address the operator adds a
//! selector-less `<name>-primary` Service with an Endpoints object holding that address (and
//! mapping port 25 to the primary's port), and the next hop names that Service instead.
//! `ExternalName` cannot change ports: the gateway connects to port 25 of the next hop, so a
//! primary known by DNS name must listen there; the transport map carries any port.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::api::domain::RouteTarget;
use crate::host::Host;
use crate::validation::ValidatedDomain;

/// The port the next hop and the standby mail Service serve SMTP on.
pub const SMTP_PORT: u16 = 25;
/// Component label of the routing objects.
pub const COMPONENT: &str = "routing";

/// The DNS name the next-hop Service points at for `target`.
pub fn target_host(domain: &ValidatedDomain<'_>, target: RouteTarget) -> String {
    match (target, &domain.primary) {
        (RouteTarget::Standby, _) => domain.standby_host(),
        (RouteTarget::Primary, Host::Ip(_)) => domain.service_host(&domain.names.primary),
        (RouteTarget::Primary, Host::Name(name)) => name.clone(),
    }
}

fn smtp_port(target_port: u16) -> ServicePort {
    ServicePort {
        name: Some("smtp".into()),
        port: SMTP_PORT.into(),
        target_port: Some(IntOrString::Int(target_port.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The next-hop Service pointing at `target`.
pub fn service(domain: &ValidatedDomain<'_>, target: RouteTarget) -> Service {
    let mut meta = child_meta(domain, &domain.names.next_hop, COMPONENT);
    meta.annotations = Some(BTreeMap::from([(
        "continuity.mailops.io/route".to_owned(),
        match target {
            RouteTarget::Primary => "Primary".to_owned(),
            RouteTarget::Standby => "Standby".to_owned(),
        },
    )]));
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target_host(domain, target)),
            ports: Some(vec![smtp_port(SMTP_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// For a primary given by IP address: the selector-less Service and its Endpoints.
pub fn primary_by_address(domain: &ValidatedDomain<'_>) -> Option<(Service, Endpoints)> {
    let ip = domain.primary.ip()?;
    let name = &domain.names.primary;
    let port = domain.spec.primary.port;
    let service = Service {
        metadata: child_meta(domain, name, COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![smtp_port(port)]),
            // The Service's family must match the address, or kube-proxy ignores the Endpoints
            // (and a cluster without that family refuses the Service, which status reports).
            ip_families: Some(vec![if ip.is_ipv6() { "IPv6" } else { "IPv4" }.to_owned()]),
            ip_family_policy: Some("SingleStack".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let endpoints = Endpoints {
        metadata: child_meta(domain, name, COMPONENT),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.to_string(),
                ..EndpointAddress::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("smtp".into()),
                port: port.into(),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
            ..EndpointSubset::default()
        }]),
    };
    Some((service, endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Environment;
    use crate::testing::{environment, validated};
    use crate::validation::ValidatedDomain;

    fn external_name(service: &Service) -> &str {
        service
            .spec
            .as_ref()
            .and_then(|s| s.external_name.as_deref())
            .unwrap_or_default()
    }

    #[test]
    fn a_named_primary_is_the_external_name_and_the_standby_its_service() {
        let domain = validated("domain-minimal.yaml");
        let to_primary = service(&domain, RouteTarget::Primary);
        assert_eq!(to_primary.metadata.name.as_deref(), Some("example-com-next-hop"));
        assert_eq!(external_name(&to_primary), "mx.example.com");
        let to_standby = service(&domain, RouteTarget::Standby);
        assert_eq!(
            external_name(&to_standby),
            "example-com-standby-mail.tenant-a.svc.cluster.local"
        );
        assert!(primary_by_address(&domain).is_none());
    }

    #[test]
    fn an_ip_primary_gets_a_service_with_endpoints() {
        let env = Environment {
            cluster_domain: "cluster.example".into(),
            ..environment()
        };
        let domain = ValidatedDomain {
            env: &env,
            ..validated("domain-static.yaml") // 192.0.2.25:2525
        };
        let to_primary = service(&domain, RouteTarget::Primary);
        assert_eq!(
            external_name(&to_primary),
            "example-com-primary.tenant-a.svc.cluster.example"
        );
        let (front, endpoints) = primary_by_address(&domain).unwrap();
        let port = &front.spec.unwrap().ports.unwrap()[0];
        assert_eq!(
            (port.port, port.target_port.clone()),
            (25, Some(IntOrString::Int(2525)))
        );
        let subset = &endpoints.subsets.unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "192.0.2.25");
        let v6 = ValidatedDomain {
            primary: Host::Ip("2001:db8::25".parse().unwrap()),
            ..domain
        };
        let (front, _) = primary_by_address(&v6).unwrap();
        assert_eq!(front.spec.unwrap().ip_families, Some(vec!["IPv6".to_owned()]));
        assert_eq!(subset.ports.as_ref().unwrap()[0].port, 2525);
    }

    #[test]
    fn the_flip_changes_only_the_external_name_and_route_annotation() {
        let domain = validated("domain-minimal.yaml");
        let mut a = serde_json::to_value(service(&domain, RouteTarget::Primary)).unwrap();
        let mut b = serde_json::to_value(service(&domain, RouteTarget::Standby)).unwrap();
        for v in [&mut a, &mut b] {
            v["spec"]["externalName"] = serde_json::Value::Null;
            v["metadata"]["annotations"] = serde_json::Value::Null;
        }
        assert_eq!(a, b);
    }
}
