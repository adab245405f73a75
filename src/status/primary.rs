//! What status shows of the primary: the `PrimaryReachable` condition and the probe details
//! in `status.primary`, refreshed only when a user would notice (or for the heartbeat).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::ContinuityDomain;
use crate::api::conditions::{Desired, Status, reasons, types};
use crate::api::domain::{ContinuityDomainStatus, HealthCheck, PrimaryProbeStatus};
use crate::health::probe::Outcome;
use crate::health::tracker::{Health, Visible};

/// `PrimaryReachable`: the latest probe; before this replica's first probe, what the status
/// already says (a restarted operator does not forget), else unknown.
pub fn primary_reachable(
    domain: &ContinuityDomain,
    health: Option<&Health>,
    previous: &ContinuityDomainStatus,
) -> Desired {
    match health {
        Some(health) => match health.last.outcome {
            // Nothing that varies between probes with the same outcome (latency, a banner with
            // the date, which address answered): each write would cause the next. Those go in
            // status.primary, refreshed under the heartbeat rule.
            Outcome::Ok => Desired::new(
                types::PRIMARY_REACHABLE,
                Status::True,
                reasons::REACHABLE,
                format!(
                    "{}:{} accepts SMTP connections",
                    domain.spec.primary.host, domain.spec.primary.port
                ),
            ),
            Outcome::Failed(class) => Desired::new(
                types::PRIMARY_REACHABLE,
                Status::False,
                class.name(),
                format!(
                    "{}:{}: {}",
                    domain.spec.primary.host,
                    domain.spec.primary.port,
                    class.describe()
                ),
            ),
        },
        None => Desired::carried(&previous.conditions, types::PRIMARY_REACHABLE).unwrap_or_else(|| {
            Desired::new(
                types::PRIMARY_REACHABLE,
                Status::Unknown,
                reasons::NOT_PROBED,
                format!("{} has not been health-checked yet", domain.spec.primary.host),
            )
        }),
    }
}

/// The probe details, refreshed only when worth a write (see [`super::domain::compute`]).
pub fn probe_status(
    domain: &ContinuityDomain,
    previous: Option<&PrimaryProbeStatus>,
    health: Option<&Health>,
    now: &Time,
    heartbeat: Duration,
) -> Option<PrimaryProbeStatus> {
    let Some(health) = health else {
        return previous.cloned();
    };
    let fresh = PrimaryProbeStatus {
        last_probe_time: Time(whole_seconds(health.at)),
        result: health.last.outcome.name().to_owned(),
        latency_milliseconds: u64::try_from(health.last.latency.as_millis()).unwrap_or(u64::MAX),
        consecutive_failures: health.consecutive_failures,
        consecutive_successes: health.consecutive_successes,
        detail: Some(health.last.detail.clone()),
    };
    let check = &domain.spec.health_check;
    let refresh = match previous {
        None => true,
        Some(previous) => {
            let age = Duration::try_from(now.0.duration_since(previous.last_probe_time.0)).unwrap_or_default();
            visible(previous, check) != visible(&fresh, check) || age >= heartbeat / 2
        }
    };
    if refresh { Some(fresh) } else { previous.cloned() }
}

fn visible<'a>(probe: &'a PrimaryProbeStatus, check: &HealthCheck) -> Visible<'a> {
    Visible::new(
        &probe.result,
        probe.consecutive_failures,
        probe.consecutive_successes,
        check.failure_threshold,
        check.success_threshold,
    )
}

/// `t` without its fraction of a second. Kubernetes stores times in whole seconds, so a status
/// holding fractions would never equal the one read back, and would be written again.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}
