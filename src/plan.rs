//! The pure middle of a domain's reconcile: from the validated domain and what the fetch step
//! read (health, the covered users' credentials, the standby's workloads) to a [`Plan`]: the route,
//! the stamped children to apply, those to remove, how to probe the primary, and the
//! standby's readiness. A domain that may not act plans nothing but the reason why.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::Result;
use crate::api::ContinuityDomain;
use crate::api::domain::RouteTarget;
use crate::credentials::Credentials;
use crate::handback::settings::{Destination, HandBackSettings};
use crate::health::scheduler::Registration;
use crate::health::tracker::Health;
use crate::health::widespread::Threshold;
use crate::health::{self};
use crate::resources::{self, Child, Optional, mail, network_policy, next_hop, webmail};
use crate::routing::decision::{self, Decision};
use crate::routing::transport;
use crate::standby::{self, MailSettings};
use crate::status::standby::{Expected, Observed, Readiness, judge};
use crate::validation::claims::ClaimOutcome;
use crate::validation::{Idle, Standing, ValidatedDomain, Validation};

/// What a reconcile read besides the domain itself.
pub struct Inputs<'a> {
    pub health: Option<&'a Health>,
    /// The covered users' accounts; `None` while they are unknown (a directory not read).
    pub credentials: Option<&'a Credentials>,
    /// What the domain's directory last listed, if it has one and it was read.
    pub directory: Option<&'a BTreeSet<String>>,
    /// The standby's workloads as cached.
    pub observed: Observed<'a>,
    pub heartbeat: Duration,
    /// Set while so many primaries fail at once that failovers are held.
    pub widespread: Option<&'a Threshold>,
    pub now: Timestamp,
}

/// What one reconcile decided, before anything is applied.
#[derive(Debug)]
pub struct Plan {
    /// The verdict on the domain's claim, reported whatever the course.
    pub claim: ClaimOutcome,
    pub course: Course,
}

/// Whether the domain acts, and how.
#[derive(Debug)]
pub enum Course {
    /// It may not act: it builds nothing, and what it built before stays (SPEC 4.9).
    Idle(Idle),
    Acts(Box<Acting>),
}

/// What a domain that acts wants.
#[derive(Debug)]
pub struct Acting {
    /// Where mail goes.
    pub decision: Decision,
    /// The decided route's next hop, as the transport map lists it.
    pub next_hop: String,
    /// Number of covered addresses; `None` until a directory is read.
    pub covered: Option<usize>,
    /// The covered addresses without an emergency password, in order.
    pub without_password: Vec<String>,
    /// Why they have none, each reason once.
    pub password_problems: Vec<String>,
    /// The standby's workloads as observed against what is applied now.
    pub standby: Readiness,
    pub desired: Desired,
    /// How to probe the primary.
    pub probe: Registration,
}

/// The children to apply, stamped with their hashes, and those to remove.
#[derive(Debug)]
pub struct Desired {
    /// The next-hop Service: the routing flip itself, applied first.
    pub routing: Child,
    /// Every other child, in the order they are applied: configuration before the workloads
    /// that mount it.
    pub children: Vec<Child>,
    /// Children the spec no longer asks for, deleted if this domain controls them: a removed
    /// webmail host must not stay exposed.
    pub removed: Vec<Removal>,
}

/// A child to delete if it exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub kind: Optional,
    pub name: String,
}

/// Plans the reconcile of `domain`, validated as `validation`.
pub fn plan(domain: &ContinuityDomain, validation: Validation<'_>, inputs: &Inputs<'_>) -> Result<Plan> {
    let course = match validation.standing {
        Standing::Idle(idle) => Course::Idle(idle),
        Standing::Acts(validated) => Course::Acts(Box::new(acting(domain, &validated, inputs)?)),
    };
    Ok(Plan {
        claim: validation.claim,
        course,
    })
}

fn acting(domain: &ContinuityDomain, validated: &ValidatedDomain<'_>, inputs: &Inputs<'_>) -> Result<Acting> {
    let mut children = Vec::new();
    let mut removed = Vec::new();
    let mut push = |child: Child| -> Result<()> {
        children.push(child.stamped()?);
        Ok(())
    };
    // What the next hop may name comes first: the Service fronting a primary given by address.
    match next_hop::primary_by_address(validated) {
        Some((service, endpoints)) => {
            push(Child::Service(service))?;
            push(Child::Endpoints(endpoints))?;
        }
        None => {
            for kind in [Optional::Service, Optional::Endpoints] {
                removed.push(Removal {
                    kind,
                    name: validated.names.primary.clone(),
                });
            }
        }
    }
    push(Child::ConfigMap(webmail::config_map(validated)))?;
    push(Child::Service(mail::service(validated)))?;
    push(Child::Service(webmail::service(validated)))?;
    push(Child::NetworkPolicy(network_policy::mail_policy(validated)))?;
    push(Child::NetworkPolicy(network_policy::webmail_policy(validated)))?;
    let existing_volume = inputs.observed.mail.and_then(|set| set.kept.volume.clone());
    let (mail_set, mail_hash) = resources::stamp(mail::stateful_set(validated, existing_volume))?;
    let (webmail_deployment, webmail_hash) = resources::stamp(webmail::deployment(validated))?;
    let ingress = webmail::ingress(validated).map(resources::stamp).transpose()?;
    let standby = judge(
        &inputs.observed,
        &Expected {
            mail: &mail_hash,
            webmail: &webmail_hash,
            ingress: ingress.as_ref().map(|(_, hash)| hash.as_str()),
        },
    );
    children.push(Child::StatefulSet(mail_set));
    children.push(Child::Deployment(webmail_deployment));
    match ingress {
        Some((ingress, _)) => children.push(Child::Ingress(ingress)),
        None => removed.push(Removal {
            kind: Optional::Ingress,
            name: validated.names.webmail.clone(),
        }),
    }
    // The route last: whether the standby could take over decides a failover.
    let recorded = decision::Recorded::of(domain.status.as_ref());
    // A standby whose users are not known (a directory not read yet) takes nobody's mail.
    let gate = decision::Gate {
        standby_ready: standby.ready && inputs.credentials.is_some(),
        widespread: inputs.widespread,
    };
    let decision = decision::decide(&domain.spec, recorded, inputs.health, gate, inputs.now);
    let (routing, _) = resources::stamp(next_hop::service(validated, decision.target))?;
    // Until the covered users are known the mail configuration is left as it is: the mail pod
    // waits for its first one, or keeps serving the users it has. It follows the route just
    // decided: the agent hands held mail back only while mail goes to the primary.
    if let Some(credentials) = inputs.credentials {
        let addresses: BTreeSet<String> = credentials.accounts.iter().map(|a| a.address.clone()).collect();
        let hostname = validated.standby_host();
        let handback = handback_settings(domain, validated, decision.target, &hostname);
        let settings = MailSettings {
            domain: &validated.spec.domain,
            hostname: &hostname,
            relay_host: validated.spec.standby.mail.relay_host.as_deref(),
            retention_days: validated.spec.archive.retention_days,
            accounts: &credentials.accounts,
            handback: &handback,
        };
        // Configuration before the workloads that mount it.
        let configuration = [
            Child::ConfigMap(resources::coverage::build(validated, &addresses, inputs.directory)),
            Child::ConfigMap(mail::config_map(validated, standby::config_files(&settings))),
            Child::Secret(mail::passwords_secret(validated, standby::passwd_file(&settings))),
        ];
        let stamped = configuration
            .into_iter()
            .map(Child::stamped)
            .collect::<Result<Vec<_>>>()?;
        children.splice(0..0, stamped);
    }
    Ok(Acting {
        next_hop: transport::next_hop(validated, decision.target),
        decision,
        covered: inputs.credentials.map(|c| c.accounts.len()),
        without_password: inputs
            .credentials
            .map(|c| c.without_password.clone())
            .unwrap_or_default(),
        password_problems: inputs.credentials.map(|c| c.problems.clone()).unwrap_or_default(),
        standby,
        desired: Desired {
            routing: Child::Service(routing),
            children,
            removed,
        },
        probe: health::registration(validated.spec, inputs.heartbeat, &validated.env.policy.primary_networks),
    })
}

/// What the agent is told: deliver to the primary while mail goes there, or once the domain
/// is being deleted (its route leaves the gateway's map); hold everything otherwise.
fn handback_settings(
    domain: &ContinuityDomain,
    validated: &ValidatedDomain<'_>,
    target: RouteTarget,
    hostname: &str,
) -> HandBackSettings {
    let deleting = domain.metadata.deletion_timestamp.is_some();
    let primary = &validated.spec.primary;
    HandBackSettings {
        deliver_to: (target == RouteTarget::Primary || deleting).then(|| Destination {
            host: primary.host.clone(),
            port: primary.port,
        }),
        messages_per_second: validated.spec.hand_back.messages_per_second,
        retry_seconds: validated.spec.hand_back.retry_seconds,
        helo_name: hostname.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ContinuityUser;
    use crate::api::domain::{ProbeFailureClass, RouteTarget};
    use crate::coverage::resolve;
    use crate::credentials::{self, SecretsRead};
    use crate::health::probe::{Outcome as ProbeOutcome, Report};
    use crate::resources::cached::Cached;
    use crate::resources::{Environment, packed};
    use crate::standby::Account;
    use crate::standby::passwords;
    use crate::testing::{environment, fixture};
    use crate::validation::claims::Claim;
    use crate::validation::validate;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet, StatefulSetStatus};
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::sync::Arc;

    struct World<'a> {
        secrets: SecretsRead,
        observed: Observed<'a>,
        env: Environment,
    }

    impl Default for World<'_> {
        fn default() -> Self {
            World {
                secrets: SecretsRead::from([(
                    "alice-emergency".to_owned(),
                    Some(Arc::new(
                        [("password".to_owned(), ByteString(b"correct horse".to_vec()))].into(),
                    )),
                )]),
                observed: Observed::default(),
                env: environment(),
            }
        }
    }

    /// What the fetch step makes of `users` and the world's Secrets (hashing as it does).
    fn credentials_of(domain: &ContinuityDomain, users: &[&ContinuityUser], world: &World<'_>) -> Option<Credentials> {
        let coverage = resolve(domain, domain.spec.users.scope, users, None);
        let (mailboxes, missing) =
            credentials::mailboxes(domain, coverage.addresses.as_ref()?, &coverage.through, &world.secrets);
        let uid = domain.metadata.uid.clone().unwrap();
        let accounts = mailboxes
            .into_iter()
            .map(|m| Account {
                password_hash: m
                    .password
                    .map(|p| passwords::hash(&p, &passwords::salt(&uid, &m.address)).unwrap()),
                address: m.address,
            })
            .collect();
        Some(Credentials::new(accounts, missing))
    }

    fn plan_in(
        domain: &ContinuityDomain,
        users: &[&ContinuityUser],
        claimants: &[Claim],
        health: Option<&Health>,
        world: &World<'_>,
    ) -> Plan {
        let validation = validate(domain, true, claimants, &world.env).unwrap();
        let credentials = credentials_of(domain, users, world);
        plan(
            domain,
            validation,
            &Inputs {
                health,
                credentials: credentials.as_ref(),
                directory: None,
                observed: world.observed,
                heartbeat: Duration::from_secs(60),
                widespread: None,
                now: Timestamp::from_second(1_000_000).unwrap(),
            },
        )
        .unwrap()
    }

    /// The plan of a domain that owns its claim, in the default world.
    fn planned(domain: &ContinuityDomain, users: &[&ContinuityUser], health: Option<&Health>) -> Plan {
        plan_in(domain, users, &[Claim::of(domain)], health, &World::default())
    }

    fn acting(plan: &Plan) -> &Acting {
        match &plan.course {
            Course::Acts(acting) => acting,
            Course::Idle(idle) => panic!("the domain does not act: {idle:?}"),
        }
    }

    fn config_map<'a>(plan: &'a Plan, name: &str) -> Option<&'a ConfigMap> {
        acting(plan).desired.children.iter().find_map(|child| match child {
            Child::ConfigMap(cm) if cm.metadata.name.as_deref() == Some(name) => Some(cm),
            _ => None,
        })
    }

    /// The addresses the plan's coverage ConfigMap lists.
    fn coverage_listing(plan: &Plan) -> String {
        let map = config_map(plan, "example-com-coverage").expect("a coverage ConfigMap");
        packed::table(map, crate::resources::coverage::ADDRESSES_KEY).unwrap_or_default()
    }

    /// The one child `pick` finds in the plan.
    fn built<T: Clone>(plan: &Plan, pick: impl Fn(&Child) -> Option<&T>) -> T {
        acting(plan)
            .desired
            .children
            .iter()
            .find_map(pick)
            .cloned()
            .expect("the child is built")
    }

    fn kinds(plan: &Plan) -> Vec<String> {
        acting(plan)
            .desired
            .children
            .iter()
            .map(|c| c.describe().split('/').next().unwrap_or_default().to_owned())
            .collect()
    }

    fn external_name(plan: &Plan) -> &str {
        let Child::Service(routing) = &acting(plan).desired.routing else {
            panic!("the routing child is a Service");
        };
        routing
            .spec
            .as_ref()
            .and_then(|s| s.external_name.as_deref())
            .unwrap_or_default()
    }

    #[test]
    fn an_acting_domain_gets_coverage_routing_and_a_probe() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let plan = planned(&domain, &[&alice], None);
        assert_eq!(plan.claim, ClaimOutcome::Accepted);
        assert_eq!(acting(&plan).covered, Some(1));
        assert_eq!(coverage_listing(&plan), "alice@example.com\n");
        assert_eq!(external_name(&plan), "mx.example.com");
        assert_eq!(acting(&plan).next_hop, "smtp:[mx.example.com]:25");
        let probe = &acting(&plan).probe;
        assert_eq!((probe.target.host.as_str(), probe.target.port), ("mx.example.com", 25));
        assert!(probe.tls.is_none(), "Opportunistic TLS is not certificate-checked");
    }

    #[test]
    fn every_child_is_stamped_with_its_hash() {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        let plan = planned(&domain, &[], None);
        let desired = &acting(&plan).desired;
        for child in std::iter::once(&desired.routing).chain(&desired.children) {
            assert_eq!(child.hash().map(str::len), Some(16), "{}", child.describe());
        }
    }

    #[test]
    fn the_standby_is_built_configuration_first_and_holds_only_password_hashes() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let plan = planned(&domain, &[&alice], None);
        assert_eq!(
            kinds(&plan),
            [
                "ConfigMap",
                "ConfigMap",
                "Secret",
                "ConfigMap",
                "Service",
                "Service",
                "NetworkPolicy",
                "NetworkPolicy",
                "StatefulSet",
                "Deployment"
            ],
            "no webmail host, no Ingress"
        );
        let config = config_map(&plan, "example-com-standby-config").unwrap();
        let recipients = packed::table(config, standby::RECIPIENTS_KEY).unwrap();
        assert!(recipients.contains("alice@example.com alice@example.com\n"));
        let secret = built(&plan, |c| if let Child::Secret(s) = c { Some(s) } else { None });
        let passwd = String::from_utf8(secret.data.as_ref().unwrap()["passwd"].0.clone()).unwrap();
        assert!(passwd.starts_with("# ") && passwd.contains("alice@example.com:{SHA512-CRYPT}$6$"));
        assert!(!passwd.contains("correct horse"));
        assert!(acting(&plan).without_password.is_empty());
        let standby = &acting(&plan).standby;
        assert_eq!(
            (standby.ready, standby.reason),
            (false, crate::api::conditions::reasons::STANDBY_NOT_PROVISIONED)
        );
        assert_eq!(
            acting(&plan).desired.removed,
            [
                Removal {
                    kind: Optional::Service,
                    name: "example-com-primary".into()
                },
                Removal {
                    kind: Optional::Endpoints,
                    name: "example-com-primary".into()
                },
                Removal {
                    kind: Optional::Ingress,
                    name: "example-com-webmail".into()
                },
            ]
        );
    }

    #[test]
    fn a_user_whose_secret_is_missing_is_listed_without_a_password() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let world = World {
            secrets: SecretsRead::from([("alice-emergency".to_owned(), None)]),
            ..World::default()
        };
        let plan = plan_in(&domain, &[&alice], &[Claim::of(&domain)], None, &world);
        assert_eq!(acting(&plan).without_password, ["alice@example.com"]);
        let config = config_map(&plan, "example-com-standby-config").unwrap();
        assert!(
            packed::table(config, standby::RECIPIENTS_KEY)
                .unwrap()
                .contains("alice@example.com alice@example.com"),
            "she still receives mail"
        );
    }

    /// The standby's workloads as built for `domain`, reported ready as their controllers would.
    fn ready_workloads(domain: &ContinuityDomain) -> (Cached<StatefulSet>, Cached<Deployment>) {
        let first = planned(domain, &[], None);
        let mut set = built(&first, |c| if let Child::StatefulSet(s) = c { Some(s) } else { None });
        let mut deployment = built(&first, |c| if let Child::Deployment(d) = c { Some(d) } else { None });
        set.status = Some(StatefulSetStatus {
            ready_replicas: Some(1),
            updated_replicas: Some(1),
            replicas: 1,
            ..Default::default()
        });
        deployment.status = Some(DeploymentStatus {
            available_replicas: Some(1),
            updated_replicas: Some(1),
            ..Default::default()
        });
        (Cached::from(set), Cached::from(deployment))
    }

    /// The default world, with these workloads cached.
    fn ready_world<'a>(set: &'a Cached<StatefulSet>, deployment: &'a Cached<Deployment>) -> World<'a> {
        World {
            observed: Observed {
                mail: Some(set),
                webmail: Some(deployment),
                ingress: None,
            },
            ..World::default()
        }
    }

    #[test]
    fn the_standby_is_ready_when_the_cached_workloads_run_what_was_built() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let (set, deployment) = ready_workloads(&domain);
        let world = ready_world(&set, &deployment);
        let plan = plan_in(&domain, &[], &[Claim::of(&domain)], None, &world);
        assert!(acting(&plan).standby.ready, "{:?}", acting(&plan).standby);

        // A workload that runs something else than what is built now is not the standby.
        let mut edited = domain.clone();
        edited.spec.standby.webmail.replicas += 1;
        let plan = plan_in(&edited, &[], &[Claim::of(&edited)], None, &world);
        assert!(!acting(&plan).standby.ready);
    }

    #[test]
    fn a_cached_mail_set_keeps_its_volume_when_the_storage_size_changes() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let (set, deployment) = ready_workloads(&domain);
        let world = ready_world(&set, &deployment);
        let mut grown = domain.clone();
        grown.spec.archive.storage_size = "20Gi".into();
        let mail_set = |plan: &Plan| built(plan, |c| if let Child::StatefulSet(s) = c { Some(s) } else { None });
        let first = mail_set(&planned(&domain, &[], None));
        let again = mail_set(&plan_in(&grown, &[], &[Claim::of(&grown)], None, &world));
        assert_eq!(again, first, "the API server refuses a changed volume claim template");
    }

    #[test]
    fn three_refused_probes_route_to_the_standby() {
        let domain: ContinuityDomain = fixture("domain-static.yaml"); // 192.0.2.25:2525
        let refused = Health {
            last: Report {
                outcome: ProbeOutcome::Failed(ProbeFailureClass::Refused),
                latency: Duration::from_millis(1),
                detail: "connection refused".into(),
            },
            at: Timestamp::from_second(999_999).unwrap(),
            consecutive_failures: 3,
            consecutive_successes: 0,
            streak: 3,
        };
        let healthy_plan = planned(&domain, &[], None);
        assert_eq!(
            external_name(&healthy_plan),
            "example-com-primary.tenant-a.svc.cluster.local"
        );
        assert!(
            kinds(&healthy_plan).contains(&"Endpoints".to_owned()),
            "an IP primary is fronted by a Service with Endpoints"
        );
        let blocked = planned(&domain, &[], Some(&refused));
        assert_eq!(
            (acting(&blocked).decision.target, acting(&blocked).decision.reason),
            (RouteTarget::Primary, crate::api::conditions::reasons::FAILOVER_BLOCKED),
            "no failover to a standby that is not ready"
        );
        let (set, deployment) = ready_workloads(&domain);
        let world = ready_world(&set, &deployment);
        let failed_plan = plan_in(&domain, &[], &[Claim::of(&domain)], Some(&refused), &world);
        assert_eq!(acting(&failed_plan).decision.target, RouteTarget::Standby);
        assert_eq!(
            external_name(&failed_plan),
            "example-com-standby-mail.tenant-a.svc.cluster.local"
        );
    }

    #[test]
    fn a_domain_that_may_not_act_plans_nothing() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let mut earlier = Claim::of(&domain);
        earlier.namespace = "tenant-0".into();
        earlier.created = Some(Timestamp::from_second(0).unwrap());
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let world = World::default();
        let lost = plan_in(&domain, &[&alice], &[earlier, Claim::of(&domain)], None, &world);
        assert!(matches!(lost.claim, ClaimOutcome::Lost { .. }));
        assert!(matches!(lost.course, Course::Idle(Idle::ClaimLost { .. })));

        let invalid: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let plan = planned(&invalid, &[], None);
        assert!(matches!(plan.course, Course::Idle(Idle::Invalid(ref v)) if !v.is_empty()));

        let mut suspended = domain.clone();
        suspended.spec.suspend = true;
        let plan = planned(&suspended, &[], None);
        assert!(matches!(plan.course, Course::Idle(Idle::Suspended)));
    }

    #[test]
    fn a_recovering_domain_covers_its_users_whatever_its_previous_phase() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.status = Some(crate::api::ContinuityDomainStatus {
            phase: Some(crate::api::domain::DomainPhase::Error),
            ..Default::default()
        });
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let plan = planned(&domain, &[&alice], None);
        assert_eq!(acting(&plan).covered, Some(1));
        assert_eq!(coverage_listing(&plan), "alice@example.com\n");
    }

    #[test]
    fn a_directory_not_read_yet_leaves_the_mail_configuration_alone() {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        let plan = planned(&domain, &[], None);
        assert_eq!(acting(&plan).covered, None);
        assert!(config_map(&plan, "corp-coverage").is_none() && config_map(&plan, "corp-standby-config").is_none());
        assert!(kinds(&plan).contains(&"Ingress".to_owned()), "the workloads are built");
        assert!(
            acting(&plan).probe.tls.is_some(),
            "tls: Required is certificate-checked"
        );
    }

    #[test]
    fn the_agent_delivers_only_while_mail_goes_to_the_primary_or_the_domain_goes() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let validated = crate::testing::acting(domain.clone());
        let to_primary = handback_settings(&domain, &validated, RouteTarget::Primary, "standby");
        assert_eq!(
            to_primary.deliver_to.map(|d| d.to_string()),
            Some("[mx.example.com]:25".to_owned())
        );
        assert_eq!(
            handback_settings(&domain, &validated, RouteTarget::Standby, "standby").deliver_to,
            None
        );
        domain.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::UNIX_EPOCH,
        ));
        assert!(
            handback_settings(&domain, &validated, RouteTarget::Standby, "standby")
                .deliver_to
                .is_some()
        );
    }
}
