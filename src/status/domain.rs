//! The status of a ContinuityDomain.

use std::time::Duration;

use crate::api::ContinuityDomain;
use crate::api::conditions::{self, Desired, Status, reasons, types};
use crate::api::domain::{
    ContinuityDomainStatus, ContinuityEvents, DomainPhase, MessageCounts, RouteTarget, RoutingStatus, UsersStatus,
};
use crate::coverage::{self, CONFIRM_SCOPE_ANNOTATION, ScopeCourse};
use crate::directory;
use crate::health::tracker::Health;
use crate::routing::decision::{Decision, Flip};
use crate::status::primary::{primary_reachable, probe_status, whole_seconds};
use crate::status::progress;
use crate::status::standby::Readiness;
use crate::validation::Idle;
use crate::validation::claims::ClaimOutcome;
use crate::validation::rules::{self, Violation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

/// How many addresses without an emergency password status names (it counts them all).
pub const WITHOUT_PASSWORD_LISTED: usize = 50;
/// How many reasons for missing passwords status names.
pub const PROBLEMS_LISTED: usize = 10;

/// What a reconcile found and did, the input of [`compute`]: built once, after apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Whether this resource owns its mail domain.
    pub claim: ClaimOutcome,
    /// What this replica has seen of the primary.
    pub health: Option<Health>,
    pub course: Reported,
}

/// Whether the domain acted, and with what result.
#[derive(Clone, Debug, PartialEq)]
pub enum Reported {
    Idle(Idle),
    Acted(Acted),
}

/// What a domain that acts applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Acted {
    /// The route now in place; `None` when the API server refused the routing object, so the
    /// route is the one status already shows.
    pub route: Option<Route>,
    /// Number of covered addresses, when known.
    pub covered: Option<usize>,
    /// The covered addresses without an emergency password, in order.
    pub without_password: Vec<String>,
    /// Why they have none, each reason once.
    pub password_problems: Vec<String>,
    pub standby: Readiness,
    /// The first child this reconcile could not apply, if any.
    pub refused: Option<Refused>,
    /// What the hand-back agent reported this time; `None` when it was not asked or not
    /// reached (status keeps what it last showed).
    pub handback: Option<Box<MessageCounts>>,
    /// The LDAP directory the users come from, if they do.
    pub directory: Option<Box<directory::Observed>>,
    /// The scope served, and what switching to the spec's does.
    pub scope: Box<ScopeCourse>,
}

/// `ScopeChangeNeedsConfirmation`, while the switch to `AllUsers` waits.
fn scope_change(scope: &ScopeCourse) -> Option<Desired> {
    let ScopeCourse::AwaitingConfirmation { would_remove } = scope else {
        return None;
    };
    Some(Desired::new(
        types::SCOPE_CHANGE_NEEDS_CONFIRMATION,
        Status::True,
        reasons::SCOPE_CHANGE_NEEDS_CONFIRMATION,
        format!(
            "spec.users.scope is AllUsers, which removes the domain's {} ContinuityUsers ({}); SelectedUsers is served until the domain is annotated {CONFIRM_SCOPE_ANNOTATION}=AllUsers",
            would_remove.len(),
            coverage::named(would_remove)
        ),
    ))
}

/// `DirectoryReachable` of a domain whose users come from LDAP, `covered` of them covered
/// now. Before this operator has read the directory once (it just started) the condition
/// stays as it was: a restart is no news.
fn directory_reachable(observed: &directory::Observed, covered: Option<usize>, previous: &[Condition]) -> Desired {
    let listing = observed.knowledge.listing.as_deref();
    let kept = match (listing, covered) {
        (Some(_), Some(covered)) => format!("coverage stays as the directory last listed it ({covered} addresses covered)"),
        _ => "no listing yet: the domain's users are unknown, so the standby is not configured and routing does not fail over to it".into(),
    };
    let (reason, problem) = match (&observed.bind_problem, &observed.knowledge.failing) {
        (Some(problem), _) => (reasons::BIND_SECRET_INVALID, problem.clone()),
        (None, Some(error)) => {
            let reason = match error.step {
                directory::Step::Connect => reasons::DIRECTORY_UNREACHABLE,
                directory::Step::Bind => reasons::DIRECTORY_BIND_FAILED,
                directory::Step::Search => reasons::DIRECTORY_SEARCH_FAILED,
            };
            (reason, error.to_string())
        }
        (None, None) if listing.is_some_and(|l| l.read_at.is_some()) => {
            return Desired::new(
                types::DIRECTORY_REACHABLE,
                Status::True,
                reasons::DIRECTORY_READ,
                format!("{} answered the last read", observed.server),
            );
        }
        (None, None) => {
            return Desired::carried(previous, types::DIRECTORY_REACHABLE).unwrap_or_else(|| {
                Desired::new(
                    types::DIRECTORY_REACHABLE,
                    Status::Unknown,
                    reasons::DIRECTORY_NOT_READ,
                    format!("{} has not been read yet; {kept}", observed.server),
                )
            });
        }
    };
    Desired::new(
        types::DIRECTORY_REACHABLE,
        Status::False,
        reason,
        format!("{problem}; {kept}"),
    )
}

/// Whether `status` differs from `previous` in the primary's probe details alone: a heartbeat,
/// not a change a user would act on.
pub fn is_heartbeat(previous: &ContinuityDomainStatus, status: &ContinuityDomainStatus) -> bool {
    previous.primary != status.primary
        && ContinuityDomainStatus {
            primary: status.primary.clone(),
            ..previous.clone()
        } == *status
}

/// The annotation that lets a domain be deleted while mail still waits for its primary.
pub const FORCE_DELETE_ANNOTATION: &str = "continuity.mailops.io/force-delete";

/// Whether the domain's deletion is forced past the mail it still holds.
pub fn force_delete(domain: &ContinuityDomain) -> bool {
    domain
        .annotations()
        .get(FORCE_DELETE_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// Status counts from the agent's summary.
pub fn message_counts(summary: &crate::handback::tracking::Summary) -> MessageCounts {
    let counts = &summary.counts;
    MessageCounts {
        held: counts.held,
        delivered: counts.delivered,
        pending: counts.pending,
        failed: counts.failed,
        oldest_pending_time: counts
            .oldest_pending
            .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t.as_second()).ok())
            .map(Time),
    }
}

/// The `Deactivating` condition of a domain being deleted.
fn deactivating(domain: &ContinuityDomain, messages: Option<&MessageCounts>) -> Option<Desired> {
    domain.metadata.deletion_timestamp.as_ref()?;
    let pending = messages.map_or(0, |m| m.pending);
    Some(if force_delete(domain) {
        Desired::new(
            types::DEACTIVATING,
            Status::True,
            reasons::DELETION_FORCED,
            format!("{FORCE_DELETE_ANNOTATION} is set: the standby goes now, with {pending} messages not handed back"),
        )
    } else if pending > 0 {
        Desired::new(
            types::DEACTIVATING,
            Status::True,
            reasons::HAND_BACK_PENDING,
            format!(
                "deletion waits until {pending} held messages reach the primary; annotate {FORCE_DELETE_ANNOTATION}=true to delete now"
            ),
        )
    } else {
        Desired::new(
            types::DEACTIVATING,
            Status::True,
            reasons::HANDED_BACK,
            "no held mail waits for the primary; the standby goes",
        )
    })
}

/// A child that could not be applied, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Its name is taken by an object this domain does not control (else the API server
    /// refused it).
    pub conflict: bool,
    pub message: String,
}

/// A route decided and applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub decision: Decision,
    /// Its next hop, as the transport map lists it.
    pub next_hop: String,
}

impl Report {
    /// The route applied in this reconcile, if the domain acted and it was.
    pub fn route(&self) -> Option<&Route> {
        match &self.course {
            Reported::Acted(acted) => acted.route.as_ref(),
            Reported::Idle(_) => None,
        }
    }
}

/// Computes the status the domain should have. Nothing in it changes with each probe: the
/// primary's condition and probe details change when a user would notice
/// ([`super::primary`]), otherwise once a `heartbeat`.
pub fn compute(domain: &ContinuityDomain, report: &Report, now: &Time, heartbeat: Duration) -> ContinuityDomainStatus {
    let previous = domain.status.clone().unwrap_or_default();
    let mail_domain = &domain.spec.domain;
    let acted = match &report.course {
        Reported::Acted(acted) => Some(acted),
        Reported::Idle(_) => None,
    };
    let decision = report.route().map(|route| &route.decision);

    let conflict = match &report.claim {
        ClaimOutcome::Accepted => Desired::new(
            types::CONFLICT,
            Status::False,
            reasons::DOMAIN_CLAIM_ACCEPTED,
            format!("no other ContinuityDomain claims {mail_domain}"),
        ),
        // Which resource won is not the tenant's to know (it may be another tenant's); the
        // operator's log names it.
        ClaimOutcome::Lost { .. } => Desired::new(
            types::CONFLICT,
            Status::True,
            reasons::DOMAIN_CLAIMED_ELSEWHERE,
            format!(
                "{mail_domain} is already claimed by another ContinuityDomain, created first; this resource does nothing until that one is deleted or this one names another domain"
            ),
        ),
    };
    // A domain that does not act leaves its standby as it was, and so its condition.
    let standby = match acted {
        Some(acted) => Desired::new(
            types::STANDBY_READY,
            acted.standby.ready.into(),
            acted.standby.reason,
            acted.standby.message.clone(),
        ),
        None => Desired::carried(&previous.conditions, types::STANDBY_READY).unwrap_or_else(|| {
            Desired::new(
                types::STANDBY_READY,
                Status::False,
                reasons::STANDBY_NOT_PROVISIONED,
                "the standby mail stack (Postfix, Dovecot, webmail) is not provisioned yet",
            )
        }),
    };
    let primary = primary_reachable(domain, report.health.as_ref(), &previous);
    let continuity = match decision {
        Some(decision) => {
            let fresh = Desired::new(
                types::CONTINUITY_ACTIVE,
                (decision.target == RouteTarget::Standby).into(),
                decision.reason,
                decision.message.clone(),
            );
            // A flip's message says why it flipped; the reconciles after it would only say
            // "still so", a second write for nothing new. It stays while the route, the reason
            // and the spec hold.
            match conditions::find(&previous.conditions, types::CONTINUITY_ACTIVE) {
                Some(shown)
                    if decision.flip.is_none()
                        && shown.status == fresh.status.as_str()
                        && shown.reason == fresh.reason
                        && shown.observed_generation == domain.metadata.generation =>
                {
                    Desired::new(
                        types::CONTINUITY_ACTIVE,
                        fresh.status,
                        fresh.reason,
                        shown.message.clone(),
                    )
                }
                _ => fresh,
            }
        }
        None => Desired::carried(&previous.conditions, types::CONTINUITY_ACTIVE).unwrap_or_else(|| {
            Desired::new(
                types::CONTINUITY_ACTIVE,
                Status::False,
                reasons::DOMAIN_NOT_ACTING,
                "this resource does not act; see the Ready condition",
            )
        }),
    };

    let messages = acted
        .and_then(|acted| acted.handback.as_deref().cloned())
        .or_else(|| previous.messages.clone());
    let (phase, ready) = match &report.course {
        Reported::Idle(Idle::Suspended) => (
            DomainPhase::Suspended,
            Desired::new(
                types::READY,
                Status::False,
                reasons::SUSPENDED,
                "spec.suspend is set; the operator changes nothing for this domain",
            ),
        ),
        Reported::Idle(Idle::Invalid(violations)) => {
            let reason = if violations.iter().any(|v| matches!(v, Violation::DomainChanged { .. })) {
                reasons::DOMAIN_IMMUTABLE
            } else {
                reasons::INVALID_SPEC
            };
            (
                DomainPhase::Error,
                Desired::new(types::READY, Status::False, reason, rules::describe(violations)),
            )
        }
        Reported::Idle(Idle::ClaimLost { .. }) => (
            DomainPhase::Error,
            Desired::new(
                types::READY,
                Status::False,
                reasons::DOMAIN_CLAIMED_ELSEWHERE,
                format!("{mail_domain} is served by another ContinuityDomain"),
            ),
        ),
        Reported::Idle(Idle::NotGranted) => (
            DomainPhase::Error,
            Desired::new(
                types::READY,
                Status::False,
                reasons::DOMAIN_NOT_GRANTED,
                format!(
                    "this namespace may not serve {mail_domain}: the provider lists the mail domains a namespace may serve in its annotation {}",
                    crate::validation::grants::ANNOTATION
                ),
            ),
        ),
        Reported::Acted(Acted {
            refused: Some(refused), ..
        }) => {
            let reason = if refused.conflict {
                reasons::CHILD_CONFLICT
            } else {
                reasons::CHILD_REJECTED
            };
            (
                DomainPhase::Degraded,
                Desired::new(types::READY, Status::False, reason, refused.message.clone()),
            )
        }
        Reported::Acted(acted) => serving(acted, messages.as_ref().map_or(0, |m| m.pending)),
    };

    // The probe details are refreshed with what a user acts on: the primary's condition, a flip.
    let noteworthy = decision.is_some_and(|d| d.flip.is_some())
        || conditions::find(&previous.conditions, types::PRIMARY_REACHABLE)
            .is_none_or(|shown| shown.reason != primary.reason || shown.status != primary.status.as_str());
    let generation = domain.metadata.generation;
    let kstatus = progress::domain(phase, &ready);
    let conditions = conditions::settle(
        &previous.conditions,
        [ready, standby, primary, continuity, conflict]
            .into_iter()
            .chain(kstatus)
            .chain(deactivating(domain, messages.as_ref()))
            .chain(acted.and_then(|a| scope_change(&a.scope)))
            .chain(acted.and_then(|a| {
                let observed = a.directory.as_deref()?;
                Some(directory_reachable(observed, a.covered, &previous.conditions))
            }))
            .collect(),
        generation,
        now,
    );

    // The claim is recorded once the domain acts, and kept while an edit of spec.domain is
    // refused, so that the edit cannot silently move the service to another domain.
    let claimed_domain = match (acted, &report.claim) {
        (Some(_), _) => Some(mail_domain.clone()),
        (None, _) if report.course == Reported::Idle(Idle::NotGranted) => None,
        (None, ClaimOutcome::Accepted) => previous.claimed_domain.clone(),
        (None, ClaimOutcome::Lost { .. }) => None,
    };
    let users = match &report.course {
        // Suspended: the operator changes nothing, so it reports the coverage it left.
        Reported::Idle(Idle::Suspended) => previous.users.clone(),
        // A domain that may not act covers nobody.
        Reported::Idle(_) => Some(UsersStatus::default()),
        Reported::Acted(acted) => acted.covered.map(|n| UsersStatus {
            scope: Some(acted.scope.served()),
            covered: u32::try_from(n).unwrap_or(u32::MAX),
            without_emergency_password: u32::try_from(acted.without_password.len()).unwrap_or(u32::MAX),
            without_emergency_password_addresses: acted
                .without_password
                .iter()
                .take(WITHOUT_PASSWORD_LISTED)
                .cloned()
                .collect(),
            emergency_password_problems: acted.password_problems.iter().take(PROBLEMS_LISTED).cloned().collect(),
        }),
    };

    ContinuityDomainStatus {
        observed_generation: generation,
        conditions,
        phase: Some(phase),
        claimed_domain,
        primary: probe_status(
            previous.primary.as_ref(),
            report.health.as_ref(),
            now,
            heartbeat,
            noteworthy,
        ),
        routing: match report.route() {
            Some(route) => Some(RoutingStatus {
                target: route.decision.target,
                since: Time(whole_seconds(route.decision.since)),
                next_hop: Some(route.next_hop.clone()),
            }),
            None => previous.routing.clone(),
        },
        continuity: continuity_events(previous.continuity.as_ref(), decision, now),
        users,
        messages,
    }
}

/// Phase and `Ready` of a domain that acts: armed (or serving from the standby) once the
/// standby is ready and the covered users are known.
fn serving(acted: &Acted, pending: u64) -> (DomainPhase, Desired) {
    let covered = acted.covered.unwrap_or(0);
    let decision = acted.route.as_ref().map(|route| &route.decision);
    let to_standby = decision.is_some_and(|d| d.target == RouteTarget::Standby);
    // Back on the primary, held mail is still on its way there.
    let failing_back = !to_standby && (decision.is_some_and(|d| d.flip == Some(Flip::ToPrimary)) || pending > 0);
    let phase = if to_standby {
        DomainPhase::Active
    } else if failing_back {
        DomainPhase::FailingBack
    } else {
        DomainPhase::Provisioning
    };
    let ready = |reason, message: String| Desired::new(types::READY, Status::True, reason, message);
    let not_ready = |reason, message: String| Desired::new(types::READY, Status::False, reason, message);
    let standby = &acted.standby;
    if let Some(held) = decision.filter(|d| [reasons::FAILOVER_BLOCKED, reasons::FAILOVER_HELD].contains(&d.reason)) {
        // The primary is down and nothing takes over: mail waits in the gateway's queue.
        (DomainPhase::Degraded, not_ready(held.reason, held.message.clone()))
    } else if acted.covered.is_none() {
        // Without its user list the mail pod has no configuration to start with.
        (
            phase,
            not_ready(
                reasons::DIRECTORY_NOT_READ,
                "the directory listing the domain's users has not been read yet".into(),
            ),
        )
    } else if !standby.ready && to_standby {
        (
            phase,
            not_ready(
                reasons::STANDBY_NOT_READY,
                format!("mail goes to the standby, which is not ready: {}", standby.message),
            ),
        )
    } else if !standby.ready {
        (
            phase,
            not_ready(
                reasons::STANDBY_NOT_READY,
                format!("the standby cannot take over yet: {}", standby.message),
            ),
        )
    } else if to_standby {
        (
            phase,
            ready(
                reasons::SERVING_FROM_STANDBY,
                format!("mail goes to the standby, which serves {covered} covered users"),
            ),
        )
    } else if failing_back && pending > 0 {
        (
            phase,
            ready(
                reasons::HANDING_BACK,
                format!("mail goes to the primary; {pending} held messages are being handed back to it"),
            ),
        )
    } else {
        (
            if failing_back { phase } else { DomainPhase::Armed },
            ready(
                reasons::ARMED,
                format!("mail goes to the primary; the standby is ready to take over for {covered} covered users"),
            ),
        )
    }
}

fn continuity_events(
    previous: Option<&ContinuityEvents>,
    decision: Option<&Decision>,
    now: &Time,
) -> Option<ContinuityEvents> {
    let mut events = previous.cloned();
    match decision.and_then(|d| d.flip) {
        Some(Flip::ToStandby) => {
            let events = events.get_or_insert_with(ContinuityEvents::default);
            events.activations = events.activations.saturating_add(1);
            events.last_activation_time = Some(now.clone());
        }
        Some(Flip::ToPrimary) => {
            events
                .get_or_insert_with(ContinuityEvents::default)
                .last_deactivation_time = Some(now.clone());
        }
        None => {}
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find;
    use crate::api::domain::ProbeFailureClass;
    use crate::health::probe::Outcome;
    use crate::health::probe::Report as ProbeReport;
    use crate::routing::decision::{Gate, Recorded, decide};
    use crate::status::standby::{Expected, Observed, judge};
    use crate::testing::fixture;
    use crate::validation::claims::Claim;
    use crate::validation::rules::violations;
    use k8s_openapi::jiff::Timestamp;

    const HEARTBEAT: Duration = Duration::from_secs(60);

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    /// The standby as judged before anything of it exists.
    fn not_provisioned() -> Readiness {
        judge(
            &Observed::default(),
            &Expected {
                mail: "0",
                webmail: "0",
                ingress: None,
            },
        )
    }

    fn ready_standby() -> Readiness {
        Readiness {
            ready: true,
            reason: reasons::PROVISIONED,
            message: "the mail pod is ready".into(),
        }
    }

    /// What a domain that owns its claim and acted reports.
    fn acted(
        domain: &ContinuityDomain,
        covered: Option<usize>,
        standby: Readiness,
        health: Option<Health>,
        now: i64,
    ) -> Report {
        let decision = decide(
            &domain.spec,
            Recorded::of(domain.status.as_ref()),
            health.as_ref(),
            Gate {
                standby_ready: standby.ready,
                widespread: None,
            },
            at(now).0,
        );
        Report {
            claim: ClaimOutcome::Accepted,
            health,
            course: Reported::Acted(Acted {
                route: Some(Route {
                    decision,
                    next_hop: "smtp:[mx.example.com]:25".into(),
                }),
                covered,
                without_password: vec![],
                password_problems: vec![],
                standby,
                refused: None,
                handback: None,
                directory: None,
                scope: Box::new(ScopeCourse::Serve(crate::api::domain::UserScope::SelectedUsers)),
            }),
        }
    }

    /// What a domain that owns its claim and may not act reports.
    fn idle(idle: Idle) -> Report {
        Report {
            claim: ClaimOutcome::Accepted,
            health: None,
            course: Reported::Idle(idle),
        }
    }

    fn condition<'a>(status: &'a ContinuityDomainStatus, type_: &str) -> (&'a str, &'a str) {
        let c = find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.as_str(), c.reason.as_str())
    }

    fn health(outcome: Outcome, failures: u32, successes: u32, second: i64) -> Health {
        Health {
            last: ProbeReport {
                outcome,
                latency: Duration::from_millis(4),
                detail: "220 mx ESMTP".into(),
            },
            at: at(second).0,
            consecutive_failures: failures,
            consecutive_successes: successes,
            streak: failures.max(successes),
        }
    }

    /// A domain with a ready standby, probed as `health`, with the decision the state
    /// machine takes.
    fn probed(domain: &ContinuityDomain, health: Health, now: i64) -> Report {
        acted(domain, Some(1), ready_standby(), Some(health), now)
    }

    #[test]
    fn a_new_domain_is_not_ready_while_nothing_is_provisioned() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let status = compute(
            &domain,
            &acted(&domain, Some(2), not_provisioned(), None, 1000),
            &at(1000),
            HEARTBEAT,
        );
        assert_eq!(status.phase, Some(DomainPhase::Provisioning));
        assert_eq!(condition(&status, types::READY), ("False", reasons::STANDBY_NOT_READY));
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
        assert_eq!(status.users.map(|u| u.covered), Some(2));
        assert!(status.conditions.iter().all(|c| c.observed_generation == Some(1)));
    }

    #[test]
    fn recomputing_from_the_same_facts_changes_nothing() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let facts = probed(&domain, health(Outcome::Ok, 0, 9, 990), 1000);
        let first = compute(&domain, &facts, &at(1000), HEARTBEAT);
        domain.status = Some(first.clone());
        let facts = probed(&domain, health(Outcome::Ok, 0, 9, 990), 1005);
        let again = compute(&domain, &facts, &at(1005), HEARTBEAT);
        assert_eq!(first, again);
    }

    #[test]
    fn newer_probes_with_the_same_outcome_change_no_condition() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let mut fast = health(Outcome::Ok, 0, 10, 1000);
        fast.last.latency = Duration::from_millis(2);
        domain.status = Some(compute(&domain, &probed(&domain, fast, 1000), &at(1000), HEARTBEAT));
        let mut slow = health(Outcome::Ok, 0, 11, 1001);
        slow.last.latency = Duration::from_millis(90);
        let next = compute(&domain, &probed(&domain, slow, 1001), &at(1001), HEARTBEAT);
        assert_eq!(next.conditions, domain.status.unwrap().conditions);
    }

    #[test]
    fn a_stream_of_successes_refreshes_the_probe_details_only_on_the_heartbeat() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.status = Some(compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 10, 1000), 1000),
            &at(1000),
            HEARTBEAT,
        ));
        let later = compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 40, 1040), 1040),
            &at(1040),
            HEARTBEAT,
        );
        assert_eq!(
            later,
            domain.status.clone().unwrap(),
            "40 s later: nothing a user needs"
        );
        let beat = compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 60, 1060), 1060),
            &at(1060),
            HEARTBEAT,
        );
        assert_eq!(
            beat.primary.as_ref().unwrap().consecutive_successes,
            60,
            "after a heartbeat, a fresh probe time"
        );
        let previous = domain.status.clone().unwrap();
        assert!(is_heartbeat(&previous, &beat), "counted as a heartbeat");
        assert!(!is_heartbeat(&previous, &later), "nothing written is no heartbeat");
        let failing = compute(
            &domain,
            &probed(
                &domain,
                health(Outcome::Failed(ProbeFailureClass::Refused), 3, 0, 1060),
                1060,
            ),
            &at(1060),
            HEARTBEAT,
        );
        assert!(
            !is_heartbeat(&previous, &failing),
            "a condition that changed is not a heartbeat"
        );
        let off = compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 99_000, 100_000), 100_000),
            &at(100_000),
            Duration::ZERO,
        );
        assert_eq!(off, domain.status.unwrap(), "no heartbeat at all when it is off");
    }

    #[test]
    fn a_primary_failing_below_its_threshold_changes_nothing_in_status() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml"); // 3 failures, 3 successes
        domain.status = Some(compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 5, 100), 100),
            &at(100),
            HEARTBEAT,
        ));
        let healthy = domain.status.clone().unwrap();
        for (second, outcome, failures, successes) in [
            (103, Outcome::Failed(ProbeFailureClass::Greeting4xx), 0, 0),
            (106, Outcome::Ok, 0, 1),
            (109, Outcome::Failed(ProbeFailureClass::Refused), 1, 0),
            (112, Outcome::Failed(ProbeFailureClass::Refused), 2, 0),
            (115, Outcome::Ok, 0, 1),
        ] {
            let next = compute(
                &domain,
                &probed(&domain, health(outcome, failures, successes, second), second),
                &at(second),
                HEARTBEAT,
            );
            assert_eq!(next, healthy, "{outcome:?} at {second}");
        }
        // A failure class that does not count for routing is still shown once it repeated.
        let mut greeting = health(Outcome::Failed(ProbeFailureClass::Greeting4xx), 0, 0, 120);
        greeting.streak = 3;
        let shown = compute(&domain, &probed(&domain, greeting, 120), &at(120), HEARTBEAT);
        assert_eq!(condition(&shown, types::PRIMARY_REACHABLE), ("False", "Greeting4xx"));
        assert_eq!(shown.primary.map(|p| p.result), Some("Greeting4xx".to_owned()));
    }

    #[test]
    fn a_restarted_operator_rewrites_nothing_before_its_counts_reach_a_threshold() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let refused = Outcome::Failed(ProbeFailureClass::Refused);
        domain.status = Some(compute(
            &domain,
            &probed(&domain, health(refused, 3, 0, 109), 109),
            &at(109),
            HEARTBEAT,
        ));
        let failed_over = domain.status.clone().unwrap();
        // The first probes after a restart count from zero again.
        for (failures, second) in [(1, 130), (2, 133), (3, 136)] {
            let next = compute(
                &domain,
                &probed(&domain, health(refused, failures, 0, second), second),
                &at(second),
                HEARTBEAT,
            );
            assert_eq!(next, failed_over, "{failures} failures after the restart");
        }
    }

    #[test]
    fn failover_and_failback_show_in_phase_conditions_routing_and_counters() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml"); // 3 failures, 3 successes, 60 s
        let refused = Outcome::Failed(ProbeFailureClass::Refused);
        domain.status = Some(compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 5, 100), 100),
            &at(100),
            HEARTBEAT,
        ));
        let down = compute(
            &domain,
            &probed(&domain, health(refused, 3, 0, 109), 109),
            &at(109),
            HEARTBEAT,
        );
        assert_eq!(down.phase, Some(DomainPhase::Active));
        assert_eq!(
            condition(&down, types::CONTINUITY_ACTIVE),
            ("True", reasons::PRIMARY_UNREACHABLE)
        );
        assert_eq!(condition(&down, types::PRIMARY_REACHABLE), ("False", "Refused"));
        assert_eq!(
            down.routing.as_ref().map(|r| (r.target, r.since.clone())),
            Some((RouteTarget::Standby, at(109)))
        );
        assert_eq!(down.continuity.as_ref().map(|c| c.activations), Some(1));
        assert_eq!(down.primary.as_ref().map(|p| p.consecutive_failures), Some(3));
        domain.status = Some(down);

        let back = compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 3, 200), 200),
            &at(200),
            HEARTBEAT,
        );
        assert_eq!(back.phase, Some(DomainPhase::FailingBack));
        assert_eq!(
            condition(&back, types::CONTINUITY_ACTIVE),
            ("False", reasons::PRIMARY_SERVING)
        );
        assert_eq!(back.routing.as_ref().map(|r| r.target), Some(RouteTarget::Primary));
        assert_eq!(
            back.continuity.as_ref().and_then(|c| c.last_deactivation_time.clone()),
            Some(at(200))
        );
        domain.status = Some(back);
        let settled = compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 4, 203), 203),
            &at(203),
            HEARTBEAT,
        );
        assert_eq!(
            settled.phase,
            Some(DomainPhase::Armed),
            "failback completes once routing is back, the standby ready again"
        );
        assert_eq!(condition(&settled, types::READY), ("True", reasons::ARMED));
    }

    fn with_handback(mut report: Report, pending: u64) -> Report {
        if let Reported::Acted(acted) = &mut report.course {
            acted.handback = Some(Box::new(MessageCounts {
                held: 5,
                delivered: 5 - pending,
                pending,
                ..MessageCounts::default()
            }));
        }
        report
    }

    #[test]
    fn failback_lasts_until_held_mail_reached_the_primary_and_deletion_waits_for_it() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let refused = Outcome::Failed(ProbeFailureClass::Refused);
        domain.status = Some(compute(
            &domain,
            &probed(&domain, health(refused, 3, 0, 100), 100),
            &at(100),
            HEARTBEAT,
        ));
        let active = compute(
            &domain,
            &with_handback(probed(&domain, health(refused, 4, 0, 101), 101), 5),
            &at(101),
            HEARTBEAT,
        );
        assert_eq!(active.phase, Some(DomainPhase::Active));
        assert_eq!(active.messages.as_ref().map(|m| m.pending), Some(5));
        domain.status = Some(active);
        let back = compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 3, 200), 200),
            &at(200),
            HEARTBEAT,
        );
        domain.status = Some(back);
        let handing = compute(
            &domain,
            &with_handback(probed(&domain, health(Outcome::Ok, 0, 4, 203), 203), 2),
            &at(203),
            HEARTBEAT,
        );
        assert_eq!(
            handing.phase,
            Some(DomainPhase::FailingBack),
            "2 messages still on their way"
        );
        assert_eq!(condition(&handing, types::READY), ("True", reasons::HANDING_BACK));
        assert!(
            find(&handing.conditions, types::DEACTIVATING).is_none(),
            "only while deleting"
        );

        domain.status = Some(handing);
        domain.metadata.deletion_timestamp = Some(at(204));
        let deleting = compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 5, 204), 204),
            &at(204),
            HEARTBEAT,
        );
        assert_eq!(
            condition(&deleting, types::DEACTIVATING),
            ("True", reasons::HAND_BACK_PENDING)
        );
        assert!(
            find(&deleting.conditions, types::DEACTIVATING)
                .unwrap()
                .message
                .contains("2 held messages")
        );
        domain.metadata.annotations = Some([(FORCE_DELETE_ANNOTATION.to_owned(), "true".to_owned())].into());
        let forced = compute(
            &domain,
            &probed(&domain, health(Outcome::Ok, 0, 5, 205), 205),
            &at(205),
            HEARTBEAT,
        );
        assert_eq!(
            condition(&forced, types::DEACTIVATING),
            ("True", reasons::DELETION_FORCED)
        );

        domain.metadata.deletion_timestamp = None;
        let done = compute(
            &domain,
            &with_handback(probed(&domain, health(Outcome::Ok, 0, 6, 206), 206), 0),
            &at(206),
            HEARTBEAT,
        );
        assert_eq!(done.phase, Some(DomainPhase::Armed));
        assert_eq!(condition(&done, types::READY), ("True", reasons::ARMED));
    }

    #[test]
    fn a_restarted_operator_keeps_what_the_status_says_until_it_probes() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let refused = Outcome::Failed(ProbeFailureClass::Refused);
        domain.status = Some(compute(
            &domain,
            &probed(&domain, health(refused, 3, 0, 10), 10),
            &at(10),
            HEARTBEAT,
        ));
        // The new leader has no health yet: the decision keeps the route, the conditions stay.
        let report = acted(&domain, Some(1), ready_standby(), None, 500);
        let restarted = compute(&domain, &report, &at(500), HEARTBEAT);
        assert_eq!(restarted.routing.as_ref().map(|r| r.target), Some(RouteTarget::Standby));
        assert_eq!(condition(&restarted, types::PRIMARY_REACHABLE), ("False", "Refused"));
        assert_eq!(restarted.primary, domain.status.as_ref().unwrap().primary);
    }

    #[test]
    fn a_later_claimant_is_in_conflict_and_does_not_act() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let winner = Claim {
            namespace: "tenant-z".into(),
            name: "first".into(),
            created: None,
        };
        let report = Report {
            claim: ClaimOutcome::Lost { winner: winner.clone() },
            ..idle(Idle::ClaimLost { winner })
        };
        let status = compute(&domain, &report, &at(1), HEARTBEAT);
        assert_eq!(status.phase, Some(DomainPhase::Error));
        assert_eq!(
            condition(&status, types::CONFLICT),
            ("True", reasons::DOMAIN_CLAIMED_ELSEWHERE)
        );
        assert_eq!(
            condition(&status, types::READY),
            ("False", reasons::DOMAIN_CLAIMED_ELSEWHERE)
        );
        assert_eq!(
            condition(&status, types::CONTINUITY_ACTIVE),
            ("False", reasons::DOMAIN_NOT_ACTING)
        );
        let message = &find(&status.conditions, types::CONFLICT).unwrap().message;
        assert!(
            !message.contains("tenant-z"),
            "the winner is not named to the tenant: {message}"
        );
        assert_eq!(status.claimed_domain, None);
        assert_eq!(status.routing, None);
    }

    #[test]
    fn an_invalid_spec_says_why_and_a_changed_domain_keeps_its_claim() {
        let mut domain: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let status = compute(&domain, &idle(Idle::Invalid(violations(&domain))), &at(1), HEARTBEAT);
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
        let status = compute(&domain, &idle(Idle::Invalid(violations(&domain))), &at(1), HEARTBEAT);
        assert_eq!(condition(&status, types::READY), ("False", reasons::DOMAIN_IMMUTABLE));
        assert_eq!(status.claimed_domain.as_deref(), Some("example.org"));
    }

    #[test]
    fn a_refused_child_degrades_the_domain_with_the_reason() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let mut report = acted(&domain, Some(1), ready_standby(), None, 1);
        if let Reported::Acted(acted) = &mut report.course {
            acted.refused = Some(Refused {
                conflict: false,
                message: "Endpoints \"x\" is invalid".into(),
            });
        }
        let status = compute(&domain, &report, &at(1), HEARTBEAT);
        assert_eq!(status.phase, Some(DomainPhase::Degraded));
        assert_eq!(condition(&status, types::READY), ("False", reasons::CHILD_REJECTED));

        if let Reported::Acted(acted) = &mut report.course {
            acted.refused = Some(Refused {
                conflict: true,
                message: "Service/x exists and is not controlled by this ContinuityDomain".into(),
            });
        }
        let status = compute(&domain, &report, &at(1), HEARTBEAT);
        assert_eq!(condition(&status, types::READY), ("False", reasons::CHILD_CONFLICT));
    }

    #[test]
    fn armed_only_with_a_ready_standby_and_known_users() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let facts = |covered, standby: Readiness| acted(&domain, covered, standby, None, 1);
        let armed = compute(&domain, &facts(Some(3), ready_standby()), &at(1), HEARTBEAT);
        assert_eq!(armed.phase, Some(DomainPhase::Armed));
        assert_eq!(condition(&armed, types::READY), ("True", reasons::ARMED));
        assert_eq!(condition(&armed, types::STANDBY_READY), ("True", reasons::PROVISIONED));

        let unread = compute(&domain, &facts(None, ready_standby()), &at(1), HEARTBEAT);
        assert_eq!(unread.phase, Some(DomainPhase::Provisioning));
        assert_eq!(condition(&unread, types::READY), ("False", reasons::DIRECTORY_NOT_READ));

        let starting = Readiness {
            ready: false,
            reason: reasons::MAIL_POD_NOT_READY,
            message: "StatefulSet x: the mail pod (Postfix, Dovecot) is not ready".into(),
        };
        let waiting = compute(&domain, &facts(Some(3), starting), &at(1), HEARTBEAT);
        assert_eq!(waiting.phase, Some(DomainPhase::Provisioning));
        assert_eq!(condition(&waiting, types::READY), ("False", reasons::STANDBY_NOT_READY));
        assert_eq!(
            condition(&waiting, types::STANDBY_READY),
            ("False", reasons::MAIL_POD_NOT_READY)
        );
    }

    #[test]
    fn an_ungranted_domain_says_so_and_claims_nothing() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.status = Some(ContinuityDomainStatus {
            claimed_domain: Some(domain.spec.domain.clone()),
            ..Default::default()
        });
        let status = compute(&domain, &idle(Idle::NotGranted), &at(1), HEARTBEAT);
        assert_eq!(status.phase, Some(DomainPhase::Error));
        assert_eq!(condition(&status, types::READY), ("False", reasons::DOMAIN_NOT_GRANTED));
        assert_eq!(status.claimed_domain, None);
    }

    #[test]
    fn a_suspended_domain_says_so() {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.spec.suspend = true;
        domain.status = Some(ContinuityDomainStatus {
            users: Some(UsersStatus {
                covered: 7,
                ..Default::default()
            }),
            ..Default::default()
        });
        let status = compute(&domain, &idle(Idle::Suspended), &at(1), HEARTBEAT);
        assert_eq!(status.phase, Some(DomainPhase::Suspended));
        assert_eq!(condition(&status, types::READY), ("False", reasons::SUSPENDED));
        assert_eq!(
            status.users.map(|u| u.covered),
            Some(7),
            "suspended: coverage left as it was"
        );
    }
}
