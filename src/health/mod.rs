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

use crate::api::ContinuityDomainSpec;
use crate::api::domain::TlsMode;
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
