//! `StandbyReady`: whether the standby's workloads, as last observed, run the spec the
//! operator applied and are ready. Pure: the controller hands in the cached objects and the
//! spec hashes of what it applied.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;

use crate::api::conditions::reasons;
use crate::resources::cached::{Cached, Keep};

/// The standby's workloads as cached.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed<'a> {
    pub mail: Option<&'a Cached<StatefulSet>>,
    pub webmail: Option<&'a Cached<Deployment>>,
    pub ingress: Option<&'a Cached<Ingress>>,
}

/// The spec hashes of what the operator applied; no Ingress when the domain has no webmail
/// host.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub mail: &'a str,
    pub webmail: &'a str,
    pub ingress: Option<&'a str>,
}

/// The verdict, as the `StandbyReady` condition shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// A part of the standby that is not ready: why, and what to tell.
type Problem = (&'static str, String);

fn current<K: Keep>(object: &Cached<K>, hash: &str) -> Result<(), Problem> {
    if object.spec_hash.as_deref() == Some(hash) {
        return Ok(());
    }
    Err((
        reasons::STANDBY_NOT_PROVISIONED,
        format!("{} {} is being updated", K::kind(&()), object.name_any()),
    ))
}

fn creating(what: &str) -> Problem {
    (reasons::STANDBY_NOT_PROVISIONED, format!("the {what} is being created"))
}

fn generation_observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    observed.unwrap_or(0) >= generation.unwrap_or(0)
}

fn mail(object: Option<&Cached<StatefulSet>>, hash: &str) -> Result<String, Problem> {
    let set = object.ok_or_else(|| creating("mail StatefulSet"))?;
    current(set, hash)?;
    let status = set.kept.status.clone().unwrap_or_default();
    let not_ready = |what: String| {
        Err((
            reasons::MAIL_POD_NOT_READY,
            format!("StatefulSet {}: {what}", set.name_any()),
        ))
    };
    if !generation_observed(set.metadata.generation, status.observed_generation) {
        return not_ready("its controller has not acted on the latest spec yet".into());
    }
    if status.updated_replicas.unwrap_or(0) < 1 {
        return not_ready("the mail pod is being replaced with the latest spec".into());
    }
    if status.ready_replicas.unwrap_or(0) < 1 {
        return not_ready("the mail pod (Postfix, Dovecot) is not ready".into());
    }
    Ok("the mail pod is ready".into())
}

fn webmail(object: Option<&Cached<Deployment>>, hash: &str) -> Result<String, Problem> {
    let deployment = object.ok_or_else(|| creating("webmail Deployment"))?;
    current(deployment, hash)?;
    let wanted = deployment.kept.replicas.unwrap_or(1);
    let status = deployment.kept.status.clone().unwrap_or_default();
    let not_ready = |what: String| {
        Err((
            reasons::WEBMAIL_NOT_READY,
            format!("Deployment {}: {what}", deployment.name_any()),
        ))
    };
    if !generation_observed(deployment.metadata.generation, status.observed_generation) {
        return not_ready("its controller has not acted on the latest spec yet".into());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted || available < wanted {
        return not_ready(format!(
            "{available}/{wanted} webmail pods available, {updated} on the latest spec"
        ));
    }
    Ok(format!("{available}/{wanted} webmail pods are available"))
}

fn ingress(object: Option<&Cached<Ingress>>, hash: &str) -> Result<String, Problem> {
    let ingress = object.ok_or_else(|| creating("webmail Ingress"))?;
    current(ingress, hash)?;
    let addresses: Vec<String> = ingress
        .kept
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.hostname.clone().or_else(|| i.ip.clone()))
        .collect();
    let class = ingress.kept.class.clone().unwrap_or_else(|| "the default class".into());
    if addresses.is_empty() {
        return Err((
            reasons::INGRESS_PENDING,
            format!(
                "Ingress {} has no address yet: no ingress controller of {class} has admitted it",
                ingress.name_any()
            ),
        ));
    }
    Ok(format!(
        "Ingress {} is served at {}",
        ingress.name_any(),
        addresses.join(", ")
    ))
}

/// Judges the standby: ready when every part is; otherwise the reason of the first part that
/// is not, and what each such part lacks.
pub fn judge(observed: &Observed<'_>, expected: &Expected<'_>) -> Readiness {
    let mut parts = vec![
        mail(observed.mail, expected.mail),
        webmail(observed.webmail, expected.webmail),
    ];
    if let Some(hash) = expected.ingress {
        parts.push(ingress(observed.ingress, hash));
    }
    let problems: Vec<&Problem> = parts.iter().filter_map(|p| p.as_ref().err()).collect();
    match problems.first() {
        None => Readiness {
            ready: true,
            reason: reasons::PROVISIONED,
            message: parts.into_iter().filter_map(Result::ok).collect::<Vec<_>>().join("; "),
        },
        Some((reason, _)) => Readiness {
            ready: false,
            reason,
            message: problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::SPEC_HASH_ANNOTATION;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus, StatefulSetStatus};
    use k8s_openapi::api::networking::v1::{IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus};
    use std::collections::BTreeMap;

    fn meta(name: &str, hash: &str, generation: i64) -> kube::api::ObjectMeta {
        kube::api::ObjectMeta {
            name: Some(name.into()),
            generation: Some(generation),
            annotations: Some(BTreeMap::from([(SPEC_HASH_ANNOTATION.to_owned(), hash.to_owned())])),
            ..Default::default()
        }
    }

    fn mail_set(hash: &str, ready: i32, observed: i64) -> Cached<StatefulSet> {
        Cached::from(StatefulSet {
            metadata: meta("m", hash, 2),
            status: Some(StatefulSetStatus {
                observed_generation: Some(observed),
                ready_replicas: Some(ready),
                updated_replicas: Some(1),
                replicas: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn webmail_deployment(available: i32) -> Cached<Deployment> {
        Cached::from(Deployment {
            metadata: meta("w", "w1", 1),
            spec: Some(DeploymentSpec {
                replicas: Some(2),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(1),
                updated_replicas: Some(2),
                available_replicas: Some(available),
                ..Default::default()
            }),
        })
    }

    fn admitted_ingress(address: Option<&str>) -> Cached<Ingress> {
        Cached::from(Ingress {
            metadata: meta("i", "i1", 1),
            status: address.map(|ip| IngressStatus {
                load_balancer: Some(IngressLoadBalancerStatus {
                    ingress: Some(vec![IngressLoadBalancerIngress {
                        ip: Some(ip.into()),
                        ..Default::default()
                    }]),
                }),
            }),
            ..Default::default()
        })
    }

    const EXPECTED: Expected<'static> = Expected {
        mail: "m1",
        webmail: "w1",
        ingress: Some("i1"),
    };

    #[test]
    fn ready_when_every_part_runs_the_applied_spec() {
        let (set, deployment, ingress) = (
            mail_set("m1", 1, 2),
            webmail_deployment(2),
            admitted_ingress(Some("192.0.2.8")),
        );
        let verdict = judge(
            &Observed {
                mail: Some(&set),
                webmail: Some(&deployment),
                ingress: Some(&ingress),
            },
            &EXPECTED,
        );
        assert!(verdict.ready, "{verdict:?}");
        assert_eq!(verdict.reason, reasons::PROVISIONED);
        assert!(verdict.message.contains("2/2 webmail pods") && verdict.message.contains("192.0.2.8"));
    }

    #[test]
    fn each_missing_piece_is_named() {
        let nothing = judge(&Observed::default(), &EXPECTED);
        assert_eq!(
            (nothing.ready, nothing.reason),
            (false, reasons::STANDBY_NOT_PROVISIONED)
        );

        let outdated = mail_set("m0", 1, 2);
        let (deployment, ingress) = (webmail_deployment(2), admitted_ingress(Some("192.0.2.8")));
        let verdict = judge(
            &Observed {
                mail: Some(&outdated),
                webmail: Some(&deployment),
                ingress: Some(&ingress),
            },
            &EXPECTED,
        );
        assert_eq!(
            verdict.reason,
            reasons::STANDBY_NOT_PROVISIONED,
            "the cache holds the old spec"
        );

        let (unobserved, starting) = (mail_set("m1", 1, 1), mail_set("m1", 0, 2));
        for set in [&unobserved, &starting] {
            let verdict = judge(
                &Observed {
                    mail: Some(set),
                    webmail: Some(&deployment),
                    ingress: Some(&ingress),
                },
                &EXPECTED,
            );
            assert_eq!(verdict.reason, reasons::MAIL_POD_NOT_READY, "{verdict:?}");
        }

        let (set, half, pending) = (mail_set("m1", 1, 2), webmail_deployment(1), admitted_ingress(None));
        let verdict = judge(
            &Observed {
                mail: Some(&set),
                webmail: Some(&half),
                ingress: Some(&pending),
            },
            &EXPECTED,
        );
        assert_eq!(verdict.reason, reasons::WEBMAIL_NOT_READY);
        assert!(
            verdict.message.contains("1/2 webmail pods available"),
            "{}",
            verdict.message
        );
        assert!(verdict.message.contains("no ingress controller"), "{}", verdict.message);

        let without_host = Expected {
            ingress: None,
            ..EXPECTED
        };
        let verdict = judge(
            &Observed {
                mail: Some(&set),
                webmail: Some(&deployment),
                ingress: None,
            },
            &without_host,
        );
        assert!(verdict.ready, "no webmail host, no Ingress to wait for");
    }
}
