//! The failover/failback state machine (SPEC 4.3), pure. Its state is the routing recorded in
//! the domain's status (target and since when) plus what this replica has seen of the primary
//! since it started probing; so a restarted operator continues where the last one stopped, and
//! never flips just because it has no probe history yet.
//!
//! - Automatic: `failureThreshold` consecutive counted failures route mail to the standby;
//!   `successThreshold` consecutive successes route it back. Either flip waits until
//!   `minFlipIntervalSeconds` have passed since the last one, so a flapping primary cannot
//!   bounce mail back and forth faster than that (a primary failing meanwhile is the
//!   gateway's to queue for, as before any failover).
//! - A failover also needs a ready standby (one that is not bounces the mail the gateway would
//!   queue) and failures that are not [widespread](crate::health::widespread) (the operator's
//!   own network failing looks like every primary failing at once).
//! - Manual: `activation.override` decides at once; health is still probed and reported.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::reasons;
use crate::api::domain::{ActivationMode, ManualOverride, RouteTarget, RoutingStatus};
use crate::api::{ContinuityDomainSpec, ContinuityDomainStatus};
use crate::health::tracker::Health;
use crate::health::widespread::Threshold;

/// A change of route made by this decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flip {
    ToStandby,
    ToPrimary,
}

/// Where mail goes, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub target: RouteTarget,
    /// Since when mail goes there.
    pub since: Timestamp,
    pub flip: Option<Flip>,
    /// Reason and message of the `ContinuityActive` condition.
    pub reason: &'static str,
    pub message: String,
    /// Decide again after this long: a failback waits for the minimum time between flips.
    pub recheck_in: Option<Duration>,
}

/// What the domain's status records of its routing: the state of the machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recorded<'a> {
    pub route: Option<&'a RoutingStatus>,
    /// When mail last returned to the primary.
    pub last_failback: Option<Timestamp>,
}

impl<'a> Recorded<'a> {
    /// What `status` records.
    pub fn of(status: Option<&'a ContinuityDomainStatus>) -> Self {
        Recorded {
            route: status.and_then(|s| s.routing.as_ref()),
            last_failback: status
                .and_then(|s| s.continuity.as_ref())
                .and_then(|c| c.last_deactivation_time.as_ref())
                .map(|t| t.0),
        }
    }

    /// Only a route, never failed back.
    pub fn route(route: &'a RoutingStatus) -> Self {
        Recorded {
            route: Some(route),
            last_failback: None,
        }
    }
}

/// What a failover needs besides a failing primary.
#[derive(Clone, Copy, Debug)]
pub struct Gate<'a> {
    /// Whether the standby could serve.
    pub standby_ready: bool,
    /// Set while failures are widespread: the threshold they passed, to explain the hold.
    pub widespread: Option<&'a Threshold>,
}

impl Gate<'static> {
    /// Nothing stands in a failover's way.
    pub const OPEN: Gate<'static> = Gate {
        standby_ready: true,
        widespread: None,
    };
}

/// Decides the route at `now` from the spec, what status records, the observed health and
/// what else a failover needs (`gate`). A failover to a standby that is not ready is held: the
/// gateway queues mail for an unreachable primary, a standby that cannot take it bounces it.
pub fn decide(
    spec: &ContinuityDomainSpec,
    recorded: Recorded<'_>,
    health: Option<&Health>,
    gate: Gate<'_>,
    now: Timestamp,
) -> Decision {
    let previous = recorded.route;
    let current = previous.map_or(RouteTarget::Primary, |r| r.target);
    let since = previous.map_or(now, |r| r.since.0);
    let stay = |reason: &'static str, message: String| Decision {
        target: current,
        since,
        flip: None,
        reason,
        message,
        recheck_in: None,
    };
    let flip_to = |target: RouteTarget, reason: &'static str, message: String| Decision {
        target,
        since: now,
        flip: Some(match target {
            RouteTarget::Standby => Flip::ToStandby,
            RouteTarget::Primary => Flip::ToPrimary,
        }),
        reason,
        message,
        recheck_in: None,
    };

    if spec.activation.mode == ActivationMode::Manual {
        let wanted = match spec.activation.manual_override {
            Some(ManualOverride::Active) => RouteTarget::Standby,
            _ => RouteTarget::Primary,
        };
        let message = match wanted {
            RouteTarget::Standby => "activation.override is Active: mail goes to the standby".to_owned(),
            RouteTarget::Primary => "activation.override is Inactive: mail goes to the primary".to_owned(),
        };
        return if wanted == current {
            stay(reasons::MANUAL_OVERRIDE, message)
        } else {
            flip_to(wanted, reasons::MANUAL_OVERRIDE, message)
        };
    }

    let check = &spec.health_check;
    let (failures, successes) = health.map_or((0, 0), |h| (h.consecutive_failures, h.consecutive_successes));
    let last = health
        .map(|h| format!("{}: {}", h.last.outcome.name(), h.last.detail))
        .unwrap_or_default();
    let hold = Duration::from_secs(check.min_flip_interval_seconds.into());
    let held_since = |flipped: Timestamp| {
        let elapsed = Duration::try_from(now.duration_since(flipped)).unwrap_or_default();
        (elapsed < hold).then(|| hold - elapsed)
    };
    let failing = failures >= check.failure_threshold;
    if current == RouteTarget::Primary
        && failing
        && let Some(threshold) = gate.widespread
    {
        return stay(reasons::FAILOVER_HELD, threshold.explain());
    }
    match current {
        RouteTarget::Primary if failing && !gate.standby_ready => stay(
            reasons::FAILOVER_BLOCKED,
            // No count in the message: it must read the same at every probe until it changes.
            "the primary is failing health checks, but the standby is not ready: mail stays with the primary, queued by the gateway".to_owned(),
        ),
        RouteTarget::Primary if failing => {
            match recorded.last_failback.and_then(|back| Some((back, held_since(back)?))) {
                Some((back, remaining)) => Decision {
                    recheck_in: Some(remaining),
                    ..stay(
                        reasons::FAILOVER_PENDING,
                        format!(
                            "the primary is failing health checks; mail goes to the standby at {}, {}s after the last flip",
                            back + hold,
                            hold.as_secs()
                        ),
                    )
                },
                None => flip_to(
                    RouteTarget::Standby,
                    reasons::PRIMARY_UNREACHABLE,
                    format!(
                        "the primary failed {failures} consecutive health checks (last {last}); mail goes to the standby"
                    ),
                ),
            }
        }
        RouteTarget::Primary => stay(
            reasons::PRIMARY_SERVING,
            format!(
                "mail goes to the primary; continuity activates after {} consecutive failed health checks",
                check.failure_threshold
            ),
        ),
        RouteTarget::Standby if successes >= check.success_threshold => {
            if let Some(remaining) = held_since(since) {
                Decision {
                    recheck_in: Some(remaining),
                    ..stay(
                        reasons::FAILBACK_PENDING,
                        // A moment, not a countdown or a count: the message must read the same
                        // at every reconcile until then.
                        format!(
                            "the primary is healthy again; mail returns to it at {}, {}s after the last flip",
                            since + hold,
                            hold.as_secs()
                        ),
                    )
                }
            } else {
                flip_to(
                    RouteTarget::Primary,
                    reasons::PRIMARY_SERVING,
                    format!("the primary passed {successes} consecutive health checks; mail goes to the primary again"),
                )
            }
        }
        RouteTarget::Standby => stay(
            reasons::PRIMARY_UNREACHABLE,
            format!(
                "mail goes to the standby until the primary passes {} consecutive health checks",
                check.success_threshold
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ContinuityDomain;
    use crate::api::domain::ProbeFailureClass;
    use crate::health::probe::{Outcome, Report};
    use crate::testing::fixture;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const NOT_READY: Gate<'static> = Gate {
        standby_ready: false,
        widespread: None,
    };

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn health(failures: u32, successes: u32) -> Health {
        Health {
            last: Report {
                outcome: if failures > 0 {
                    Outcome::Failed(ProbeFailureClass::Refused)
                } else {
                    Outcome::Ok
                },
                latency: Duration::from_millis(1),
                detail: "connection refused".into(),
            },
            at: at(0),
            consecutive_failures: failures,
            consecutive_successes: successes,
            streak: failures.max(successes),
        }
    }

    fn routed(target: RouteTarget, since: i64) -> RoutingStatus {
        RoutingStatus {
            target,
            since: Time(at(since)),
            next_hop: None,
        }
    }

    /// Minimal fixture: failureThreshold 3, successThreshold 3, minFlipIntervalSeconds 60.
    fn spec() -> ContinuityDomainSpec {
        fixture::<ContinuityDomain>("domain-minimal.yaml").spec
    }

    #[test]
    fn fails_over_at_the_threshold_and_not_before() {
        let primary = routed(RouteTarget::Primary, 0);
        let below = decide(
            &spec(),
            Recorded::route(&primary),
            Some(&health(2, 0)),
            Gate::OPEN,
            at(100),
        );
        assert_eq!((below.target, below.flip), (RouteTarget::Primary, None));
        let at_threshold = decide(
            &spec(),
            Recorded::route(&primary),
            Some(&health(3, 0)),
            Gate::OPEN,
            at(100),
        );
        assert_eq!(
            (at_threshold.target, at_threshold.flip),
            (RouteTarget::Standby, Some(Flip::ToStandby))
        );
        assert_eq!(at_threshold.since, at(100));
        assert!(
            at_threshold.message.contains("3 consecutive"),
            "{}",
            at_threshold.message
        );
    }

    #[test]
    fn fails_back_only_after_the_success_threshold_and_the_hold_time() {
        let standby = routed(RouteTarget::Standby, 1000);
        let too_few = decide(
            &spec(),
            Recorded::route(&standby),
            Some(&health(0, 2)),
            Gate::OPEN,
            at(2000),
        );
        assert_eq!(too_few.flip, None);
        let too_soon = decide(
            &spec(),
            Recorded::route(&standby),
            Some(&health(0, 3)),
            Gate::OPEN,
            at(1030),
        );
        assert_eq!((too_soon.flip, too_soon.reason), (None, reasons::FAILBACK_PENDING));
        assert_eq!(too_soon.recheck_in, Some(Duration::from_secs(30)));
        let later = decide(
            &spec(),
            Recorded::route(&standby),
            Some(&health(0, 4)),
            Gate::OPEN,
            at(1045),
        );
        assert_eq!(later.message, too_soon.message, "no countdown in the message");
        let after_hold = decide(
            &spec(),
            Recorded::route(&standby),
            Some(&health(0, 3)),
            Gate::OPEN,
            at(1060),
        );
        assert_eq!(
            (after_hold.target, after_hold.flip),
            (RouteTarget::Primary, Some(Flip::ToPrimary))
        );
    }

    #[test]
    fn no_probe_history_never_flips() {
        // A restarted operator: routing comes from status, counters start at zero.
        for route in [routed(RouteTarget::Standby, 0), routed(RouteTarget::Primary, 0)] {
            let decision = decide(&spec(), Recorded::route(&route), None, Gate::OPEN, at(10_000));
            assert_eq!((decision.target, decision.flip), (route.target, None));
            assert_eq!(decision.since, at(0));
        }
        let fresh = decide(&spec(), Recorded::default(), None, Gate::OPEN, at(5));
        assert_eq!((fresh.target, fresh.since), (RouteTarget::Primary, at(5)));
    }

    #[test]
    fn manual_mode_follows_the_override_whatever_the_health() {
        let mut manual = spec();
        manual.activation.mode = ActivationMode::Manual;
        manual.activation.manual_override = Some(ManualOverride::Active);
        let on = decide(
            &manual,
            Recorded::route(&routed(RouteTarget::Primary, 0)),
            Some(&health(0, 50)),
            NOT_READY, // a person decides, whatever the standby's readiness
            at(1),
        );
        assert_eq!(
            (on.target, on.flip, on.reason),
            (RouteTarget::Standby, Some(Flip::ToStandby), reasons::MANUAL_OVERRIDE)
        );
        manual.activation.manual_override = Some(ManualOverride::Inactive);
        let off = decide(
            &manual,
            Recorded::route(&routed(RouteTarget::Standby, 0)),
            Some(&health(50, 0)),
            Gate::OPEN,
            at(1),
        );
        assert_eq!((off.target, off.flip), (RouteTarget::Primary, Some(Flip::ToPrimary)));
    }

    /// A primary that goes down and up every few seconds: flips stay within what the hold time
    /// allows (one failover and one failback per hold period at most).
    #[test]
    fn a_flapping_primary_flips_no_more_than_the_hold_time_allows() {
        let spec = spec(); // thresholds 3/3, hold 60 s, probes every 3 s
        let mut route = routed(RouteTarget::Primary, 0);
        let mut last_failback = None;
        let (mut failures, mut successes, mut flips) = (0, 0, Vec::new());
        for tick in 0..400 {
            let now = 3 * tick; // seconds
            // Down for 4 probes, up for 4 probes, forever.
            if (tick / 4) % 2 == 0 {
                failures += 1;
                successes = 0;
            } else {
                successes += 1;
                failures = 0;
            }
            let recorded = Recorded {
                route: Some(&route),
                last_failback,
            };
            let decision = decide(&spec, recorded, Some(&health(failures, successes)), Gate::OPEN, at(now));
            if let Some(flip) = decision.flip {
                flips.push(now);
                if flip == Flip::ToPrimary {
                    last_failback = Some(at(now));
                }
            }
            route = routed(decision.target, decision.since.as_second());
        }
        assert!(
            flips.windows(2).all(|pair| pair[1] - pair[0] >= 60),
            "two flips within the hold time: {flips:?}"
        );
        assert!(flips.len() >= 2, "it does fail over and back");
    }

    #[test]
    fn no_failover_to_a_standby_that_is_not_ready() {
        let primary = routed(RouteTarget::Primary, 0);
        let blocked = decide(
            &spec(),
            Recorded::route(&primary),
            Some(&health(9, 0)),
            NOT_READY,
            at(100),
        );
        assert_eq!(
            (blocked.target, blocked.flip, blocked.reason),
            (RouteTarget::Primary, None, reasons::FAILOVER_BLOCKED)
        );
        let later = decide(
            &spec(),
            Recorded::route(&primary),
            Some(&health(12, 0)),
            NOT_READY,
            at(103),
        );
        assert_eq!(
            later.message, blocked.message,
            "no count in the message: no write per probe"
        );
        let ready = decide(
            &spec(),
            Recorded::route(&primary),
            Some(&health(9, 0)),
            Gate::OPEN,
            at(101),
        );
        assert_eq!(ready.flip, Some(Flip::ToStandby));
    }

    #[test]
    fn widespread_failures_hold_failovers_but_not_failbacks() {
        let threshold = Threshold::default();
        let widespread = Gate {
            widespread: Some(&threshold),
            ..Gate::OPEN
        };
        let primary = routed(RouteTarget::Primary, 0);
        let held = decide(
            &spec(),
            Recorded::route(&primary),
            Some(&health(9, 0)),
            widespread,
            at(100),
        );
        assert_eq!(
            (held.target, held.flip, held.reason),
            (RouteTarget::Primary, None, reasons::FAILOVER_HELD)
        );
        let later = decide(
            &spec(),
            Recorded::route(&primary),
            Some(&health(30, 0)),
            widespread,
            at(190),
        );
        assert_eq!(
            later.message, held.message,
            "no count in the message: no write per probe"
        );
        let below = decide(
            &spec(),
            Recorded::route(&primary),
            Some(&health(1, 0)),
            widespread,
            at(100),
        );
        assert_eq!(
            below.reason,
            reasons::PRIMARY_SERVING,
            "nothing to hold below the threshold"
        );
        let standby = routed(RouteTarget::Standby, 0);
        let back = decide(
            &spec(),
            Recorded::route(&standby),
            Some(&health(0, 3)),
            widespread,
            at(1000),
        );
        assert_eq!(back.flip, Some(Flip::ToPrimary));
    }

    #[test]
    fn a_failover_right_after_a_failback_waits_for_the_hold_time() {
        let back = routed(RouteTarget::Primary, 1000);
        let recorded = Recorded {
            route: Some(&back),
            last_failback: Some(at(1000)),
        };
        let too_soon = decide(&spec(), recorded, Some(&health(3, 0)), Gate::OPEN, at(1030));
        assert_eq!(
            (too_soon.target, too_soon.flip, too_soon.reason),
            (RouteTarget::Primary, None, reasons::FAILOVER_PENDING)
        );
        assert_eq!(too_soon.recheck_in, Some(Duration::from_secs(30)));
        let later = decide(&spec(), recorded, Some(&health(9, 0)), Gate::OPEN, at(1045));
        assert_eq!(later.message, too_soon.message, "no countdown in the message");
        let after_hold = decide(&spec(), recorded, Some(&health(3, 0)), Gate::OPEN, at(1060));
        assert_eq!(after_hold.flip, Some(Flip::ToStandby));
    }
}
