//! Which ContinuityDomain owns a mail domain. Two resources (in any namespaces) may name the
//! same domain; the one created first acts, every later one reports a `Conflict` and does
//! nothing, so two standbys never fight over one domain's routing.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::ContinuityDomain;

/// One ContinuityDomain's claim on a mail domain, as kept in the cluster-wide claims index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    pub created: Option<Timestamp>,
}

impl Claim {
    pub fn of(domain: &ContinuityDomain) -> Self {
        Claim {
            namespace: domain.namespace().unwrap_or_default(),
            name: domain.name_any(),
            created: domain.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    /// Creation order, with namespace and name breaking ties between resources created in the
    /// same second, so every replica and every reconcile agrees on the winner.
    fn precedence(&self) -> (Option<Timestamp>, &str, &str) {
        (self.created, &self.namespace, &self.name)
    }
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The mail domain a resource claims: the one it already acts for (recorded in status) even if
/// someone edited `spec.domain` since, otherwise the spec's.
pub fn claimed_domain(domain: &ContinuityDomain) -> &str {
    domain
        .status
        .as_ref()
        .and_then(|s| s.claimed_domain.as_deref())
        .unwrap_or(&domain.spec.domain)
}

/// The verdict on one resource's claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// No earlier resource claims the domain.
    Accepted,
    /// `winner` claimed the domain first.
    Lost { winner: Claim },
}

/// Decides `mine` against every claim on the same domain (which may include `mine` itself).
pub fn resolve(mine: &Claim, claimants: &[Claim]) -> ClaimOutcome {
    claimants
        .iter()
        .filter(|c| !(c.namespace == mine.namespace && c.name == mine.name))
        .filter(|c| c.precedence() < mine.precedence())
        .min_by(|a, b| a.precedence().cmp(&b.precedence()))
        .map_or(ClaimOutcome::Accepted, |winner| ClaimOutcome::Lost {
            winner: winner.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(namespace: &str, name: &str, second: i64) -> Claim {
        Claim {
            namespace: namespace.into(),
            name: name.into(),
            created: Some(Timestamp::from_second(second).unwrap()),
        }
    }

    #[test]
    fn the_first_claimant_wins_in_any_namespace() {
        let first = claim("tenant-b", "mail", 100);
        let second = claim("tenant-a", "mail", 200);
        let all = [first.clone(), second.clone()];
        assert_eq!(resolve(&first, &all), ClaimOutcome::Accepted);
        assert_eq!(resolve(&second, &all), ClaimOutcome::Lost { winner: first });
    }

    #[test]
    fn ties_are_broken_the_same_way_everywhere() {
        let a = claim("ns", "alpha", 100);
        let b = claim("ns", "beta", 100);
        let all = [b.clone(), a.clone()];
        assert_eq!(resolve(&a, &all), ClaimOutcome::Accepted);
        assert_eq!(resolve(&b, &all), ClaimOutcome::Lost { winner: a });
    }

    #[test]
    fn a_lone_claim_is_accepted() {
        let only = claim("ns", "x", 1);
        assert_eq!(resolve(&only, std::slice::from_ref(&only)), ClaimOutcome::Accepted);
        assert_eq!(resolve(&only, &[]), ClaimOutcome::Accepted);
    }

    #[test]
    fn the_claimed_domain_survives_a_spec_edit() {
        let mut d: ContinuityDomain = crate::testing::fixture("domain-minimal.yaml");
        assert_eq!(claimed_domain(&d), "example.com");
        d.status = Some(crate::api::ContinuityDomainStatus {
            claimed_domain: Some("example.com".into()),
            ..Default::default()
        });
        d.spec.domain = "example.net".into();
        assert_eq!(claimed_domain(&d), "example.com");
    }
}
