//! Reconciliation of a ContinuityDomain: read users and claims from the caches, validate,
//! resolve the claim, build the children, apply them, compute and write the status.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::info;

use super::apply::{self, Outcome};
use super::{CACHE_SYNC_RETRY, Context, events};
use crate::api::validation;
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::claims::{self, Claim, ClaimOutcome};
use crate::coverage;
use crate::resources;
use crate::status::domain::{DomainFacts, compute};
use crate::{Error, Result};

/// What one reconcile decided, from the domain and the cached facts alone.
#[derive(Debug)]
pub struct Plan {
    pub facts: DomainFacts,
    /// The children to apply; empty while the domain may not act.
    pub children: Vec<ConfigMap>,
}

/// The pure middle of the pipeline: validate, resolve the claim, decide coverage, build the
/// children.
pub fn plan(domain: &ContinuityDomain, users: &[&ContinuityUser], claimants: &[Claim]) -> Result<Plan> {
    let violations = validation::domain(domain);
    let claim = claims::resolve(&Claim::of(domain), claimants);
    // Judged on this reconcile's own findings, never on the previous status: a domain that is
    // invalid or lost its claim covers nobody.
    let covered = if violations.is_empty() && claim == ClaimOutcome::Accepted {
        coverage::covered_addresses(domain, users)
    } else {
        Some(BTreeSet::new())
    };
    let facts = DomainFacts {
        violations,
        claim,
        covered: covered.as_ref().map(BTreeSet::len),
    };
    // A domain that may not act builds nothing, and what it built before is left in place:
    // bad input must never take working parts down (SPEC 4.9).
    let children = match covered {
        Some(addresses) if facts.acts(domain) => vec![resources::coverage::build(domain, &addresses)?],
        _ => Vec::new(),
    };
    Ok(Plan { facts, children })
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
    let users = ctx.users_of(&namespace, &domain.name_any());
    let users: Vec<&ContinuityUser> = users.iter().map(AsRef::as_ref).collect();
    let claimants = ctx.claims.get(&claims::claimed_domain(&domain).to_owned());

    let plan = plan(&domain, &users, &claimants)?;
    let mut outcomes = Vec::with_capacity(plan.children.len() + 1);
    for child in &plan.children {
        outcomes.push(apply::child(&ctx, &ctx.config_maps, child).await?);
    }

    let previous = domain.status.clone().unwrap_or_default();
    let status = compute(&domain, &plan.facts, &Time(Timestamp::now()));
    let written = apply::status(&ctx, domain.as_ref(), &previous, &status).await?;
    if written == Outcome::Written {
        info!(domain = %format!("{namespace}/{}", domain.name_any()), phase = ?status.phase, "status updated");
        events::publish(
            &ctx.recorder,
            domain.as_ref(),
            &previous.conditions,
            &status.conditions,
            &ctx.metrics,
        )
        .await;
    }
    outcomes.push(written);
    Ok(ctx.requeue_after(&outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    fn own_claim(domain: &ContinuityDomain) -> Vec<Claim> {
        vec![Claim::of(domain)]
    }

    #[test]
    fn a_selected_users_domain_gets_a_coverage_map_of_its_users() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let plan = plan(&domain, &[&alice], &own_claim(&domain)).unwrap();
        assert_eq!(plan.facts.claim, ClaimOutcome::Accepted);
        assert_eq!(plan.facts.covered, Some(1));
        assert_eq!(plan.children.len(), 1);
        assert_eq!(
            plan.children[0].data.as_ref().unwrap()["addresses"],
            "alice@example.com\n"
        );
    }

    #[test]
    fn a_domain_that_may_not_act_builds_nothing() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let mut earlier = Claim::of(&domain);
        earlier.namespace = "tenant-0".into();
        earlier.created = Some(Timestamp::from_second(0).unwrap());
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let lost = plan(&domain, &[&alice], &[earlier, Claim::of(&domain)]).unwrap();
        assert!(matches!(lost.facts.claim, ClaimOutcome::Lost { .. }));
        assert!(lost.children.is_empty());
        assert_eq!(lost.facts.covered, Some(0), "a domain that cannot act covers nobody");

        let invalid: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let plan = plan(&invalid, &[], &own_claim(&invalid)).unwrap();
        assert!(!plan.facts.violations.is_empty());
        assert!(plan.children.is_empty());
    }

    #[test]
    fn a_recovering_domain_covers_its_users_whatever_its_previous_phase() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.status = Some(crate::api::ContinuityDomainStatus {
            phase: Some(crate::api::domain::DomainPhase::Error),
            ..Default::default()
        });
        let alice: ContinuityUser = fixture("user-alice.yaml");
        let plan = plan(&domain, &[&alice], &own_claim(&domain)).unwrap();
        assert_eq!(plan.facts.covered, Some(1));
        assert_eq!(
            plan.children[0].data.as_ref().unwrap()["addresses"],
            "alice@example.com\n"
        );
    }

    #[test]
    fn a_directory_not_read_yet_builds_no_coverage_map() {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        let plan = plan(&domain, &[], &own_claim(&domain)).unwrap();
        assert_eq!(plan.facts.covered, None);
        assert!(plan.children.is_empty());
        assert!(plan.facts.violations.is_empty(), "{:?}", plan.facts.violations);
    }
}
