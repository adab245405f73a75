//! The status of a ContinuityUser.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::ContinuityUser;
use crate::api::conditions::{self, Desired, Status, reasons, types};
use crate::api::user::ContinuityUserStatus;
use crate::coverage::Verdict;

/// Computes the status the user should have given the coverage verdict.
pub fn compute(user: &ContinuityUser, verdict: &Verdict, now: &Time) -> ContinuityUserStatus {
    let previous = user.status.clone().unwrap_or_default();
    let (covered, ready) = match verdict {
        Verdict::Covered => (
            Desired::new(
                types::COVERED,
                Status::True,
                reasons::COVERED,
                format!(
                    "{} is covered by ContinuityDomain {}",
                    user.spec.address, user.spec.domain_ref.name
                ),
            ),
            Desired::new(
                types::READY,
                Status::False,
                reasons::STANDBY_NOT_PROVISIONED,
                "covered, but the mailbox cannot exist yet: the domain's standby mail stack is not provisioned",
            ),
        ),
        Verdict::NotCovered { reason, message } => (
            Desired::new(types::COVERED, Status::False, *reason, message.clone()),
            Desired::new(
                types::READY,
                Status::False,
                reasons::NOT_COVERED,
                "not covered; see the Covered condition",
            ),
        ),
    };
    let generation = user.metadata.generation;
    ContinuityUserStatus {
        observed_generation: generation,
        conditions: conditions::settle(&previous.conditions, vec![ready, covered], generation, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find;
    use crate::testing::fixture;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn a_covered_user_is_not_ready_before_its_mailbox_exists() {
        let user: ContinuityUser = fixture("user-alice.yaml");
        let status = compute(&user, &Verdict::Covered, &Time(Timestamp::from_second(5).unwrap()));
        let covered = find(&status.conditions, types::COVERED).unwrap();
        assert_eq!(
            (covered.status.as_str(), covered.reason.as_str()),
            ("True", reasons::COVERED)
        );
        let ready = find(&status.conditions, types::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reasons::STANDBY_NOT_PROVISIONED)
        );
        assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn the_reason_for_not_being_covered_is_the_condition_reason() {
        let user: ContinuityUser = fixture("user-alice.yaml");
        let verdict = Verdict::NotCovered {
            reason: reasons::DOMAIN_NOT_FOUND,
            message: "ContinuityDomain example-com does not exist in this namespace".into(),
        };
        let status = compute(&user, &verdict, &Time(Timestamp::from_second(5).unwrap()));
        let covered = find(&status.conditions, types::COVERED).unwrap();
        assert_eq!(covered.reason, reasons::DOMAIN_NOT_FOUND);
        assert!(covered.message.contains("does not exist"));
        assert_eq!(
            find(&status.conditions, types::READY).unwrap().reason,
            reasons::NOT_COVERED
        );
    }
}
