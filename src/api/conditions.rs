//! The condition vocabulary (types and reasons) and the one rule for carrying conditions from
//! one status to the next: `lastTransitionTime` moves only when a condition's status flips.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    /// The resource does what it is for: the domain is armed or active / the user is served.
    pub const READY: &str = "Ready";
    /// The standby mail stack is provisioned and ready.
    pub const STANDBY_READY: &str = "StandbyReady";
    /// The latest health checks reach the primary.
    pub const PRIMARY_REACHABLE: &str = "PrimaryReachable";
    /// Mail for the domain is routed to the standby.
    pub const CONTINUITY_ACTIVE: &str = "ContinuityActive";
    /// Another ContinuityDomain claimed the same mail domain first (negative polarity).
    pub const CONFLICT: &str = "Conflict";
    /// The user is covered by the domain's Continuity Service.
    pub const COVERED: &str = "Covered";
    /// The domain is being deleted (present only then): whether it waits for held mail.
    pub const DEACTIVATING: &str = "Deactivating";
    /// The domain's LDAP directory was read the last time it was asked (present only for a
    /// domain whose users come from LDAP).
    pub const DIRECTORY_REACHABLE: &str = "DirectoryReachable";
    /// `spec.users.scope` asks for `AllUsers`, which would remove the domain's ContinuityUsers:
    /// present (True) only while the switch waits for confirmation.
    pub const SCOPE_CHANGE_NEEDS_CONFIRMATION: &str = "ScopeChangeNeedsConfirmation";
    /// kstatus: the operator is still working towards the spec (present only while True).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: nothing moves until a person changes something (present only while True).
    pub const STALLED: &str = "Stalled";
}

/// Condition reasons, CamelCase, a stable API.
pub mod reasons {
    /// The spec breaks a rule the API server could not enforce (see the message).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// `spec.domain` differs from the domain already claimed.
    pub const DOMAIN_IMMUTABLE: &str = "DomainImmutable";
    /// Another ContinuityDomain claims the same mail domain and was there first.
    pub const DOMAIN_CLAIMED_ELSEWHERE: &str = "DomainClaimedElsewhere";
    /// No other ContinuityDomain claims the mail domain.
    pub const DOMAIN_CLAIM_ACCEPTED: &str = "DomainClaimAccepted";
    /// Reconciliation is paused by `spec.suspend`.
    pub const SUSPENDED: &str = "Suspended";
    /// The standby mail stack does not exist yet (so continuity cannot activate either).
    pub const STANDBY_NOT_PROVISIONED: &str = "StandbyNotProvisioned";
    /// No health check of the primary has run yet.
    pub const NOT_PROBED: &str = "NotProbed";
    /// The latest health check of the primary succeeded.
    pub const REACHABLE: &str = "Reachable";
    /// Automatic mode, routing to the primary.
    pub const PRIMARY_SERVING: &str = "PrimaryServing";
    /// Automatic mode, routing to the standby because the primary failed its health checks.
    pub const PRIMARY_UNREACHABLE: &str = "PrimaryUnreachable";
    /// The primary is healthy again; routing returns to it once the minimum time between flips
    /// has passed.
    pub const FAILBACK_PENDING: &str = "FailbackPending";
    /// The primary is failing; routing moves to the standby once the minimum time between
    /// flips has passed since the last failback.
    pub const FAILOVER_PENDING: &str = "FailoverPending";
    /// The primary is failing but the standby is not ready: mail stays with the primary.
    pub const FAILOVER_BLOCKED: &str = "FailoverBlocked";
    /// The primary is failing, but so are too many other primaries at once (likely the
    /// operator's own network): failovers are held and mail stays with the primary.
    pub const FAILOVER_HELD: &str = "FailoverHeld";
    /// Manual mode: `activation.override` decides.
    pub const MANUAL_OVERRIDE: &str = "ManualOverride";
    /// The API server refused a child object the operator built (see the message).
    pub const CHILD_REJECTED: &str = "ChildRejected";
    /// The provider has not granted the namespace the domain's mail domain.
    pub const DOMAIN_NOT_GRANTED: &str = "DomainNotGranted";
    /// A child's name is taken by an object this domain does not control; it is left alone.
    pub const CHILD_CONFLICT: &str = "ChildConflict";
    /// Event: mail now goes to the standby.
    pub const CONTINUITY_ACTIVATED: &str = "ContinuityActivated";
    /// Event: mail goes to the primary again.
    pub const CONTINUITY_DEACTIVATED: &str = "ContinuityDeactivated";
    /// The referenced ContinuityDomain does not exist.
    pub const DOMAIN_NOT_FOUND: &str = "DomainNotFound";
    /// The address does not belong to the referenced domain.
    pub const ADDRESS_NOT_IN_DOMAIN: &str = "AddressNotInDomain";
    /// The domain covers all users from its directory; single users do not apply.
    pub const DOMAIN_SCOPE_IS_ALL_USERS: &str = "DomainScopeIsAllUsers";
    /// The referenced domain cannot act (invalid spec, conflict or suspended).
    pub const DOMAIN_NOT_ACTING: &str = "DomainNotActing";
    /// An older ContinuityUser already adds the same address to the domain.
    pub const DUPLICATE_ADDRESS: &str = "DuplicateAddress";
    /// The user is covered by the domain's Continuity Service.
    pub const COVERED: &str = "Covered";
    /// The user is not covered (see the `Covered` condition).
    pub const NOT_COVERED: &str = "NotCovered";
    /// The standby's mail pod, webmail and Ingress are ready / the user's mailbox is on it.
    pub const PROVISIONED: &str = "Provisioned";
    /// The mail pod (Postfix, Dovecot) is not ready or not on the current revision.
    pub const MAIL_POD_NOT_READY: &str = "MailPodNotReady";
    /// The webmail pods are not all available on the current revision.
    pub const WEBMAIL_NOT_READY: &str = "WebmailNotReady";
    /// No ingress controller has given the webmail Ingress an address yet.
    pub const INGRESS_PENDING: &str = "IngressPending";
    /// Mail routes to the primary and the standby is ready to take over.
    pub const ARMED: &str = "Armed";
    /// Mail routes to the standby, which serves the covered users.
    pub const SERVING_FROM_STANDBY: &str = "ServingFromStandby";
    /// Back on the primary, held mail is being handed back to it.
    pub const HANDING_BACK: &str = "HandingBack";
    /// Deletion waits for held mail to reach the primary.
    pub const HAND_BACK_PENDING: &str = "HandBackPending";
    /// Deletion goes ahead: no held mail waits.
    pub const HANDED_BACK: &str = "HandedBack";
    /// Deletion goes ahead although held mail waits (the force-delete annotation).
    pub const DELETION_FORCED: &str = "DeletionForced";
    /// The covered users come from a directory that has not been read yet.
    pub const DIRECTORY_NOT_READ: &str = "DirectoryNotRead";
    /// The directory answered the last read.
    pub const DIRECTORY_READ: &str = "DirectoryRead";
    /// The directory could not be reached (name, connection or TLS).
    pub const DIRECTORY_UNREACHABLE: &str = "DirectoryUnreachable";
    /// The directory refused the bind.
    pub const DIRECTORY_BIND_FAILED: &str = "DirectoryBindFailed";
    /// The directory refused or broke off the search.
    pub const DIRECTORY_SEARCH_FAILED: &str = "DirectorySearchFailed";
    /// The bind Secret is missing or lacks a key.
    pub const BIND_SECRET_INVALID: &str = "BindSecretInvalid";
    /// The switch to `AllUsers` waits for the confirmation annotation.
    pub const SCOPE_CHANGE_NEEDS_CONFIRMATION: &str = "ScopeChangeNeedsConfirmation";
    /// The switch to `AllUsers` was confirmed and carried out (an Event's reason).
    pub const SCOPE_CHANGED: &str = "ScopeChanged";
    /// The standby is provisioned but not ready (see `StandbyReady`).
    pub const STANDBY_NOT_READY: &str = "StandbyNotReady";
    /// The user receives mail on the standby but has no emergency password to log in with.
    pub const EMERGENCY_PASSWORD_MISSING: &str = "EmergencyPasswordMissing";
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(value: bool) -> Self {
        if value { Status::True } else { Status::False }
    }
}

/// A condition as a status computation wants it, before timestamps are settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: Status,
    pub reason: Cow<'static, str>,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The condition of `type_` as `previous` holds it, to carry over unchanged.
    pub fn carried(previous: &[Condition], type_: &'static str) -> Option<Self> {
        let condition = find(previous, type_)?;
        let status = match condition.status.as_str() {
            "True" => Status::True,
            "False" => Status::False,
            _ => Status::Unknown,
        };
        Some(Self::new(
            type_,
            status,
            condition.reason.clone(),
            condition.message.clone(),
        ))
    }
}

/// Builds the next condition list. A condition keeps its previous `lastTransitionTime` unless
/// its status flipped (a changed reason or message alone is not a transition), so a status
/// recomputed from unchanged inputs is byte-for-byte the previous one.
pub fn settle(previous: &[Condition], desired: Vec<Desired>, generation: Option<i64>, now: &Time) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|d| {
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == d.type_ && p.status == d.status.as_str())
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: d.type_.to_owned(),
                status: d.status.as_str().to_owned(),
                reason: d.reason.into_owned(),
                message: d.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The conditions of `next` that a user would notice changed since `previous`: new ones, and
/// ones whose status or reason differ. These are what Events are published for.
pub fn changed<'a>(previous: &[Condition], next: &'a [Condition]) -> Vec<&'a Condition> {
    next.iter()
        .filter(|n| find(previous, &n.type_).is_none_or(|p| p.status != n.status || p.reason != n.reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = settle(
            &[],
            vec![Desired::new(types::READY, Status::False, "A", "a")],
            Some(1),
            &at(100),
        );
        assert_eq!(first[0].last_transition_time, at(100));

        // Same status, new reason and message: not a transition.
        let second = settle(
            &first,
            vec![Desired::new(types::READY, Status::False, "B", "b")],
            Some(2),
            &at(200),
        );
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].reason, "B");
        assert_eq!(second[0].observed_generation, Some(2));

        let third = settle(
            &second,
            vec![Desired::new(types::READY, Status::True, "C", "c")],
            Some(2),
            &at(300),
        );
        assert_eq!(third[0].last_transition_time, at(300));
    }

    #[test]
    fn unchanged_inputs_give_identical_conditions() {
        let desired = || vec![Desired::new(types::CONFLICT, Status::False, "X", "m")];
        let first = settle(&[], desired(), Some(3), &at(1));
        let again = settle(&first, desired(), Some(3), &at(999));
        assert_eq!(first, again);
        assert!(changed(&first, &again).is_empty());
    }

    #[test]
    fn changed_reports_new_flipped_and_re_reasoned_conditions() {
        let before = settle(
            &[],
            vec![
                Desired::new(types::READY, Status::False, "A", ""),
                Desired::new(types::CONFLICT, Status::False, "B", ""),
            ],
            None,
            &at(1),
        );
        let after = settle(
            &before,
            vec![
                Desired::new(types::READY, Status::False, "Other", ""),
                Desired::new(types::CONFLICT, Status::False, "B", "new message only"),
                Desired::new(types::COVERED, Status::True, "C", ""),
            ],
            None,
            &at(2),
        );
        let types: Vec<&str> = changed(&before, &after).iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, vec![types::READY, types::COVERED]);
    }
}
