//! Rules the API server cannot be relied on to enforce, checked by the operator itself.
//!
//! The CEL rules (`x-kubernetes-validations`) in the CRDs protect modern clusters, but
//! Kubernetes before 1.25 drops them silently. So the controller evaluates the very same rules
//! from the generated schema (compiled once) and reports violations in a condition instead of
//! acting on the spec. A few checks cannot be expressed in the schema at all: exact IP address
//! syntax, and the immutability of a domain once claimed (CEL's `oldSelf` only exists during an
//! update; the operator compares with the claim recorded in status).

use std::net::IpAddr;
use std::sync::LazyLock;

use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde::Serialize;

use kube::ResourceExt;

use crate::api::ContinuityDomain;
use crate::host::Host;
use crate::resources::names::ChildNames;

/// Why a spec cannot be acted on; the message a user reads in the condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A rule the schema states but the API server may not have enforced.
    Rule(String),
    /// `spec.domain` was changed after the domain was claimed.
    DomainChanged { claimed: String, requested: String },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Rule(message) => f.write_str(message),
            Violation::DomainChanged { claimed, requested } => write!(
                f,
                "spec.domain is immutable: this resource serves {claimed}; change it back or create another ContinuityDomain for {requested}"
            ),
        }
    }
}

/// Joins violations into one condition message.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

static DOMAIN_RULES: LazyLock<CompiledSchema> = LazyLock::new(compiled_rules::<ContinuityDomain>);

fn compiled_rules<K: CustomResourceExt>() -> CompiledSchema {
    let crd = K::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default();
    compile_schema(&schema)
}

fn cel_violations<K: Serialize>(rules: &CompiledSchema, object: &K) -> Vec<Violation> {
    let value = match serde_json::to_value(object) {
        Ok(value) => value,
        Err(error) => {
            return vec![Violation::Rule(format!("object cannot be serialized: {error}"))];
        }
    };
    match Validator::new().validate_compiled(rules, &value, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| Violation::Rule(e.to_string())).collect(),
    }
}

/// The primary's host, parsed, when nothing is wrong with the spec; otherwise everything
/// wrong with it that the API server may have let through.
pub fn check(domain: &ContinuityDomain) -> Result<Host, Vec<Violation>> {
    let mut violations: Vec<Violation> = name_violation(&domain.name_any()).into_iter().collect();
    violations.extend(cel_violations(&DOMAIN_RULES, domain));
    violations.extend(service_name_violation(domain));
    violations.extend(storage_violation(&domain.spec.archive.storage_size));
    let primary = primary_host(&domain.spec.primary.host);
    if let Err(violation) = &primary {
        violations.push(violation.clone());
    }
    if let Some(bundle) = &domain.spec.primary.ca_bundle
        && let Err(error) = crate::tls::verifying(Some(bundle))
    {
        violations.push(Violation::Rule(format!("spec.primary.caBundle: {error}")));
    }
    if let Some(ldap) = domain.spec.users.directory.as_ref().and_then(|d| d.ldap.as_ref())
        && let Err(error) = crate::directory::Query::of(ldap)
    {
        violations.push(Violation::Rule(error));
    }
    if let Some(claimed) = domain.status.as_ref().and_then(|s| s.claimed_domain.as_ref())
        && *claimed != domain.spec.domain
    {
        violations.push(Violation::DomainChanged {
            claimed: claimed.clone(),
            requested: domain.spec.domain.clone(),
        });
    }
    match primary {
        Ok(host) if violations.is_empty() => Ok(host),
        _ => Err(violations),
    }
}

/// The longest name a ContinuityDomain may have: its StatefulSet `<name>-standby-mail` must
/// leave room in the 63 characters of the `controller-revision-hash` label Kubernetes gives
/// its pods (the name, a dash and a 10-character hash).
pub const MAX_NAME_LENGTH: usize = 39;

/// Why a ContinuityDomain's `metadata.name` cannot name its children (Services need DNS-1035
/// labels: lower-case letters, digits and dashes, starting with a letter), if it cannot.
pub fn name_violation(name: &str) -> Option<Violation> {
    let label = name.len() <= MAX_NAME_LENGTH
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!label).then(|| {
        Violation::Rule(format!(
            "metadata.name: {name:?} cannot name this domain's children: use at most {MAX_NAME_LENGTH} lower-case letters, digits and dashes, starting with a letter and not ending with a dash"
        ))
    })
}

/// `spec.routing.serviceName` naming one of the domain's other Services.
fn service_name_violation(domain: &ContinuityDomain) -> Option<Violation> {
    let chosen = domain.spec.routing.service_name.as_ref()?;
    let names = ChildNames::of(&domain.name_any(), &domain.spec);
    let taken = [
        (&names.standby_mail, "standby mail"),
        (&names.webmail, "webmail"),
        (&names.primary, "primary"),
    ];
    let (_, what) = taken.iter().find(|(name, _)| *name == chosen)?;
    Some(Violation::Rule(format!(
        "spec.routing.serviceName: {chosen} is the name of this domain's {what} Service; the next hop needs a name of its own"
    )))
}

/// The largest mail volume a domain may ask for: 1 PiB.
const MAX_STORAGE_BYTES: f64 = 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0;

/// `spec.archive.storageSize` that is no quantity, or an absurd one.
fn storage_violation(size: &str) -> Option<Violation> {
    match crate::resources::quantity(size) {
        Some(bytes) if bytes > 0.0 && bytes <= MAX_STORAGE_BYTES => None,
        _ => Some(Violation::Rule(format!(
            "spec.archive.storageSize: {size:?} is not a size between 1 byte and 1Pi"
        ))),
    }
}

/// Everything wrong with a ContinuityDomain's spec (see [`check`]).
pub fn violations(domain: &ContinuityDomain) -> Vec<Violation> {
    check(domain).err().unwrap_or_default()
}

/// `spec.primary.host` parsed: an IP address Services can route to, or a DNS name (whose
/// shape the schema checks).
fn primary_host(host: &str) -> Result<Host, Violation> {
    match host.parse::<IpAddr>() {
        Ok(ip) if routable(ip) => Ok(Host::Ip(ip)),
        Ok(ip) => Err(Violation::Rule(format!(
            "spec.primary.host: {ip} is a loopback, link-local, unspecified or multicast address, which Kubernetes Services cannot route to; use the primary's routable address or a DNS name"
        ))),
        Err(_) if looks_like_ip(host) => Err(Violation::Rule(format!(
            "spec.primary.host: {host:?} is neither a DNS name nor a valid IP address"
        ))),
        Err(_) => Ok(Host::Name(host.to_owned())),
    }
}

/// Whether a Service's Endpoints may hold `ip` (the API server refuses the others).
fn routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast()),
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unspecified() || v6.is_multicast()),
    }
}

/// An IPv6 address always holds a colon; a host of digits and dots only is meant as IPv4
/// (no top-level domain is numeric).
fn looks_like_ip(host: &str) -> bool {
    host.contains(':') || host.chars().all(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::domain::ContinuityDomainStatus;
    use crate::testing::fixture;
    use std::net::Ipv4Addr;

    fn messages(violations: &[Violation]) -> String {
        describe(violations)
    }

    #[test]
    fn valid_fixtures_have_no_violations() {
        for name in ["domain-minimal.yaml", "domain-full.yaml", "domain-static.yaml"] {
            let d: ContinuityDomain = fixture(name);
            assert_eq!(violations(&d), vec![], "{name}");
        }
    }

    #[test]
    fn cel_rules_are_enforced_in_code() {
        let cases = [
            ("domain-manual-without-override.yaml", "activation.override is required"),
            (
                "domain-exclude-with-selected-users.yaml",
                "users.exclude is only used with scope AllUsers",
            ),
            ("domain-all-users-without-directory.yaml", "users.directory is required"),
            (
                "domain-timeout-over-period.yaml",
                "timeoutSeconds must not exceed periodSeconds",
            ),
            (
                "domain-fast-retry-over-period.yaml",
                "fastRetryMilliseconds must be shorter than periodSeconds",
            ),
            ("domain-static-address-elsewhere.yaml", "must belong to the domain"),
            ("domain-webmail-two-tls-sources.yaml", "not both"),
            (
                "domain-ldaps-mode-plain-url.yaml",
                "tls.mode LDAPS needs an ldaps:// URL",
            ),
        ];
        for (name, expected) in cases {
            let d: ContinuityDomain = fixture(name);
            let found = messages(&violations(&d));
            assert!(found.contains(expected), "{name}: expected {expected:?} in {found:?}");
        }
    }

    /// Modern API servers refuse a CRD whose rules do not compile, or whose cost they cannot
    /// bound: every list a rule iterates, and the strings in it, need maxItems and maxLength.
    #[test]
    fn every_rule_compiles_and_iterates_only_bounded_lists() {
        fn count_rules(node: &CompiledSchema, problems: &mut Vec<String>) -> usize {
            let mut rules = 0;
            for compiled in &node.validations {
                match compiled {
                    Ok(_) => rules += 1,
                    Err(error) => problems.push(error.to_string()),
                }
            }
            let children = node.properties.values().chain(node.items.as_deref());
            rules + children.map(|child| count_rules(child, problems)).sum::<usize>()
        }
        let mut problems = Vec::new();
        assert_eq!(count_rules(&DOMAIN_RULES, &mut problems), 12);
        assert_eq!(problems, Vec::<String>::new());

        let crd = serde_json::to_value(ContinuityDomain::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for path in [
            &["users", "exclude"][..],
            &["users", "directory", "static", "addresses"],
        ] {
            let list = path.iter().fold(spec, |node, key| &node["properties"][*key]);
            assert!(
                list["maxItems"].as_u64().is_some_and(|n| n <= 5000),
                "{path:?} needs maxItems"
            );
            assert!(
                list["items"]["maxLength"].as_u64().is_some_and(|n| n <= 254),
                "{path:?} items need maxLength"
            );
        }
        assert!(spec["properties"]["domain"]["maxLength"].as_u64().is_some());
    }

    #[test]
    fn ip_hosts_are_parsed_exactly() {
        let mut d: ContinuityDomain = fixture("domain-minimal.yaml");
        for good in ["192.0.2.10", "2001:db8::25", "mx1.example.com"] {
            d.spec.primary.host = good.into();
            assert_eq!(violations(&d), vec![], "{good}");
        }
        d.spec.primary.host = "192.0.2.10".into();
        assert_eq!(check(&d), Ok(Host::Ip(Ipv4Addr::new(192, 0, 2, 10).into())));
        d.spec.primary.host = "mx1.example.com".into();
        assert_eq!(check(&d), Ok(Host::Name("mx1.example.com".into())));
        for bad in ["999.1.2.3", "1.2.3", "2001:db8:::1"] {
            d.spec.primary.host = bad.into();
            assert!(
                messages(&violations(&d)).contains("neither a DNS name nor a valid IP"),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_that_cannot_name_children_are_refused() {
        let mut d: ContinuityDomain = fixture("domain-minimal.yaml");
        for good in ["a", "example-com", &"a".repeat(MAX_NAME_LENGTH)] {
            d.metadata.name = Some(good.to_owned());
            assert_eq!(violations(&d), vec![], "{good}");
        }
        for bad in ["example.com", "1st", "a-", "Upper", &"a".repeat(MAX_NAME_LENGTH + 1)] {
            d.metadata.name = Some(bad.to_owned());
            assert!(
                messages(&violations(&d)).contains("cannot name this domain's children"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_next_hop_cannot_take_another_childs_name() {
        let mut d: ContinuityDomain = fixture("domain-minimal.yaml");
        d.spec.routing.service_name = Some("example-com-standby-mail".into());
        assert!(messages(&violations(&d)).contains("standby mail Service"));
        d.spec.routing.service_name = Some("mail-next-hop".into());
        assert_eq!(violations(&d), vec![]);
    }

    #[test]
    fn absurd_storage_sizes_are_refused() {
        let mut d: ContinuityDomain = fixture("domain-minimal.yaml");
        for bad in ["99999999999999999999999999Pi", "0", "lots", "-1Gi", "2Pi"] {
            d.spec.archive.storage_size = bad.into();
            assert!(messages(&violations(&d)).contains("spec.archive.storageSize"), "{bad}");
        }
        d.spec.archive.storage_size = "500Gi".into();
        assert_eq!(violations(&d), vec![]);
    }

    #[test]
    fn a_ca_bundle_must_hold_certificates() {
        let mut d: ContinuityDomain = fixture("domain-minimal.yaml");
        d.spec.primary.ca_bundle = Some("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into());
        assert!(
            messages(&violations(&d)).contains("spec.primary.caBundle"),
            "{}",
            messages(&violations(&d))
        );
    }

    #[test]
    fn a_claimed_domain_cannot_change() {
        let mut d: ContinuityDomain = fixture("domain-minimal.yaml");
        d.status = Some(ContinuityDomainStatus {
            claimed_domain: Some("example.org".into()),
            ..Default::default()
        });
        let found = violations(&d);
        assert_eq!(
            found,
            vec![Violation::DomainChanged {
                claimed: "example.org".into(),
                requested: d.spec.domain.clone()
            }]
        );
        assert!(messages(&found).contains("spec.domain is immutable"));

        d.status.as_mut().unwrap().claimed_domain = Some(d.spec.domain.clone());
        assert_eq!(violations(&d), vec![]);
    }
}
