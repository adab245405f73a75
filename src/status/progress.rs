//! kstatus' two conditions, `Reconciling` and `Stalled`, derived from a resource's `Ready`.
//!
//! kstatus (Flux's health checks, `kubectl wait`-style waiters in cli-utils, Helm's status
//! waiter) reads a custom resource as `InProgress` while its `observedGeneration` lags or
//! `Reconciling` is True, `Failed` while `Stalled` is True, and `Current` otherwise. Without
//! them a domain still provisioning, or one with an invalid spec, read as `Current`. Both are
//! "abnormal-true": present only while True, as Flux's own resources carry them, so a settled
//! resource's status holds nothing extra. They repeat `Ready`'s reason and message, and
//! raise no Event of their own (`Ready`'s says it).

use crate::api::conditions::{Desired, Status, reasons, types};
use crate::api::domain::DomainPhase;

/// Where a resource stands, as kstatus sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Everything the spec asks for is done (or waits only for the world: a primary down,
    /// a standby serving).
    Settled,
    /// The operator is still working towards the spec, and gets there by itself.
    Reconciling,
    /// Nothing moves until someone changes the spec or another object.
    Stalled,
}

/// Reasons that wait for a change by a person, whatever the phase. `DomainNotFound` is not
/// one: GitOps tools apply a user and its domain together, and the user may be read first.
const STALLED_REASONS: [&str; 12] = [
    reasons::CHILD_CONFLICT,
    reasons::CHILD_REJECTED,
    reasons::INVALID_SPEC,
    reasons::DOMAIN_IMMUTABLE,
    reasons::DOMAIN_CLAIMED_ELSEWHERE,
    reasons::DOMAIN_NOT_GRANTED,
    reasons::EMERGENCY_PASSWORD_MISSING,
    reasons::ADDRESS_NOT_IN_DOMAIN,
    reasons::DOMAIN_SCOPE_IS_ALL_USERS,
    reasons::DOMAIN_NOT_ACTING,
    reasons::DUPLICATE_ADDRESS,
    reasons::SUSPENDED,
];

/// A domain's kstatus condition: provisioning and failing back are work under way; an error
/// phase, or a child the API server refused, waits for a person. A suspended domain is
/// settled: it does what its spec asks, nothing.
pub fn domain(phase: DomainPhase, ready: &Desired) -> Option<Desired> {
    let progress = if phase == DomainPhase::Error
        || (phase != DomainPhase::Suspended && STALLED_REASONS.contains(&ready.reason.as_ref()))
    {
        Progress::Stalled
    } else if matches!(phase, DomainPhase::Provisioning | DomainPhase::FailingBack) {
        Progress::Reconciling
    } else {
        Progress::Settled
    };
    condition(progress, ready)
}

/// A user's kstatus condition: not covered, or covered without a password to log in with,
/// waits for a person (`Covered` says why, so its reason is the one repeated); a covered user
/// waiting for the standby, or for its domain to appear, is work under way.
pub fn user(ready: &Desired, covered: &Desired) -> Option<Desired> {
    let cause = if covered.status == Status::True { ready } else { covered };
    let progress = if ready.status == Status::True {
        Progress::Settled
    } else if STALLED_REASONS.contains(&cause.reason.as_ref()) {
        Progress::Stalled
    } else {
        Progress::Reconciling
    };
    condition(progress, cause)
}

/// The condition for `progress`, if any, carrying `cause`'s reason and message.
fn condition(progress: Progress, cause: &Desired) -> Option<Desired> {
    let type_ = match progress {
        Progress::Settled => return None,
        Progress::Reconciling => types::RECONCILING,
        Progress::Stalled => types::STALLED,
    };
    Some(Desired::new(
        type_,
        Status::True,
        cause.reason.clone(),
        cause.message.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: Status, reason: &'static str) -> Desired {
        Desired::new(types::READY, status, reason, format!("because {reason}"))
    }

    fn covered(status: Status, reason: &'static str) -> Desired {
        Desired::new(types::COVERED, status, reason, format!("because {reason}"))
    }

    fn kind(condition: Option<Desired>) -> Option<(&'static str, String)> {
        condition.map(|c| (c.type_, c.reason.into_owned()))
    }

    #[test]
    fn domains_reconcile_while_provisioning_or_failing_back_and_stall_on_errors() {
        let cases = [
            (
                DomainPhase::Provisioning,
                Status::False,
                reasons::STANDBY_NOT_READY,
                Some(types::RECONCILING),
            ),
            (
                DomainPhase::Provisioning,
                Status::False,
                reasons::DIRECTORY_NOT_READ,
                Some(types::RECONCILING),
            ),
            (
                DomainPhase::FailingBack,
                Status::True,
                reasons::HANDING_BACK,
                Some(types::RECONCILING),
            ),
            (DomainPhase::Armed, Status::True, reasons::ARMED, None),
            (DomainPhase::Active, Status::True, reasons::SERVING_FROM_STANDBY, None),
            (DomainPhase::Suspended, Status::False, reasons::SUSPENDED, None),
            (DomainPhase::Degraded, Status::False, reasons::FAILOVER_HELD, None),
            (
                DomainPhase::Degraded,
                Status::False,
                reasons::CHILD_CONFLICT,
                Some(types::STALLED),
            ),
            (
                DomainPhase::Degraded,
                Status::False,
                reasons::CHILD_REJECTED,
                Some(types::STALLED),
            ),
            (
                DomainPhase::Error,
                Status::False,
                reasons::INVALID_SPEC,
                Some(types::STALLED),
            ),
            (
                DomainPhase::Error,
                Status::False,
                reasons::DOMAIN_NOT_GRANTED,
                Some(types::STALLED),
            ),
            (
                DomainPhase::Error,
                Status::False,
                reasons::DOMAIN_CLAIMED_ELSEWHERE,
                Some(types::STALLED),
            ),
        ];
        for (phase, status, reason, expected) in cases {
            let shown = kind(domain(phase, &ready(status, reason)));
            assert_eq!(shown, expected.map(|t| (t, reason.to_owned())), "{phase:?} {reason}");
        }
    }

    #[test]
    fn users_reconcile_while_their_standby_or_domain_comes_and_stall_when_a_person_must_act() {
        let yes = covered(Status::True, reasons::COVERED);
        let cases = [
            (ready(Status::True, reasons::PROVISIONED), yes.clone(), None),
            (
                ready(Status::False, reasons::STANDBY_NOT_READY),
                yes.clone(),
                Some((types::RECONCILING, reasons::STANDBY_NOT_READY)),
            ),
            (
                ready(Status::False, reasons::EMERGENCY_PASSWORD_MISSING),
                yes,
                Some((types::STALLED, reasons::EMERGENCY_PASSWORD_MISSING)),
            ),
            (
                ready(Status::False, reasons::NOT_COVERED),
                covered(Status::False, reasons::DOMAIN_NOT_FOUND),
                Some((types::RECONCILING, reasons::DOMAIN_NOT_FOUND)),
            ),
            (
                ready(Status::False, reasons::NOT_COVERED),
                covered(Status::False, reasons::ADDRESS_NOT_IN_DOMAIN),
                Some((types::STALLED, reasons::ADDRESS_NOT_IN_DOMAIN)),
            ),
        ];
        for (ready, covered, expected) in cases {
            let shown = kind(user(&ready, &covered));
            assert_eq!(
                shown,
                expected.map(|(t, r)| (t, r.to_owned())),
                "{} {}",
                ready.reason,
                covered.reason
            );
        }
    }

    #[test]
    fn the_condition_repeats_the_causes_message() {
        let invalid = ready(Status::False, reasons::INVALID_SPEC);
        let stalled = domain(DomainPhase::Error, &invalid).expect("a Stalled condition");
        assert_eq!(stalled.status, Status::True);
        assert_eq!(stalled.message, invalid.message);
    }
}
