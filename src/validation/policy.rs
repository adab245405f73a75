//! What the provider lets a tenant set: images of its own standby (a tenant's image would run
//! with the mail pod's privileges), annotations on its webmail Ingress (an ingress controller
//! may run what they say, nginx's `server-snippet` for one), and where its primary may be (see
//! [`ProbeNetworks`]) and on which port: the prober tells an open port from a closed one, so
//! a tenant free to pick any port could map a host's services through it; mail ports only,
//! unless the provider says otherwise. All pass only through the provider's lists
//! (`--allowed-image-prefixes`, `--allowed-webmail-annotations`, `--cluster-networks`,
//! `--allowed-primary-networks`, `--allowed-primary-ports`).

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;

use crate::api::ContinuityDomainSpec;
use crate::health::networks::ProbeNetworks;
use crate::host::Host;

use super::rules::Violation;

/// Ingress annotations a tenant may set unless the provider says otherwise: they tune the
/// webmail's HTTP and run nothing.
pub const DEFAULT_WEBMAIL_ANNOTATIONS: &str = "nginx.ingress.kubernetes.io/proxy-body-size,nginx.ingress.kubernetes.io/proxy-read-timeout,nginx.ingress.kubernetes.io/ssl-redirect,nginx.ingress.kubernetes.io/force-ssl-redirect";

/// The ports a primary may listen on unless the provider says otherwise: SMTP, submissions,
/// submission, and the usual alternative.
pub const DEFAULT_PRIMARY_PORTS: &str = "25,465,587,2525";

/// Ports and port ranges, as `25,465,1024-65535`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRanges(Vec<RangeInclusive<u16>>);

impl PortRanges {
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|range| range.contains(&port))
    }
}

impl Default for PortRanges {
    fn default() -> Self {
        DEFAULT_PRIMARY_PORTS
            .parse()
            .unwrap_or_else(|_| PortRanges(vec![25..=25]))
    }
}

impl FromStr for PortRanges {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| format!("{p:?} is not a port"));
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| match entry.split_once('-') {
                Some((low, high)) => {
                    let range = port(low)?..=port(high)?;
                    if range.is_empty() {
                        Err(format!("{entry:?} is an empty range"))
                    } else {
                        Ok(range)
                    }
                }
                None => port(entry).map(|p| p..=p),
            })
            .collect::<Result<_, _>>()
            .map(PortRanges)
    }
}

impl fmt::Display for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .0
            .iter()
            .map(|range| match (range.start(), range.end()) {
                (low, high) if low == high => low.to_string(),
                (low, high) => format!("{low}-{high}"),
            })
            .collect();
        f.write_str(&entries.join(", "))
    }
}

/// The provider's allowlists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Prefixes a domain's own images must start with (none: no image of its own).
    pub image_prefixes: Vec<String>,
    /// Annotation keys a domain may put on its webmail Ingress.
    pub webmail_annotations: Vec<String>,
    /// Where primaries may be, and so what the prober may reach.
    pub primary_networks: Arc<ProbeNetworks>,
    /// The ports primaries may listen on.
    pub primary_ports: PortRanges,
}

impl TenantPolicy {
    /// What in `spec` the provider does not allow; `primary` is its primary's host, parsed.
    pub fn violations(&self, spec: &ContinuityDomainSpec, primary: Option<&Host>) -> Vec<Violation> {
        let images = [
            (
                "spec.standby.mail.postfixImage",
                spec.standby.mail.postfix_image.as_deref(),
            ),
            (
                "spec.standby.mail.dovecotImage",
                spec.standby.mail.dovecot_image.as_deref(),
            ),
            ("spec.standby.webmail.image", spec.standby.webmail.image.as_deref()),
        ];
        let mut violations: Vec<Violation> = images
            .into_iter()
            .filter_map(|(field, image)| Some((field, image?)))
            .filter(|(_, image)| {
                !self
                    .image_prefixes
                    .iter()
                    .any(|prefix| image.starts_with(prefix.as_str()))
            })
            .map(|(field, image)| {
                Violation::Rule(format!(
                    "{field}: {image:?} is not an image the provider allows ({}); leave it out to run the provider's",
                    allowed(&self.image_prefixes, "no images of a domain's own")
                ))
            })
            .collect();
        let keys = spec.webmail.iter().flat_map(|webmail| webmail.annotations.keys());
        violations.extend(keys.filter(|key| !self.webmail_annotations.contains(key)).map(|key| {
            Violation::Rule(format!(
                "spec.webmail.annotations: {key:?} is not an annotation the provider allows ({})",
                allowed(&self.webmail_annotations, "none")
            ))
        }));
        if let Some(ip) = primary.and_then(Host::ip)
            && !self.primary_networks.permits(ip)
        {
            violations.push(Violation::Rule(format!(
                "spec.primary.host: {ip} is in a network the provider does not let primaries be in (the operator's host or the cluster's networks)"
            )));
        }
        if !self.primary_ports.contains(spec.primary.port) {
            violations.push(Violation::Rule(format!(
                "spec.primary.port: {} is not a port the provider lets primaries listen on (allowed: {})",
                spec.primary.port, self.primary_ports
            )));
        }
        violations
    }
}

fn allowed(list: &[String], none: &str) -> String {
    if list.is_empty() {
        format!("it allows {none}")
    } else {
        format!("allowed: {}", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ContinuityDomain;
    use crate::testing::fixture;

    fn policy(prefixes: &[&str]) -> TenantPolicy {
        TenantPolicy {
            image_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            webmail_annotations: DEFAULT_WEBMAIL_ANNOTATIONS.split(',').map(str::to_owned).collect(),
            primary_networks: Arc::new(ProbeNetworks {
                cluster: vec!["10.96.0.0/12".parse().unwrap()],
                allowed: Vec::new(),
            }),
            primary_ports: PortRanges::default(),
        }
    }

    #[test]
    fn images_of_a_domains_own_pass_only_through_the_allowed_prefixes() {
        let mut spec = fixture::<ContinuityDomain>("domain-minimal.yaml").spec;
        assert_eq!(
            policy(&[]).violations(&spec, None),
            vec![],
            "the provider's images need no allowance"
        );
        spec.standby.mail.postfix_image = Some("docker.io/evil/root:latest".into());
        let refused = policy(&[]).violations(&spec, None);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].to_string().contains("spec.standby.mail.postfixImage"),
            "{}",
            refused[0]
        );
        assert_eq!(policy(&["registry.provider.example/"]).violations(&spec, None).len(), 1);
        spec.standby.mail.postfix_image = Some("registry.provider.example/postfix:3".into());
        assert_eq!(policy(&["registry.provider.example/"]).violations(&spec, None), vec![]);
    }

    #[test]
    fn only_allowed_annotations_reach_the_ingress() {
        let mut spec = fixture::<ContinuityDomain>("domain-full.yaml").spec;
        let webmail = spec.webmail.as_mut().expect("a webmail host");
        webmail
            .annotations
            .insert("nginx.ingress.kubernetes.io/proxy-body-size".into(), "20m".into());
        assert_eq!(policy(&[]).violations(&spec, None), vec![]);
        let webmail = spec.webmail.as_mut().expect("a webmail host");
        webmail.annotations.insert(
            "nginx.ingress.kubernetes.io/server-snippet".into(),
            "location / { return 200; }".into(),
        );
        let refused = policy(&[]).violations(&spec, None);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].to_string().contains("server-snippet"));
    }

    #[test]
    fn a_primary_in_the_clusters_networks_is_refused() {
        let spec = fixture::<ContinuityDomain>("domain-minimal.yaml").spec;
        let api_server = Host::Ip("10.96.0.1".parse().unwrap());
        let refused = policy(&[]).violations(&spec, Some(&api_server));
        assert!(refused[0].to_string().contains("spec.primary.host"), "{refused:?}");
        let outside = Host::Ip("192.0.2.25".parse().unwrap());
        assert_eq!(policy(&[]).violations(&spec, Some(&outside)), vec![]);
    }

    #[test]
    fn a_primary_on_a_port_the_provider_did_not_allow_is_refused() {
        let mut spec = fixture::<ContinuityDomain>("domain-minimal.yaml").spec;
        spec.primary.port = 22;
        let refused = policy(&[]).violations(&spec, None);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].to_string().contains("22 is not a port")
                && refused[0].to_string().contains("25, 465, 587, 2525"),
            "{refused:?}"
        );
        for port in [25, 465, 587, 2525] {
            spec.primary.port = port;
            assert_eq!(policy(&[]).violations(&spec, None), vec![]);
        }
    }

    #[test]
    fn port_ranges_parse_and_refuse_nonsense() {
        let ranges: PortRanges = "25, 1024-2048".parse().unwrap();
        assert!(ranges.contains(25) && ranges.contains(1500) && !ranges.contains(587));
        assert_eq!(ranges.to_string(), "25, 1024-2048");
        assert!("ssh".parse::<PortRanges>().is_err());
        assert!("2048-1024".parse::<PortRanges>().is_err());
        assert!("70000".parse::<PortRanges>().is_err());
    }
}
