//! Health checks of the customers' primary servers: the SMTP probe ([`probe`]), the counting
//! of results ([`tracker`]) and the scheduler that runs every domain's probes ([`scheduler`]).

pub mod networks;
pub mod probe;
pub mod resolver;
pub mod scheduler;
pub mod tracker;
pub mod widespread;

use std::sync::Arc;
use std::time::Duration;

use crate::api::domain::{DomainPhase, TlsMode};
use crate::api::{ContinuityDomain, ContinuityDomainSpec};
use networks::ProbeNetworks;
use scheduler::{Registration, TlsCheck};

/// How a domain's primary is probed, from its spec, within the provider's `networks`.
pub fn registration(spec: &ContinuityDomainSpec, heartbeat: Duration, networks: &Arc<ProbeNetworks>) -> Registration {
    let check = &spec.health_check;
    Registration {
        target: probe::Target {
            host: spec.primary.host.clone(),
            port: spec.primary.port,
            timeout: Duration::from_secs(check.timeout_seconds.into()),
            networks: networks.clone(),
        },
        period: Duration::from_secs(check.period_seconds.into()),
        fast_retry: check.fast_retry_milliseconds.map(|ms| Duration::from_millis(ms.into())),
        policy: tracker::Policy {
            failure_threshold: check.failure_threshold,
            success_threshold: check.success_threshold,
            failure_classes: check.failure_classes.clone(),
            heartbeat,
        },
        tls: (spec.primary.tls == TlsMode::Required).then(|| TlsCheck {
            period: Duration::from_secs(check.tls_period_seconds.into()),
            ca_bundle: spec.primary.ca_bundle.clone(),
        }),
    }
}

/// How to probe a domain whose status says it acted on this very spec (its generation), from
/// the domain alone: the watch resumes its probes the moment it sees it (after a restart, or
/// a relist), whatever the reconcile queue holds. Probes must not wait for a reconcile turn:
/// with thousands of domains queued, a primary failing meanwhile would go unnoticed. The
/// reconcile, when it comes, registers or deregisters as the whole picture says.
pub fn resumed(domain: &ContinuityDomain, heartbeat: Duration, networks: &Arc<ProbeNetworks>) -> Option<Registration> {
    let status = domain.status.as_ref()?;
    let acted = matches!(
        status.phase?,
        DomainPhase::Provisioning
            | DomainPhase::Armed
            | DomainPhase::Degraded
            | DomainPhase::Active
            | DomainPhase::FailingBack
    );
    let current = status.observed_generation.is_some() && status.observed_generation == domain.metadata.generation;
    (acted && current && domain.metadata.deletion_timestamp.is_none() && !domain.spec.suspend)
        .then(|| registration(&domain.spec, heartbeat, networks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::domain::ContinuityDomainStatus;
    use crate::testing::fixture;

    fn with_status(phase: DomainPhase, observed: i64) -> ContinuityDomain {
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.status = Some(ContinuityDomainStatus {
            phase: Some(phase),
            observed_generation: Some(observed),
            ..ContinuityDomainStatus::default()
        });
        domain
    }

    #[test]
    fn a_domain_that_acted_on_its_current_spec_is_probed_from_the_watch() {
        let networks = Arc::default();
        let heartbeat = Duration::from_secs(600);
        let armed = with_status(DomainPhase::Armed, 1);
        assert_eq!(
            resumed(&armed, heartbeat, &networks),
            Some(registration(&armed.spec, heartbeat, &networks))
        );
        assert!(resumed(&with_status(DomainPhase::Active, 1), heartbeat, &networks).is_some());
        assert!(
            resumed(&with_status(DomainPhase::Armed, 0), heartbeat, &networks).is_none(),
            "the spec changed since: the reconcile decides"
        );
        assert!(resumed(&with_status(DomainPhase::Error, 1), heartbeat, &networks).is_none());
        assert!(resumed(&with_status(DomainPhase::Suspended, 1), heartbeat, &networks).is_none());
        let fresh: ContinuityDomain = fixture("domain-minimal.yaml");
        assert!(resumed(&fresh, heartbeat, &networks).is_none(), "never reconciled");
    }
}
