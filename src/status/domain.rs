//! The status of a ContinuityDomain.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::ContinuityDomain;
use crate::api::conditions::{self, Desired, Status, reasons, types};
use crate::api::domain::{ContinuityDomainStatus, DomainPhase, UsersStatus};
use crate::api::validation::{self, Violation};
use crate::claims::ClaimOutcome;

/// What the controller found out about a domain in this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainFacts {
    /// Spec rules broken (see [`validation::domain`]).
    pub violations: Vec<Violation>,
    /// Whether this resource owns its mail domain.
    pub claim: ClaimOutcome,
    /// Number of covered addresses, when known.
    pub covered: Option<usize>,
}

impl DomainFacts {
    /// Whether the operator may provision and change things for this domain.
    pub fn acts(&self, domain: &ContinuityDomain) -> bool {
        !domain.spec.suspend && self.violations.is_empty() && self.claim == ClaimOutcome::Accepted
    }
}

/// Computes the status the domain should have.
pub fn compute(domain: &ContinuityDomain, facts: &DomainFacts, now: &Time) -> ContinuityDomainStatus {
    let previous = domain.status.clone().unwrap_or_default();
    let mail_domain = &domain.spec.domain;

    let conflict = match &facts.claim {
        ClaimOutcome::Accepted => Desired::new(
            types::CONFLICT,
            Status::False,
            reasons::DOMAIN_CLAIM_ACCEPTED,
            format!("no other ContinuityDomain claims {mail_domain}"),
        ),
        ClaimOutcome::Lost { winner } => Desired::new(
            types::CONFLICT,
            Status::True,
            reasons::DOMAIN_CLAIMED_ELSEWHERE,
            format!(
                "{mail_domain} is already claimed by ContinuityDomain {winner}, which was created first; this resource does nothing until that one is deleted or this one names another domain"
            ),
        ),
    };
    let standby = Desired::new(
        types::STANDBY_READY,
        Status::False,
        reasons::STANDBY_NOT_PROVISIONED,
        "the standby mail stack (Postfix, Dovecot, webmail) is not provisioned yet",
    );
    let continuity = Desired::new(
        types::CONTINUITY_ACTIVE,
        Status::False,
        reasons::STANDBY_NOT_PROVISIONED,
        "continuity cannot activate before the standby mail stack is provisioned",
    );
    let primary = Desired::new(
        types::PRIMARY_REACHABLE,
        Status::Unknown,
        reasons::NOT_PROBED,
        format!("{} has not been health-checked yet", domain.spec.primary.host),
    );

    let (phase, ready) = if domain.spec.suspend {
        (
            DomainPhase::Suspended,
            Desired::new(
                types::READY,
                Status::False,
                reasons::SUSPENDED,
                "spec.suspend is set; the operator changes nothing for this domain",
            ),
        )
    } else if !facts.violations.is_empty() {
        let reason = if facts
            .violations
            .iter()
            .any(|v| matches!(v, Violation::DomainChanged { .. }))
        {
            reasons::DOMAIN_IMMUTABLE
        } else {
            reasons::INVALID_SPEC
        };
        (
            DomainPhase::Error,
            Desired::new(
                types::READY,
                Status::False,
                reason,
                validation::describe(&facts.violations),
            ),
        )
    } else if let ClaimOutcome::Lost { winner } = &facts.claim {
        (
            DomainPhase::Error,
            Desired::new(
                types::READY,
                Status::False,
                reasons::DOMAIN_CLAIMED_ELSEWHERE,
                format!("{mail_domain} is served by ContinuityDomain {winner}"),
            ),
        )
    } else {
        (
            DomainPhase::Provisioning,
            Desired::new(
                types::READY,
                Status::False,
                reasons::STANDBY_NOT_PROVISIONED,
                "continuity cannot take over yet: the standby mail stack is not provisioned",
            ),
        )
    };

    let generation = domain.metadata.generation;
    let conditions = conditions::settle(
        &previous.conditions,
        vec![ready, standby, primary, continuity, conflict],
        generation,
        now,
    );

    // The claim is recorded once the domain acts, and kept while an edit of spec.domain is
    // refused, so that the edit cannot silently move the service to another domain.
    let claimed_domain = if facts.acts(domain) {
        Some(mail_domain.clone())
    } else if facts.claim == ClaimOutcome::Accepted {
        previous.claimed_domain.clone()
    } else {
        None
    };

    ContinuityDomainStatus {
        observed_generation: generation,
        conditions,
        phase: Some(phase),
        claimed_domain,
        // Suspended: the operator changes nothing, so it reports the coverage it left.
        users: if domain.spec.suspend {
            previous.users.clone()
        } else {
            facts.covered.map(|n| UsersStatus {
                covered: u32::try_from(n).unwrap_or(u32::MAX),
            })
        },
        ..previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find;
    use crate::claims::Claim;
    use crate::testing::fixture;
    use k8s_openapi::jiff::Timestamp;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn accepted(covered: Option<usize>) -> DomainFacts {
        DomainFacts {
            violations: vec![],
            claim: ClaimOutcome::Accepted,
            covered,
        }
    }

    fn condition<'a>(status: &'a ContinuityDomainStatus, type_: &str) -> (&'a str, &'a str) {
        let c = find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_new_domain_is_not_ready_while_nothing_is_provisioned() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let status = compute(&domain, &accepted(Some(2)), &at(1000));
        assert_eq!(status.phase, Some(DomainPhase::Provisioning));
        assert_eq!(
            condition(&status, types::READY),
            ("False", reasons::STANDBY_NOT_PROVISIONED)
        );
        assert_eq!(
            condition(&status, types::STANDBY_READY),
            ("False", reasons::STANDBY_NOT_PROVISIONED)
        );
        assert_eq!(
            condition(&status, types::PRIMARY_REACHABLE),
            ("Unknown", reasons::NOT_PROBED)
        );
        assert_eq!(
            condition(&status, types::CONFLICT),
            ("False", reasons::DOMAIN_CLAIM_ACCEPTED)
        );
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.claimed_domain.as_deref(), Some("example.com"));
        assert_eq!(status.users, Some(UsersStatus { covered: 2 }));
        assert!(status.conditions.iter().all(|c| c.observed_generation == Some(1)));
    }

    #[test]
    fn recomputing_from_the_same_facts_changes_nothing() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let first = compute(&domain, &accepted(Some(0)), &at(1000));
        domain.status = Some(first.clone());
        let again = compute(&domain, &accepted(Some(0)), &at(5000));
        assert_eq!(first, again);
    }

    #[test]
    fn a_later_claimant_is_in_conflict_and_does_not_act() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let facts = DomainFacts {
            violations: vec![],
            claim: ClaimOutcome::Lost {
                winner: Claim {
                    namespace: "tenant-z".into(),
                    name: "first".into(),
                    created: None,
                },
            },
            covered: Some(1),
        };
        assert!(!facts.acts(&domain));
        let status = compute(&domain, &facts, &at(1));
        assert_eq!(status.phase, Some(DomainPhase::Error));
        assert_eq!(
            condition(&status, types::CONFLICT),
            ("True", reasons::DOMAIN_CLAIMED_ELSEWHERE)
        );
        assert_eq!(
            condition(&status, types::READY),
            ("False", reasons::DOMAIN_CLAIMED_ELSEWHERE)
        );
        let message = &find(&status.conditions, types::CONFLICT).unwrap().message;
        assert!(message.contains("tenant-z/first"), "{message}");
        assert_eq!(status.claimed_domain, None);
    }

    #[test]
    fn an_invalid_spec_says_why_and_a_changed_domain_keeps_its_claim() {
        let mut domain: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let violations = validation::domain(&domain);
        let status = compute(
            &domain,
            &DomainFacts {
                violations,
                ..accepted(None)
            },
            &at(1),
        );
        assert_eq!(condition(&status, types::READY), ("False", reasons::INVALID_SPEC));
        assert_eq!(status.phase, Some(DomainPhase::Error));
        assert!(
            find(&status.conditions, types::READY)
                .unwrap()
                .message
                .contains("timeoutSeconds")
        );

        domain = fixture("domain-minimal.yaml");
        domain.status = Some(ContinuityDomainStatus {
            claimed_domain: Some("example.org".into()),
            ..Default::default()
        });
        let violations = validation::domain(&domain);
        let status = compute(
            &domain,
            &DomainFacts {
                violations,
                ..accepted(None)
            },
            &at(1),
        );
        assert_eq!(condition(&status, types::READY), ("False", reasons::DOMAIN_IMMUTABLE));
        assert_eq!(status.claimed_domain.as_deref(), Some("example.org"));
    }

    #[test]
    fn a_suspended_domain_says_so() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.spec.suspend = true;
        assert!(!accepted(None).acts(&domain));
        let status = compute(&domain, &accepted(None), &at(1));
        assert_eq!(status.phase, Some(DomainPhase::Suspended));
        assert_eq!(condition(&status, types::READY), ("False", reasons::SUSPENDED));
    }
}
