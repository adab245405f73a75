//! The status of a ContinuityUser.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::ContinuityUser;
use crate::api::conditions::{self, Desired, Status, reasons, types};
use crate::api::user::ContinuityUserStatus;
use crate::coverage::Verdict;
use crate::credentials::Missing;
use crate::status::progress;

/// What the controller found out about a user.
#[derive(Clone, Debug)]
pub struct UserFacts<'a> {
    pub verdict: Verdict,
    /// Whether the user has an emergency password (only looked up for a covered user).
    pub password: Result<(), Missing>,
    /// The domain's `StandbyReady` condition, if it has one.
    pub standby: Option<&'a Condition>,
}

/// Computes the status the user should have.
pub fn compute(user: &ContinuityUser, facts: &UserFacts<'_>, now: &Time) -> ContinuityUserStatus {
    let previous = user.status.clone().unwrap_or_default();
    let address = &user.spec.address;
    let (covered, ready) = match &facts.verdict {
        Verdict::Covered => (
            Desired::new(
                types::COVERED,
                Status::True,
                reasons::COVERED,
                format!("{address} is covered by ContinuityDomain {}", user.spec.domain_ref.name),
            ),
            ready(address, facts),
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
    let kstatus = progress::user(&ready, &covered);
    let desired = [ready, covered].into_iter().chain(kstatus).collect();
    ContinuityUserStatus {
        observed_generation: generation,
        conditions: conditions::settle(&previous.conditions, desired, generation, now),
    }
}

/// `Ready` of a covered user: the mailbox is on a ready standby and the user can log in.
fn ready(address: &str, facts: &UserFacts<'_>) -> Desired {
    if let Err(missing) = &facts.password {
        return Desired::new(
            types::READY,
            Status::False,
            reasons::EMERGENCY_PASSWORD_MISSING,
            format!(
                "{address} receives mail on the standby but cannot log in to the webmail: {}",
                missing.describe()
            ),
        );
    }
    match facts.standby {
        Some(standby) if standby.status == "True" => Desired::new(
            types::READY,
            Status::True,
            reasons::PROVISIONED,
            format!("the mailbox of {address} is on the standby, and its emergency password opens the webmail"),
        ),
        Some(standby) => Desired::new(
            types::READY,
            Status::False,
            reasons::STANDBY_NOT_READY,
            format!("the domain's standby is not ready: {}", standby.message),
        ),
        None => Desired::new(
            types::READY,
            Status::False,
            reasons::STANDBY_NOT_PROVISIONED,
            "covered, but the mailbox cannot exist yet: the domain's standby mail stack is not provisioned",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find;
    use crate::testing::fixture;
    use k8s_openapi::jiff::Timestamp;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn standby(status: &str) -> Condition {
        Condition {
            type_: types::STANDBY_READY.into(),
            status: status.into(),
            reason: reasons::MAIL_POD_NOT_READY.into(),
            message: "StatefulSet x: the mail pod (Postfix, Dovecot) is not ready".into(),
            last_transition_time: at(1),
            observed_generation: Some(1),
        }
    }

    fn reason(status: &ContinuityUserStatus, type_: &str) -> (String, String) {
        let c = find(&status.conditions, type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_covered_user_is_ready_once_the_standby_is_and_it_has_a_password() {
        let user: ContinuityUser = fixture("user-alice.yaml");
        let (ready, not_ready) = (standby("True"), standby("False"));
        let facts = |password, standby| UserFacts {
            verdict: Verdict::Covered,
            password,
            standby,
        };
        let status = compute(&user, &facts(Ok(()), None), &at(5));
        assert_eq!(
            reason(&status, types::COVERED),
            ("True".into(), reasons::COVERED.into())
        );
        assert_eq!(
            reason(&status, types::READY),
            ("False".into(), reasons::STANDBY_NOT_PROVISIONED.into())
        );
        assert_eq!(status.observed_generation, Some(1));

        let status = compute(&user, &facts(Ok(()), Some(&not_ready)), &at(5));
        assert_eq!(
            reason(&status, types::READY),
            ("False".into(), reasons::STANDBY_NOT_READY.into())
        );
        assert!(
            find(&status.conditions, types::READY)
                .unwrap()
                .message
                .contains("not ready")
        );

        let status = compute(&user, &facts(Ok(()), Some(&ready)), &at(5));
        assert_eq!(
            reason(&status, types::READY),
            ("True".into(), reasons::PROVISIONED.into())
        );

        let missing = Missing::SecretNotFound {
            secret: "alice-emergency".into(),
        };
        let status = compute(&user, &facts(Err(missing), Some(&ready)), &at(5));
        assert_eq!(
            reason(&status, types::READY),
            ("False".into(), reasons::EMERGENCY_PASSWORD_MISSING.into())
        );
        let message = &find(&status.conditions, types::READY).unwrap().message;
        assert!(message.contains("Secret alice-emergency does not exist"), "{message}");
    }

    #[test]
    fn the_reason_for_not_being_covered_is_the_condition_reason() {
        let user: ContinuityUser = fixture("user-alice.yaml");
        let facts = UserFacts {
            verdict: Verdict::NotCovered {
                reason: reasons::DOMAIN_NOT_FOUND,
                message: "ContinuityDomain example-com does not exist in this namespace".into(),
            },
            password: Ok(()),
            standby: None,
        };
        let status = compute(&user, &facts, &at(5));
        let covered = find(&status.conditions, types::COVERED).unwrap();
        assert_eq!(covered.reason, reasons::DOMAIN_NOT_FOUND);
        assert!(covered.message.contains("does not exist"));
        assert_eq!(reason(&status, types::READY).1, reasons::NOT_COVERED);
    }
}
