//! Reconciliation of a ContinuityDomain: read its users, the claims on its mail domain, its
//! primary's health, the Secrets holding its emergency passwords and its standby's workloads
//! (caches, and the Secrets through [`super::secrets`]); validate, resolve the claim, decide
//! the route, build the children; apply them; compute and write the status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

use super::apply::{self, Outcome};
use super::{CACHE_SYNC_RETRY, Context, events};
use crate::api::validation;
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::claims::{self, Claim};
use crate::coverage;
use crate::credentials::{self, SecretsRead};
use crate::health::scheduler::Registration;
use crate::health::tracker::Health;
use crate::health::{self};
use crate::resources::{self, Child, Environment, Optional, mail, network_policy, next_hop, spec_hash, webmail};
use crate::routing::decision::{self, Flip};
use crate::routing::transport;
use crate::standby::passwords::PasswordHasher;
use crate::standby::{self, MailSettings};
use crate::status::domain::{DomainFacts, compute, whole_seconds};
use crate::status::standby::{Expected, Observed, judge};
use crate::{Error, Result};

/// What a reconcile knows besides the domain itself.
pub struct Inputs<'a> {
    pub users: &'a [&'a ContinuityUser],
    pub claimants: &'a [Claim],
    pub health: Option<&'a Health>,
    pub environment: &'a Environment,
    /// The Secrets the emergency passwords come from.
    pub secrets: &'a SecretsRead,
    /// The standby's workloads as cached.
    pub observed: Observed<'a>,
    pub hasher: &'a PasswordHasher,
    pub heartbeat: Duration,
    pub now: Timestamp,
}

/// What one reconcile decided, from the domain and the cached facts alone.
#[derive(Debug)]
pub struct Plan {
    pub facts: DomainFacts,
    /// The next-hop Service: the routing flip itself.
    pub routing: Option<Service>,
    /// Every other child, in the order they are applied: configuration before the workloads
    /// that mount it.
    pub children: Vec<Child>,
    /// Children the spec no longer asks for, deleted if they exist: a removed webmail host
    /// must not stay exposed.
    pub removed: Vec<(Optional, String)>,
    /// How to probe the primary; `None` while the domain may not act.
    pub probe: Option<Registration>,
}

/// The pure middle of the pipeline: validate, resolve the claim, decide coverage and route,
/// build the children, judge the standby.
pub fn plan(domain: &ContinuityDomain, inputs: &Inputs<'_>) -> Result<Plan> {
    let mut facts = DomainFacts {
        violations: validation::domain(domain),
        claim: claims::resolve(&Claim::of(domain), inputs.claimants),
        covered: None,
        without_password: Vec::new(),
        health: inputs.health.cloned(),
        decision: None,
        standby: None,
        rejected: None,
        next_hop: None,
    };
    let env = inputs.environment;
    // Judged on this reconcile's own findings, never on the previous status: a domain that is
    // invalid or lost its claim covers nobody.
    let covered = if facts.entitled() {
        coverage::covered_addresses(domain, inputs.users)
    } else {
        Some(BTreeSet::new())
    };
    facts.covered = covered.as_ref().map(BTreeSet::len);
    if facts.acts(domain) {
        let previous_route = domain.status.as_ref().and_then(|s| s.routing.as_ref());
        let decision = decision::decide(&domain.spec, previous_route, inputs.health, inputs.now);
        facts.next_hop = Some(transport::next_hop(domain, decision.target, &env.cluster_domain));
        facts.decision = Some(decision);
    }

    let mut plan = Plan {
        routing: None,
        children: Vec::new(),
        removed: Vec::new(),
        probe: None,
        facts,
    };
    // A domain that may not act builds nothing, and what it built before is left in place:
    // bad input must never take working parts down (SPEC 4.9).
    let Some(decision) = &plan.facts.decision else {
        return Ok(plan);
    };
    plan.routing = Some(next_hop::service(domain, decision.target, &env.cluster_domain)?);
    let children = &mut plan.children;
    // What the next hop may name comes first: the Service fronting a primary given by address.
    match next_hop::primary_by_address(domain)? {
        Some((service, endpoints)) => {
            children.push(Child::Service(service));
            children.push(Child::Endpoints(endpoints));
        }
        None => {
            let name = next_hop::primary_service_name(domain);
            plan.removed.push((Optional::Service, name.clone()));
            plan.removed.push((Optional::Endpoints, name));
        }
    }
    // Until the covered users are known the mail configuration is left as it is: the mail pod
    // waits for its first one, or keeps serving the users it has.
    if let Some(addresses) = &covered {
        children.push(Child::ConfigMap(resources::coverage::build(domain, addresses)?));
        let covering = credentials::covering_users(domain, inputs.users);
        let (mailboxes, missing) = credentials::mailboxes(domain, addresses, &covering, inputs.secrets);
        plan.facts.without_password = missing.into_iter().map(|(address, _)| address).collect();
        let domain_uid = domain.uid().ok_or(Error::MissingField {
            kind: "ContinuityDomain",
            field: "metadata.uid",
        })?;
        let hostname = next_hop::standby_service_host(domain, &env.cluster_domain);
        let settings = MailSettings {
            domain: &domain.spec.domain,
            domain_uid: &domain_uid,
            hostname: &hostname,
            relay_host: domain.spec.standby.mail.relay_host.as_deref(),
            retention_days: domain.spec.archive.retention_days,
            mailboxes: &mailboxes,
        };
        children.push(Child::ConfigMap(mail::config_map(
            domain,
            standby::config_files(&settings),
        )?));
        children.push(Child::Secret(mail::passwords_secret(
            domain,
            standby::passwd_file(&settings, inputs.hasher)?,
        )?));
    }
    children.push(Child::ConfigMap(webmail::config_map(domain, env)?));
    children.push(Child::Service(mail::service(domain)?));
    children.push(Child::Service(webmail::service(domain)?));
    children.push(Child::NetworkPolicy(network_policy::mail_policy(domain, &env.gateway)?));
    children.push(Child::NetworkPolicy(network_policy::webmail_policy(domain)?));
    let existing_volume = inputs.observed.mail.and_then(mail::existing_volume);
    let mail_set = mail::stateful_set(domain, env, existing_volume)?;
    let webmail_deployment = webmail::deployment(domain, env)?;
    let ingress = webmail::ingress(domain)?;
    plan.facts.standby = Some(judge(
        &inputs.observed,
        &Expected {
            mail: spec_hash(&mail_set).unwrap_or_default(),
            webmail: spec_hash(&webmail_deployment).unwrap_or_default(),
            ingress: ingress.as_ref().map(|i| spec_hash(i).unwrap_or_default()),
        },
    ));
    children.push(Child::StatefulSet(mail_set));
    children.push(Child::Deployment(webmail_deployment));
    match ingress {
        Some(ingress) => children.push(Child::Ingress(ingress)),
        None => plan.removed.push((Optional::Ingress, webmail::name(domain))),
    }
    plan.probe = Some(health::registration(&domain.spec, inputs.heartbeat));
    Ok(plan)
}

/// Reconciles one ContinuityDomain.
pub async fn reconcile(domain: Arc<ContinuityDomain>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.synced() {
        return Ok(Action::requeue(CACHE_SYNC_RETRY));
    }
    let namespace = domain.namespace().ok_or(Error::MissingField {
        kind: "ContinuityDomain",
        field: "metadata.namespace",
    })?;
    // Right after a status write the cache may still hold the one before; deciding from that
    // would repeat a flip.
    let domain = match ctx.last_domain_status.get(&domain.uid().unwrap_or_default()) {
        Some(written) if domain.status.as_ref() != Some(&written) => Arc::new(ContinuityDomain {
            status: Some(written),
            ..(*domain).clone()
        }),
        _ => domain,
    };
    let key = (namespace.clone(), domain.name_any());
    let users = ctx.users_of(&namespace, &key.1);
    let users: Vec<&ContinuityUser> = users.iter().map(AsRef::as_ref).collect();
    let claimants = ctx.claims.get(&claims::claimed_domain(&domain).to_owned());
    let health = ctx.prober.health(&key);
    let covering = credentials::covering_users(&domain, &users);
    let secrets = ctx
        .secrets
        .read(&namespace, &credentials::referenced_secrets(&domain, &covering))
        .await?;
    let mail_set = ctx
        .stateful_sets
        .get(&ObjectRef::new(&mail::name(&domain)).within(&namespace));
    let webmail_deployment = ctx
        .deployments
        .get(&ObjectRef::new(&webmail::name(&domain)).within(&namespace));
    let ingress = ctx
        .ingresses
        .get(&ObjectRef::new(&webmail::name(&domain)).within(&namespace));
    let now = whole_seconds(Timestamp::now());
    // Hashing new passwords takes about a millisecond each (thousands after a restart): the
    // runtime moves its other tasks off this thread meanwhile.
    let mut plan = tokio::task::block_in_place(|| {
        plan(
            &domain,
            &Inputs {
                users: &users,
                claimants: &claimants,
                health: health.as_ref(),
                environment: &ctx.settings.environment,
                secrets: &secrets,
                observed: Observed {
                    mail: mail_set.as_deref(),
                    webmail: webmail_deployment.as_deref(),
                    ingress: ingress.as_deref(),
                },
                hasher: &ctx.hasher,
                heartbeat: ctx.settings.status_heartbeat,
                now,
            },
        )
    })?;

    match &plan.probe {
        Some(registration) => ctx.prober.register(&key, registration.clone()),
        None => ctx.prober.deregister(&key),
    }
    // The routing object first. If the API server refuses it, the route has not changed and
    // status keeps the one it shows; a refused helper object is reported without undoing a
    // flip that did happen. Transient failures retry the whole reconcile.
    let mut outcomes = Vec::new();
    let mut rejection: Option<Error> = None;
    if let Some(routing) = &plan.routing {
        match apply::child(&ctx, &ctx.services, routing).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) if error.is_permanent() => {
                plan.facts.decision = None;
                rejection = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    for child in &plan.children {
        match apply_child(&ctx, child).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) if error.is_permanent() => {
                warn!(domain = %format!("{namespace}/{}", key.1), child = %child.describe(), %error, "the API server refused a child");
                rejection.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
    }
    let uid = domain.uid().unwrap_or_default();
    for (kind, name) in &plan.removed {
        let removed = match kind {
            Optional::Ingress => apply::remove(&ctx, &ctx.ingresses, &namespace, name, &uid).await,
            Optional::Service => apply::remove(&ctx, &ctx.services, &namespace, name, &uid).await,
            Optional::Endpoints => apply::remove(&ctx, &ctx.endpoints, &namespace, name, &uid).await,
        };
        match removed {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) if error.is_permanent() => {
                rejection.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
    }
    plan.facts.rejected = rejection.as_ref().map(ToString::to_string);

    let previous = domain.status.clone().unwrap_or_default();
    let status = compute(&domain, &plan.facts, &Time(now), ctx.settings.status_heartbeat);
    let written = apply::status(&ctx, domain.as_ref(), &previous, &status).await?;
    if written == Outcome::Written {
        ctx.last_domain_status
            .record(domain.uid().unwrap_or_default(), status.clone());
        info!(domain = %format!("{namespace}/{}", key.1), phase = ?status.phase, "status updated");
        events::publish(
            &ctx.recorder,
            domain.as_ref(),
            &previous.conditions,
            &status.conditions,
            &ctx.metrics,
        )
        .await;
        if let Some(decision) = plan.facts.decision.as_ref().filter(|d| d.flip.is_some()) {
            announce_flip(&ctx, &domain, previous.routing.as_ref().map(|r| r.since.0), decision).await;
        }
    }
    outcomes.push(written);
    if let Some(error) = rejection {
        return Err(error);
    }
    // A pending failback is decided again when its hold time is over, if that comes first.
    let recheck = plan.facts.decision.as_ref().and_then(|d| d.recheck_in);
    let after = ctx.recheck_after(&outcomes).min(recheck.unwrap_or(Duration::MAX));
    Ok(Action::requeue(after.max(Duration::from_millis(100))))
}

/// Applies one child through the cache of its kind.
async fn apply_child(ctx: &Context, child: &Child) -> Result<Outcome> {
    match child {
        Child::ConfigMap(o) => apply::child(ctx, &ctx.config_maps, o).await,
        Child::Secret(o) => apply::child(ctx, &ctx.owned_secrets, o).await,
        Child::Service(o) => apply::child(ctx, &ctx.services, o).await,
        Child::Endpoints(o) => apply::child(ctx, &ctx.endpoints, o).await,
        Child::NetworkPolicy(o) => apply::child(ctx, &ctx.network_policies, o).await,
        Child::StatefulSet(o) => apply::child(ctx, &ctx.stateful_sets, o).await,
        Child::Deployment(o) => apply::child(ctx, &ctx.deployments, o).await,
        Child::Ingress(o) => apply::child(ctx, &ctx.ingresses, o).await,
    }
}

/// Event, log and metrics for a flip, once its status is written.
async fn announce_flip(
    ctx: &Context,
    domain: &ContinuityDomain,
    previous_since: Option<Timestamp>,
    decision: &decision::Decision,
) {
    let (to, ended) = match decision.flip {
        Some(Flip::ToStandby) => ("standby", None),
        Some(Flip::ToPrimary) => (
            "primary",
            previous_since.and_then(|since| std::time::Duration::try_from(decision.since.duration_since(since)).ok()),
        ),
        None => return,
    };
    info!(domain = %format!("{}/{}", domain.namespace().unwrap_or_default(), domain.name_any()), to, reason = decision.reason, "routing flipped");
    ctx.metrics.flipped(to, ended);
    events::publish_flip(&ctx.recorder, domain, decision, &ctx.metrics).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::domain::{DomainPhase, ProbeFailureClass, RouteTarget};
    use crate::claims::ClaimOutcome;
    use crate::health::probe::{Outcome as ProbeOutcome, Report};
    use crate::testing::{environment, fixture};
    use k8s_openapi::ByteString;
    use k8s_openapi::api::apps::v1::{DeploymentStatus, StatefulSetStatus};
    use k8s_openapi::api::core::v1::ConfigMap;

    fn own_claim(domain: &ContinuityDomain) -> Vec<Claim> {
        vec![Claim::of(domain)]
    }

    struct World<'a> {
        secrets: SecretsRead,
        observed: Observed<'a>,
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
            }
        }
    }

    fn plan_in(
        domain: &ContinuityDomain,
        users: &[&ContinuityUser],
        claimants: &[Claim],
        health: Option<&Health>,
        world: &World<'_>,
    ) -> Plan {
        plan(
            domain,
            &Inputs {
                users,
                claimants,
                health,
                environment: &environment(),
                secrets: &world.secrets,
                observed: world.observed,
                hasher: &PasswordHasher::default(),
                heartbeat: Duration::from_secs(60),
                now: Timestamp::from_second(1_000_000).unwrap(),
            },
        )
        .unwrap()
    }

    fn plan_with(
        domain: &ContinuityDomain,
        users: &[&ContinuityUser],
        claimants: &[Claim],
        health: Option<&Health>,
    ) -> Plan {
        plan_in(domain, users, claimants, health, &World::default())
    }

    fn config_map<'a>(plan: &'a Plan, name: &str) -> Option<&'a ConfigMap> {
        plan.children.iter().find_map(|child| match child {
            Child::ConfigMap(cm) if cm.metadata.name.as_deref() == Some(name) => Some(cm),
            _ => None,
        })
    }

    /// The addresses the plan's coverage ConfigMap lists.
    fn coverage_listing(plan: &Plan) -> &str {
        let map = config_map(plan, "example-com-coverage").expect("a coverage ConfigMap");
        map.data
            .as_ref()
            .and_then(|d| d.get("addresses"))
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The one child `pick` finds in the plan.
    fn built<T: Clone>(plan: &Plan, pick: impl Fn(&Child) -> Option<&T>) -> T {
        plan.children
            .iter()
            .find_map(pick)
            .cloned()
            .expect("the child is built")
    }

    fn kinds(plan: &Plan) -> Vec<String> {
        plan.children
            .iter()
            .map(|c| c.describe().split('/').next().unwrap_or_default().to_owned())
            .collect()
    }

    fn external_name(plan: &Plan) -> &str {
        let routing = plan.routing.as_ref().expect("a next-hop Service");
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
        let plan = plan_with(&domain, &[&alice], &own_claim(&domain), None);
        assert_eq!(plan.facts.claim, ClaimOutcome::Accepted);
        assert_eq!(plan.facts.covered, Some(1));
        assert_eq!(coverage_listing(&plan), "alice@example.com\n");
        assert_eq!(external_name(&plan), "mx.example.com");
        let probe = plan.probe.expect("a probe registration");
        assert_eq!((probe.target.host.as_str(), probe.target.port), ("mx.example.com", 25));
        assert!(probe.tls.is_none(), "Opportunistic TLS is not certificate-checked");
    }

    #[test]
    fn the_standby_is_built_configuration_first_and_holds_only_password_hashes() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let plan = plan_with(&domain, &[&alice], &own_claim(&domain), None);
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
        let config = config_map(&plan, "example-com-standby-config")
            .unwrap()
            .data
            .clone()
            .unwrap();
        assert!(config["recipients"].contains("alice@example.com OK\n"));
        let Some(Child::Secret(secret)) = plan.children.iter().find(|c| matches!(c, Child::Secret(_))) else {
            panic!("no Secret");
        };
        let passwd = String::from_utf8(secret.data.as_ref().unwrap()["passwd"].0.clone()).unwrap();
        assert!(passwd.starts_with("# ") && passwd.contains("alice@example.com:{SHA512-CRYPT}$6$"));
        assert!(!passwd.contains("correct horse"));
        assert!(plan.facts.without_password.is_empty());
        let standby = plan.facts.standby.as_ref().unwrap();
        assert_eq!(
            (standby.ready, standby.reason),
            (false, crate::api::conditions::reasons::STANDBY_NOT_PROVISIONED)
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
        let plan = plan_in(&domain, &[&alice], &own_claim(&domain), None, &world);
        assert_eq!(plan.facts.without_password, ["alice@example.com"]);
        assert!(
            config_map(&plan, "example-com-standby-config")
                .unwrap()
                .data
                .as_ref()
                .unwrap()["recipients"]
                .contains("alice@example.com OK"),
            "she still receives mail"
        );
    }

    #[test]
    fn the_standby_is_ready_when_the_cached_workloads_run_what_was_built() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let first = plan_with(&domain, &[], &own_claim(&domain), None);
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
        let world = World {
            observed: Observed {
                mail: Some(&set),
                webmail: Some(&deployment),
                ingress: None,
            },
            ..World::default()
        };
        let plan = plan_in(&domain, &[], &own_claim(&domain), None, &world);
        assert!(
            plan.facts.standby.as_ref().is_some_and(|s| s.ready),
            "{:?}",
            plan.facts.standby
        );
        let status = compute(
            &domain,
            &plan.facts,
            &Time(Timestamp::from_second(1_000_000).unwrap()),
            Duration::from_secs(60),
        );
        assert_eq!(status.phase, Some(DomainPhase::Armed));
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
            notified: tokio::time::Instant::now(),
        };
        let healthy_plan = plan_with(&domain, &[], &own_claim(&domain), None);
        assert_eq!(
            external_name(&healthy_plan),
            "example-com-primary.tenant-a.svc.cluster.local"
        );
        assert!(
            kinds(&healthy_plan).contains(&"Endpoints".to_owned()),
            "an IP primary is fronted by a Service with Endpoints"
        );
        let failed_plan = plan_with(&domain, &[], &own_claim(&domain), Some(&refused));
        assert_eq!(
            failed_plan.facts.decision.as_ref().map(|d| d.target),
            Some(RouteTarget::Standby)
        );
        assert_eq!(
            external_name(&failed_plan),
            "example-com-standby-mail.tenant-a.svc.cluster.local"
        );
    }

    #[test]
    fn a_domain_that_may_not_act_builds_nothing_and_probes_nothing() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let mut earlier = Claim::of(&domain);
        earlier.namespace = "tenant-0".into();
        earlier.created = Some(Timestamp::from_second(0).unwrap());
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let lost = plan_with(&domain, &[&alice], &[earlier, Claim::of(&domain)], None);
        assert!(matches!(lost.facts.claim, ClaimOutcome::Lost { .. }));
        assert!(lost.children.is_empty() && lost.routing.is_none() && lost.probe.is_none());
        assert_eq!(lost.facts.covered, Some(0), "a domain that cannot act covers nobody");

        let invalid: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let plan = plan_with(&invalid, &[], &own_claim(&invalid), None);
        assert!(!plan.facts.violations.is_empty());
        assert!(plan.routing.is_none() && plan.probe.is_none() && plan.children.is_empty());

        let mut suspended = domain.clone();
        suspended.spec.suspend = true;
        let plan = plan_with(&suspended, &[], &own_claim(&suspended), None);
        assert!(plan.routing.is_none() && plan.probe.is_none() && plan.facts.decision.is_none());
    }

    #[test]
    fn a_recovering_domain_covers_its_users_whatever_its_previous_phase() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.status = Some(crate::api::ContinuityDomainStatus {
            phase: Some(DomainPhase::Error),
            ..Default::default()
        });
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let plan = plan_with(&domain, &[&alice], &own_claim(&domain), None);
        assert_eq!(plan.facts.covered, Some(1));
        assert_eq!(coverage_listing(&plan), "alice@example.com\n");
    }

    #[test]
    fn a_directory_not_read_yet_leaves_the_mail_configuration_alone() {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        let plan = plan_with(&domain, &[], &own_claim(&domain), None);
        assert_eq!(plan.facts.covered, None);
        assert!(config_map(&plan, "corp-coverage").is_none() && config_map(&plan, "corp-standby-config").is_none());
        assert!(kinds(&plan).contains(&"Ingress".to_owned()), "the workloads are built");
        assert!(plan.facts.violations.is_empty(), "{:?}", plan.facts.violations);
        assert!(
            plan.probe.as_ref().is_some_and(|p| p.tls.is_some()),
            "tls: Required is certificate-checked"
        );
    }
}
