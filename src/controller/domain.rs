//! Reconciliation of a ContinuityDomain: read its users, the claims on its mail domain and its
//! primary's health from the caches; validate, resolve the claim, decide the route, build the
//! children; apply them; compute and write the status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::info;

use super::apply::{self, Outcome};
use super::{CACHE_SYNC_RETRY, Context, events};
use crate::api::validation;
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::claims::{self, Claim};
use crate::coverage;
use crate::health::scheduler::Registration;
use crate::health::tracker::Health;
use crate::health::{self};
use crate::resources::{self, next_hop};
use crate::routing::decision::{self, Flip};
use crate::routing::transport;
use crate::status::domain::{DomainFacts, compute, whole_seconds};
use crate::{Error, Result};

/// What a reconcile knows besides the domain itself.
pub struct Inputs<'a> {
    pub users: &'a [&'a ContinuityUser],
    pub claimants: &'a [Claim],
    pub health: Option<&'a Health>,
    pub cluster_domain: &'a str,
    pub heartbeat: Duration,
    pub now: Timestamp,
}

/// What one reconcile decided, from the domain and the cached facts alone.
#[derive(Debug)]
pub struct Plan {
    pub facts: DomainFacts,
    /// The next-hop Service: the routing flip itself.
    pub routing: Option<Service>,
    pub config_maps: Vec<ConfigMap>,
    /// Services besides the next hop (fronting a primary given by address).
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoints>,
    /// How to probe the primary; `None` while the domain may not act.
    pub probe: Option<Registration>,
}

/// The pure middle of the pipeline: validate, resolve the claim, decide coverage and route,
/// build the children.
pub fn plan(domain: &ContinuityDomain, inputs: &Inputs<'_>) -> Result<Plan> {
    let mut facts = DomainFacts {
        violations: validation::domain(domain),
        claim: claims::resolve(&Claim::of(domain), inputs.claimants),
        covered: None,
        health: inputs.health.cloned(),
        decision: None,
        rejected: None,
        next_hop: None,
    };
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
        facts.next_hop = Some(transport::next_hop(domain, decision.target, inputs.cluster_domain));
        facts.decision = Some(decision);
    }

    let mut plan = Plan {
        routing: None,
        config_maps: Vec::new(),
        services: Vec::new(),
        endpoints: Vec::new(),
        probe: None,
        facts,
    };
    // A domain that may not act builds nothing, and what it built before is left in place:
    // bad input must never take working parts down (SPEC 4.9).
    let Some(decision) = &plan.facts.decision else {
        return Ok(plan);
    };
    plan.routing = Some(next_hop::service(domain, decision.target, inputs.cluster_domain)?);
    if let Some(addresses) = covered {
        plan.config_maps.push(resources::coverage::build(domain, &addresses)?);
    }
    if let Some((service, endpoints)) = next_hop::primary_by_address(domain)? {
        plan.services.push(service);
        plan.endpoints.push(endpoints);
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
    let now = whole_seconds(Timestamp::now());
    let mut plan = plan(
        &domain,
        &Inputs {
            users: &users,
            claimants: &claimants,
            health: health.as_ref(),
            cluster_domain: &ctx.settings.cluster_domain,
            heartbeat: ctx.settings.status_heartbeat,
            now,
        },
    )?;

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
    let helpers = plan
        .services
        .iter()
        .map(|s| apply::child(&ctx, &ctx.services, s).boxed())
        .chain(
            plan.endpoints
                .iter()
                .map(|e| apply::child(&ctx, &ctx.endpoints, e).boxed()),
        )
        .chain(
            plan.config_maps
                .iter()
                .map(|c| apply::child(&ctx, &ctx.config_maps, c).boxed()),
        );
    for apply in helpers {
        match apply.await {
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
    use crate::testing::fixture;

    fn own_claim(domain: &ContinuityDomain) -> Vec<Claim> {
        vec![Claim::of(domain)]
    }

    fn plan_with(
        domain: &ContinuityDomain,
        users: &[&ContinuityUser],
        claimants: &[Claim],
        health: Option<&Health>,
    ) -> Plan {
        plan(
            domain,
            &Inputs {
                users,
                claimants,
                health,
                cluster_domain: "cluster.local",
                heartbeat: Duration::from_secs(60),
                now: Timestamp::from_second(1_000_000).unwrap(),
            },
        )
        .unwrap()
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
        assert_eq!(
            plan.config_maps[0].data.as_ref().unwrap()["addresses"],
            "alice@example.com\n"
        );
        assert_eq!(external_name(&plan), "mx.example.com");
        let probe = plan.probe.expect("a probe registration");
        assert_eq!((probe.target.host.as_str(), probe.target.port), ("mx.example.com", 25));
        assert!(probe.tls.is_none(), "Opportunistic TLS is not certificate-checked");
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
        assert_eq!(
            healthy_plan.endpoints.len(),
            1,
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
        assert!(lost.config_maps.is_empty() && lost.routing.is_none() && lost.probe.is_none());
        assert_eq!(lost.facts.covered, Some(0), "a domain that cannot act covers nobody");

        let invalid: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let plan = plan_with(&invalid, &[], &own_claim(&invalid), None);
        assert!(!plan.facts.violations.is_empty());
        assert!(plan.routing.is_none() && plan.probe.is_none());

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
        assert_eq!(
            plan.config_maps[0].data.as_ref().unwrap()["addresses"],
            "alice@example.com\n"
        );
    }

    #[test]
    fn a_directory_not_read_yet_builds_no_coverage_map() {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        let plan = plan_with(&domain, &[], &own_claim(&domain), None);
        assert_eq!(plan.facts.covered, None);
        assert!(plan.config_maps.is_empty());
        assert!(plan.facts.violations.is_empty(), "{:?}", plan.facts.violations);
        assert!(
            plan.probe.as_ref().is_some_and(|p| p.tls.is_some()),
            "tls: Required is certificate-checked"
        );
    }
}
