//! What the provider lets a tenant set: images of its own standby (a tenant's image would run
//! with the mail pod's privileges), annotations on its webmail Ingress (an ingress controller
//! may run what they say, nginx's `server-snippet` for one), and where its primary may be (see
//! [`ProbeNetworks`]). All pass only through the provider's lists (`--allowed-image-prefixes`,
//! `--allowed-webmail-annotations`, `--cluster-networks`, `--allowed-primary-networks`).

use std::sync::Arc;

use crate::api::ContinuityDomainSpec;
use crate::health::networks::ProbeNetworks;
use crate::host::Host;

use super::rules::Violation;

/// Ingress annotations a tenant may set unless the provider says otherwise: they tune the
/// webmail's HTTP and run nothing.
pub const DEFAULT_WEBMAIL_ANNOTATIONS: &str = "nginx.ingress.kubernetes.io/proxy-body-size,nginx.ingress.kubernetes.io/proxy-read-timeout,nginx.ingress.kubernetes.io/ssl-redirect,nginx.ingress.kubernetes.io/force-ssl-redirect";

/// The provider's allowlists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Prefixes a domain's own images must start with (none: no image of its own).
    pub image_prefixes: Vec<String>,
    /// Annotation keys a domain may put on its webmail Ingress.
    pub webmail_annotations: Vec<String>,
    /// Where primaries may be, and so what the prober may reach.
    pub primary_networks: Arc<ProbeNetworks>,
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
}
