//! Kubernetes Events for what a user would notice: a condition that appeared, flipped or
//! changed its reason. Events are best effort; failing to publish one never fails a reconcile.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use crate::api::ContinuityDomain;
use crate::api::conditions::{self, reasons, types};
use crate::coverage;
use crate::routing::decision::{Decision, Flip};
use crate::telemetry::metrics::{Metrics, Write};

/// Conditions that do not raise Events of their own: the primary's reachability changes with
/// every flapping probe, a routing flip gets its own Event ([`publish_flip`]), and kstatus'
/// conditions repeat `Ready`'s or `Covered`'s reason.
const QUIET_CONDITIONS: [&str; 4] = [
    types::PRIMARY_REACHABLE,
    types::CONTINUITY_ACTIVE,
    types::RECONCILING,
    types::STALLED,
];

/// Reasons that mean something needs a human.
const WARNING_REASONS: [&str; 18] = [
    reasons::FAILOVER_BLOCKED,
    reasons::FAILOVER_HELD,
    reasons::DOMAIN_NOT_GRANTED,
    reasons::CHILD_REJECTED,
    reasons::CHILD_CONFLICT,
    reasons::INVALID_SPEC,
    reasons::DOMAIN_IMMUTABLE,
    reasons::DOMAIN_CLAIMED_ELSEWHERE,
    reasons::DOMAIN_NOT_FOUND,
    reasons::ADDRESS_NOT_IN_DOMAIN,
    reasons::DOMAIN_SCOPE_IS_ALL_USERS,
    reasons::DOMAIN_NOT_ACTING,
    reasons::DUPLICATE_ADDRESS,
    reasons::DIRECTORY_UNREACHABLE,
    reasons::DIRECTORY_BIND_FAILED,
    reasons::DIRECTORY_SEARCH_FAILED,
    reasons::BIND_SECRET_INVALID,
    reasons::SCOPE_CHANGE_NEEDS_CONFIRMATION,
];

/// `Ready` reasons a routing flip brings, whose news the flip's own Event ([`publish_flip`])
/// already tells: one Event per failover, not two (at 5,000 failovers at once, a thousand
/// fewer API writes a minute).
const TOLD_BY_A_FLIP: [&str; 3] = [reasons::SERVING_FROM_STANDBY, reasons::ARMED, reasons::HANDING_BACK];

/// The Events announcing the change from `previous` to `next` conditions: one per distinct
/// reason, since several conditions often flip for one cause. A new object's first status only
/// raises Events for problems; that a fresh domain is not probed yet is no news. With
/// `flipped`, the routing flip's Event tells what its `Ready` change would.
pub fn for_transitions(previous: &[Condition], next: &[Condition], flipped: bool) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    for condition in conditions::changed(previous, next) {
        if QUIET_CONDITIONS.contains(&condition.type_.as_str())
            || (flipped && TOLD_BY_A_FLIP.contains(&condition.reason.as_str()))
        {
            continue;
        }
        let warning = WARNING_REASONS.contains(&condition.reason.as_str());
        if events.iter().any(|e| e.reason == condition.reason) || (previous.is_empty() && !warning) {
            continue;
        }
        events.push(Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: condition.reason.clone(),
            note: Some(truncate(&condition.message, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    events
}

/// Cuts `text` to at most `max` bytes on a character boundary (Event notes are limited to 1 kB).
fn truncate(text: &str, max: usize) -> String {
    const ELLIPSIS: char = '…';
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(ELLIPSIS.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end])
}

/// Publishes the Events for a status change of `object` ([`for_transitions`]).
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    (previous, next): (&[Condition], &[Condition]),
    flipped: bool,
    metrics: &Metrics,
) {
    let reference = object.object_ref(&());
    for event in for_transitions(previous, next, flipped) {
        match recorder.publish(&event, &reference).await {
            Ok(()) => metrics.api_write("Event", Write::Event),
            Err(error) => warn!(%error, reason = %event.reason, "cannot publish Event"),
        }
    }
}

/// Publishes the Event for a routing flip: a Warning when mail goes to the standby (the
/// primary failed, or an administrator switched continuity on), Normal when it returns.
pub async fn publish_flip<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    decision: &Decision,
    metrics: &Metrics,
) {
    let (type_, reason) = match decision.flip {
        Some(Flip::ToStandby) => (EventType::Warning, reasons::CONTINUITY_ACTIVATED),
        Some(Flip::ToPrimary) => (EventType::Normal, reasons::CONTINUITY_DEACTIVATED),
        None => return,
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(&decision.message, 1000)),
        action: "Route".into(),
        secondary: None,
    };
    match recorder.publish(&event, &object.object_ref(&())).await {
        Ok(()) => metrics.api_write("Event", Write::Event),
        Err(error) => warn!(%error, reason, "cannot publish Event"),
    }
}

/// The Event of a confirmed switch to `AllUsers`, naming the ContinuityUsers it removed (at
/// most [`coverage::NAMED_USERS`] of them).
pub async fn publish_scope_change(
    recorder: &Recorder,
    domain: &ContinuityDomain,
    removed: &[String],
    metrics: &Metrics,
) {
    let event = Event {
        type_: EventType::Normal,
        reason: reasons::SCOPE_CHANGED.into(),
        note: Some(truncate(
            &format!(
                "the domain now covers all users of its directory; {} ContinuityUsers removed: {}",
                removed.len(),
                coverage::named(removed)
            ),
            1000,
        )),
        action: "ChangeScope".into(),
        secondary: None,
    };
    match recorder.publish(&event, &domain.object_ref(&())).await {
        Ok(()) => metrics.api_write("Event", Write::Event),
        Err(error) => warn!(%error, "cannot publish Event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{Desired, Status, settle};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn one_event_per_reason_with_the_right_severity() {
        let now = Time(Timestamp::from_second(1).unwrap());
        let before = settle(
            &[],
            vec![Desired::new(
                types::READY,
                Status::False,
                reasons::STANDBY_NOT_PROVISIONED,
                "",
            )],
            None,
            &now,
        );
        let after = settle(
            &before,
            vec![
                Desired::new(
                    types::READY,
                    Status::False,
                    reasons::DOMAIN_CLAIMED_ELSEWHERE,
                    "served by x",
                ),
                Desired::new(
                    types::CONFLICT,
                    Status::True,
                    reasons::DOMAIN_CLAIMED_ELSEWHERE,
                    "claimed by x",
                ),
            ],
            None,
            &now,
        );
        let events = for_transitions(&before, &after, false);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].type_, EventType::Warning);
        assert_eq!(events[0].reason, reasons::DOMAIN_CLAIMED_ELSEWHERE);
        assert_eq!(events[0].note.as_deref(), Some("served by x"));

        assert!(
            for_transitions(&after, &after, false).is_empty(),
            "nothing changed, nothing published"
        );
    }

    #[test]
    fn a_flip_tells_its_ready_change_in_its_own_event() {
        let now = Time(Timestamp::from_second(100).unwrap());
        let ready = |reason: &'static str| vec![Desired::new(types::READY, Status::True, reason, "why")];
        let armed = settle(&[], ready(reasons::ARMED), None, &now);
        let serving = settle(&armed, ready(reasons::SERVING_FROM_STANDBY), None, &now);
        assert_eq!(
            for_transitions(&armed, &serving, false).len(),
            1,
            "without a flip, Ready's change is news"
        );
        assert!(
            for_transitions(&armed, &serving, true).is_empty(),
            "the flip's Event says it"
        );
        let held = settle(
            &armed,
            vec![Desired::new(
                types::READY,
                Status::False,
                reasons::FAILOVER_HELD,
                "held",
            )],
            None,
            &now,
        );
        assert_eq!(
            for_transitions(&armed, &held, true).len(),
            1,
            "a warning is always published"
        );
    }

    #[test]
    fn long_messages_are_cut_to_the_event_limit() {
        let long = "é".repeat(800);
        let cut = truncate(&long, 1000);
        assert!(cut.len() <= 1000);
        assert!(cut.ends_with('…'));
    }
}
