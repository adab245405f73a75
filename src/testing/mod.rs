//! Test helpers: YAML fixtures from `tests/fixtures/`, and the operator environment the
//! builders are tested in.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::api::ContinuityDomain;

use crate::resources::network_policy::GatewayPeers;
use crate::resources::{Environment, Images};
use crate::standby::images;
use crate::validation::policy::{DEFAULT_WEBMAIL_ANNOTATIONS, TenantPolicy};
use crate::validation::{Standing, ValidatedDomain, claims::Claim, validate};

/// The operator's default images, a gateway in namespace `mail-gateway`, `cluster.local`.
pub fn environment() -> Environment {
    Environment {
        cluster_domain: "cluster.local".into(),
        images: Images {
            postfix: images::POSTFIX.into(),
            dovecot: images::DOVECOT.into(),
            webmail: images::WEBMAIL.into(),
            agent: images::AGENT.into(),
        },
        gateway: GatewayPeers {
            namespace_labels: BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), "mail-gateway".to_owned())]),
            ..GatewayPeers::default()
        },
        policy: TenantPolicy {
            image_prefixes: Vec::new(),
            webmail_annotations: DEFAULT_WEBMAIL_ANNOTATIONS.split(',').map(str::to_owned).collect(),
            primary_networks: std::sync::Arc::default(),
            primary_ports: crate::validation::policy::PortRanges::default(),
        },
    }
}

/// Parses `tests/fixtures/<name>`; a missing or malformed fixture fails the test loudly.
pub fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// The validated form of `domain` in the test [`environment`], which must act. Leaked: a
/// test's fixtures live as long as the test.
pub fn acting(domain: ContinuityDomain) -> ValidatedDomain<'static> {
    let domain: &'static ContinuityDomain = Box::leak(Box::new(domain));
    let env: &'static Environment = Box::leak(Box::new(environment()));
    match validate(domain, true, &[Claim::of(domain)], env).map(|v| v.standing) {
        Ok(Standing::Acts(validated)) => *validated,
        other => panic!("the domain does not act: {other:?}"),
    }
}

/// The validated form of the fixture `name` (see [`acting`]).
pub fn validated(name: &str) -> ValidatedDomain<'static> {
    acting(fixture(name))
}

pub mod pod_security;
