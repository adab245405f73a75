//! Default-deny ingress for the standby's pods (SPEC 5): the mail pod admits SMTP only from
//! the provider's gateway (namespaces, pods and address ranges from the operator's flags) and
//! IMAP and submission only from the domain's own webmail pods, the hand-back agent's tracking
//! endpoint only from the API server's addresses (its service proxy is how the operator and
//! `kubectl continuity` reach it; no tenant's pod may read another's mail log); the webmail
//! pods admit HTTP
//! (from the ingress controller, wherever it runs) and nothing else. Egress is left open: the
//! standby delivers its users' mail to any server on the Internet.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, mail, selector_labels, webmail};
use crate::standby::layout;
use crate::validation::ValidatedDomain;

/// Who may send SMTP to the standbys: the provider's inbound gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayPeers {
    /// Labels of the gateway's namespaces; none for a gateway outside the cluster only (an
    /// empty selector would admit every namespace, tenants' included).
    pub namespace_labels: BTreeMap<String, String>,
    /// Labels of the gateway's pods in those namespaces (every pod when empty).
    pub pod_labels: BTreeMap<String, String>,
    /// Address ranges of gateways outside the cluster.
    pub cidrs: Vec<String>,
    /// The API server's addresses, admitted to the agents' tracking endpoint.
    pub api_server_cidrs: Vec<String>,
}

fn selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: (!labels.is_empty()).then(|| labels.clone()),
        ..LabelSelector::default()
    }
}

fn ports(numbers: &[u16]) -> Option<Vec<NetworkPolicyPort>> {
    Some(
        numbers
            .iter()
            .map(|port| NetworkPolicyPort {
                port: Some(IntOrString::Int((*port).into())),
                protocol: Some("TCP".into()),
                ..NetworkPolicyPort::default()
            })
            .collect(),
    )
}

fn policy(
    domain: &ValidatedDomain<'_>,
    name: &str,
    component: &str,
    rules: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: child_meta(domain, name, component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&selector_labels(domain, component))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// The mail pod's policy.
pub fn mail_policy(domain: &ValidatedDomain<'_>) -> NetworkPolicy {
    let gateway = &domain.env.gateway;
    let in_cluster = (!gateway.namespace_labels.is_empty()).then(|| NetworkPolicyPeer {
        namespace_selector: Some(selector(&gateway.namespace_labels)),
        pod_selector: (!gateway.pod_labels.is_empty()).then(|| selector(&gateway.pod_labels)),
        ..NetworkPolicyPeer::default()
    });
    let gateway_peers: Vec<NetworkPolicyPeer> = in_cluster.into_iter().chain(ip_blocks(&gateway.cidrs)).collect();
    let webmail_pods = NetworkPolicyPeer {
        pod_selector: Some(selector(&selector_labels(domain, webmail::COMPONENT))),
        ..NetworkPolicyPeer::default()
    };
    let mut rules = vec![
        NetworkPolicyIngressRule {
            from: Some(gateway_peers),
            ports: ports(&[layout::SMTP_PORT]),
        },
        NetworkPolicyIngressRule {
            from: Some(vec![webmail_pods]),
            ports: ports(&[layout::IMAP_PORT, layout::SUBMISSION_PORT]),
        },
    ];
    // No rule at all without addresses: a rule with an empty `from` admits everyone.
    if !gateway.api_server_cidrs.is_empty() {
        rules.push(NetworkPolicyIngressRule {
            from: Some(ip_blocks(&gateway.api_server_cidrs).collect()),
            ports: ports(&[crate::handback::tracking::PORT]),
        });
    }
    policy(domain, &domain.names.standby_mail, mail::COMPONENT, rules)
}

fn ip_blocks(cidrs: &[String]) -> impl Iterator<Item = NetworkPolicyPeer> + '_ {
    cidrs.iter().map(|cidr| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.clone(),
            ..IPBlock::default()
        }),
        ..NetworkPolicyPeer::default()
    })
}

/// The webmail pods' policy: HTTP from anywhere (the ingress controller), nothing else.
pub fn webmail_policy(domain: &ValidatedDomain<'_>) -> NetworkPolicy {
    policy(
        domain,
        &domain.names.webmail,
        webmail::COMPONENT,
        vec![NetworkPolicyIngressRule {
            from: None,
            ports: ports(&[layout::WEBMAIL_PORT]),
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{environment, validated};
    use crate::validation::ValidatedDomain;

    #[test]
    fn smtp_comes_from_the_gateway_and_imap_from_the_webmail_only() {
        let mut env = environment();
        env.gateway.cidrs = vec!["192.0.2.0/24".into()];
        let domain = ValidatedDomain {
            env: &env,
            ..validated("domain-minimal.yaml")
        };
        let policy = mail_policy(&domain);
        let spec = policy.spec.unwrap();
        assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_owned()][..]));
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
            "standby-mail"
        );
        let rules = spec.ingress.unwrap();
        let port = |rule: &NetworkPolicyIngressRule| -> Vec<String> {
            rule.ports
                .iter()
                .flatten()
                .map(|p| format!("{:?}", p.port.clone().unwrap()))
                .collect()
        };
        assert_eq!(port(&rules[0]), ["Int(2525)"]);
        let smtp_from = rules[0].from.clone().unwrap();
        assert_eq!(
            smtp_from[0].namespace_selector.clone().unwrap().match_labels.unwrap()["kubernetes.io/metadata.name"],
            "mail-gateway"
        );
        assert_eq!(smtp_from[1].ip_block.as_ref().unwrap().cidr, "192.0.2.0/24");
        assert_eq!(port(&rules[1]), ["Int(1143)", "Int(5870)"]);
        assert_eq!(
            rules.len(),
            2,
            "no API server address given: no rule (an empty `from` admits all)"
        );
        let webmail_from = rules[1].from.clone().unwrap();
        assert_eq!(webmail_from.len(), 1);
        assert!(webmail_from[0].namespace_selector.is_none(), "this namespace only");
        assert_eq!(
            webmail_from[0].pod_selector.clone().unwrap().match_labels.unwrap()["app.kubernetes.io/component"],
            "webmail"
        );
    }

    #[test]
    fn the_agents_tracking_port_admits_the_api_server_only() {
        let mut env = environment();
        env.gateway.api_server_cidrs = vec!["10.0.0.1/32".into()];
        let domain = ValidatedDomain {
            env: &env,
            ..validated("domain-minimal.yaml")
        };
        let rules = mail_policy(&domain).spec.unwrap().ingress.unwrap();
        let tracking = &rules[2];
        assert_eq!(tracking.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(8025)));
        let from = tracking.from.as_ref().unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].ip_block.as_ref().unwrap().cidr, "10.0.0.1/32");
    }

    #[test]
    fn a_gateway_outside_the_cluster_admits_no_namespace() {
        let mut env = environment();
        env.gateway.namespace_labels.clear();
        env.gateway.cidrs = vec!["192.0.2.0/24".into()];
        let domain = ValidatedDomain {
            env: &env,
            ..validated("domain-minimal.yaml")
        };
        let rules = mail_policy(&domain).spec.unwrap().ingress.unwrap();
        let smtp_from = rules[0].from.clone().unwrap();
        assert_eq!(smtp_from.len(), 1);
        assert!(smtp_from[0].namespace_selector.is_none() && smtp_from[0].pod_selector.is_none());
    }

    #[test]
    fn the_webmail_admits_http_only() {
        let rules = webmail_policy(&validated("domain-minimal.yaml"))
            .spec
            .unwrap()
            .ingress
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].from.is_none());
        assert_eq!(rules[0].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(8000)));
    }
}
