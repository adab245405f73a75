//! What status shows of the primary: the `PrimaryReachable` condition and the probe details
//! in `status.primary`. Both change only when a user would notice: the condition once a new
//! result has repeated up to its threshold (a primary flapping below its thresholds changes
//! nothing), the details with the condition, a flip, or the heartbeat. Live probe data
//! (every probe's time, latency and the runs of results) is in the metrics.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::ContinuityDomain;
use crate::api::conditions::{Desired, Status, reasons, types};
use crate::api::domain::{ContinuityDomainStatus, PrimaryProbeStatus};
use crate::health::probe::Outcome;
use crate::health::tracker::Health;

/// `PrimaryReachable`: the latest probe once its result has repeated up to its threshold;
/// until then, and before this replica's first probe, what the status already says (a
/// restarted operator neither forgets nor rewrites it), else the first result.
pub fn primary_reachable(
    domain: &ContinuityDomain,
    health: Option<&Health>,
    previous: &ContinuityDomainStatus,
) -> Desired {
    let primary = &domain.spec.primary;
    let target = format!("{}:{}", primary.host, primary.port);
    let carried = Desired::carried(&previous.conditions, types::PRIMARY_REACHABLE);
    let check = &domain.spec.health_check;
    match (health, carried) {
        // Kept until the new result is believed, if it is a result about this server (the
        // spec may have named another since).
        (Some(health), Some(carried))
            if !health.settled(check.failure_threshold, check.success_threshold)
                && carried.reason != reasons::NOT_PROBED
                && carried.message.starts_with(&target) =>
        {
            carried
        }
        (Some(health), _) => match health.last.outcome {
            // Nothing that varies between probes with the same outcome (latency, a banner with
            // the date, which address answered): each write would cause the next.
            Outcome::Ok => Desired::new(
                types::PRIMARY_REACHABLE,
                Status::True,
                reasons::REACHABLE,
                format!("{target} accepts SMTP connections"),
            ),
            Outcome::Failed(class) => Desired::new(
                types::PRIMARY_REACHABLE,
                Status::False,
                class.name(),
                format!("{target}: {}", class.describe()),
            ),
        },
        (None, Some(carried)) => carried,
        (None, None) => Desired::new(
            types::PRIMARY_REACHABLE,
            Status::Unknown,
            reasons::NOT_PROBED,
            format!("{} has not been health-checked yet", primary.host),
        ),
    }
}

/// The probe details: refreshed when `noteworthy` (the condition or the route changed), and
/// otherwise once they are a `heartbeat` old (a tenth early, so that the reconcile the
/// heartbeat asks for finds them due); never when `heartbeat` is zero.
pub fn probe_status(
    previous: Option<&PrimaryProbeStatus>,
    health: Option<&Health>,
    now: &Time,
    heartbeat: Duration,
    noteworthy: bool,
) -> Option<PrimaryProbeStatus> {
    let Some(health) = health else {
        return previous.cloned();
    };
    let due = |previous: &PrimaryProbeStatus| {
        let age = Duration::try_from(now.0.duration_since(previous.last_probe_time.0)).unwrap_or_default();
        !heartbeat.is_zero() && age >= heartbeat - heartbeat / 10
    };
    match previous {
        Some(previous) if !noteworthy && !due(previous) => Some(previous.clone()),
        _ => Some(PrimaryProbeStatus {
            last_probe_time: Time(whole_seconds(health.at)),
            result: health.last.outcome.name().to_owned(),
            latency_milliseconds: u64::try_from(health.last.latency.as_millis()).unwrap_or(u64::MAX),
            consecutive_failures: health.consecutive_failures,
            consecutive_successes: health.consecutive_successes,
            detail: Some(health.last.detail.clone()),
        }),
    }
}

/// `t` without its fraction of a second. Kubernetes stores times in whole seconds, so a status
/// holding fractions would never equal the one read back, and would be written again.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}
