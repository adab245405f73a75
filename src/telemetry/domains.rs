//! Per-domain state series, mirrored from each ContinuityDomain's status as the API server
//! holds it (the domain watch feeds them, as kube-state-metrics would): what alerts and
//! dashboards select on without reading the API server. One set per domain, removed with it;
//! the phase is one series per domain (the current phase, value 1), the message counts exist
//! only for a domain whose standby ever held mail.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::api::conditions::{self, types};
use crate::api::domain::{ContinuityDomainStatus, DomainPhase, RouteTarget};
use crate::health::tracker::DomainKey;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    name: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    namespace: String,
    name: String,
    state: &'static str,
}

/// What a domain's series show now, to remove exactly those when it changes or goes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Shown {
    phase: Option<&'static str>,
    messages: bool,
    oldest_pending: bool,
    directory: bool,
}

/// The families, registered once.
#[derive(Default)]
pub struct DomainSeries {
    phase: Family<PhaseLabels, Gauge>,
    routed_to_standby: Family<DomainLabels, Gauge>,
    standby_ready: Family<DomainLabels, Gauge>,
    directory_reachable: Family<DomainLabels, Gauge>,
    messages: Family<MessageLabels, Gauge>,
    oldest_pending: Family<DomainLabels, Gauge>,
    shown: Mutex<HashMap<DomainKey, Shown>>,
}

const MESSAGE_STATES: [&str; 4] = ["held", "delivered", "pending", "failed"];

fn phase_name(phase: DomainPhase) -> &'static str {
    match phase {
        DomainPhase::Provisioning => "Provisioning",
        DomainPhase::Armed => "Armed",
        DomainPhase::Degraded => "Degraded",
        DomainPhase::Active => "Active",
        DomainPhase::FailingBack => "FailingBack",
        DomainPhase::Suspended => "Suspended",
        DomainPhase::Error => "Error",
    }
}

fn is_true(status: &ContinuityDomainStatus, type_: &str) -> Option<bool> {
    conditions::find(&status.conditions, type_).map(|c| c.status == "True")
}

impl DomainSeries {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "domain_phase",
            "1 for the phase the domain's status shows (one series per domain)",
            self.phase.clone(),
        );
        registry.register(
            "domain_routed_to_standby",
            "1 while the domain's mail is routed to its standby (continuity active), else 0",
            self.routed_to_standby.clone(),
        );
        registry.register(
            "domain_standby_ready",
            "1 while the domain's standby mail stack is ready to take over, else 0",
            self.standby_ready.clone(),
        );
        registry.register(
            "domain_directory_reachable",
            "1 if the domain's LDAP directory answered the last read, else 0 (domains with an LDAP directory only)",
            self.directory_reachable.clone(),
        );
        registry.register(
            "domain_messages",
            "Messages the domain's standby held for the primary, by state: held (all), delivered, pending, failed",
            self.messages.clone(),
        );
        registry.register(
            "domain_oldest_pending_message_timestamp_seconds",
            "When the oldest message still waiting for the primary was received (Unix time; absent when none waits)",
            self.oldest_pending.clone(),
        );
    }

    /// Shows what `status` says of the domain `key` (nothing while it has no status yet).
    pub fn update(&self, key: &DomainKey, status: Option<&ContinuityDomainStatus>) {
        let Some(status) = status else {
            return self.remove(key);
        };
        let labels = domain_labels(key);
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        let before = shown.get(key).copied().unwrap_or_default();
        let phase = status.phase.map(phase_name);
        if before.phase != phase
            && let Some(old) = before.phase
        {
            self.phase.remove(&phase_labels(&labels, old));
        }
        if let Some(phase) = phase {
            self.phase.get_or_create(&phase_labels(&labels, phase)).set(1);
        }
        let routed = status
            .routing
            .as_ref()
            .is_some_and(|r| r.target == RouteTarget::Standby);
        self.routed_to_standby.get_or_create(&labels).set(i64::from(routed));
        let standby = is_true(status, types::STANDBY_READY).unwrap_or(false);
        self.standby_ready.get_or_create(&labels).set(i64::from(standby));
        let directory = is_true(status, types::DIRECTORY_REACHABLE);
        if let Some(reachable) = directory {
            self.directory_reachable
                .get_or_create(&labels)
                .set(i64::from(reachable));
        } else if before.directory {
            self.directory_reachable.remove(&labels);
        }
        let messages = status.messages.as_ref();
        for (state, count) in MESSAGE_STATES.into_iter().zip(
            messages
                .map(|m| [m.held, m.delivered, m.pending, m.failed])
                .into_iter()
                .flatten(),
        ) {
            self.messages
                .get_or_create(&message_labels(&labels, state))
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        if messages.is_none() && before.messages {
            for state in MESSAGE_STATES {
                self.messages.remove(&message_labels(&labels, state));
            }
        }
        let oldest = messages.and_then(|m| m.oldest_pending_time.as_ref());
        if let Some(time) = oldest {
            self.oldest_pending.get_or_create(&labels).set(time.0.as_second());
        } else if before.oldest_pending {
            self.oldest_pending.remove(&labels);
        }
        shown.insert(
            key.clone(),
            Shown {
                phase,
                messages: messages.is_some(),
                oldest_pending: oldest.is_some(),
                directory: directory.is_some(),
            },
        );
    }

    /// Removes every series of the domain `key`.
    pub fn remove(&self, key: &DomainKey) {
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(was) = shown.remove(key) {
            self.forget(key, was);
        }
    }

    /// Removes the series of every domain not in `present` (after a relist that may have
    /// missed deletions).
    pub fn retain(&self, present: &[DomainKey]) {
        let present: HashSet<&DomainKey> = present.iter().collect();
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        shown.retain(|key, was| {
            let kept = present.contains(key);
            if !kept {
                self.forget(key, *was);
            }
            kept
        });
    }

    fn forget(&self, key: &DomainKey, was: Shown) {
        let labels = domain_labels(key);
        if let Some(phase) = was.phase {
            self.phase.remove(&phase_labels(&labels, phase));
        }
        self.routed_to_standby.remove(&labels);
        self.standby_ready.remove(&labels);
        if was.directory {
            self.directory_reachable.remove(&labels);
        }
        if was.messages {
            for state in MESSAGE_STATES {
                self.messages.remove(&message_labels(&labels, state));
            }
        }
        if was.oldest_pending {
            self.oldest_pending.remove(&labels);
        }
    }
}

fn domain_labels((namespace, name): &DomainKey) -> DomainLabels {
    DomainLabels {
        namespace: namespace.clone(),
        name: name.clone(),
    }
}

fn phase_labels(labels: &DomainLabels, phase: &'static str) -> PhaseLabels {
    PhaseLabels {
        namespace: labels.namespace.clone(),
        name: labels.name.clone(),
        phase,
    }
}

fn message_labels(labels: &DomainLabels, state: &'static str) -> MessageLabels {
    MessageLabels {
        namespace: labels.namespace.clone(),
        name: labels.name.clone(),
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::domain::MessageCounts;
    use crate::telemetry::Metrics;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    fn status(phase: DomainPhase, standby_ready: bool, messages: Option<MessageCounts>) -> ContinuityDomainStatus {
        ContinuityDomainStatus {
            phase: Some(phase),
            conditions: vec![Condition {
                type_: types::STANDBY_READY.into(),
                status: if standby_ready { "True" } else { "False" }.into(),
                reason: "R".into(),
                message: "m".into(),
                observed_generation: Some(1),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            messages,
            ..ContinuityDomainStatus::default()
        }
    }

    fn series(metrics: &Metrics) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("continuity_domain_"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_domains_series_follow_its_status_and_go_with_it() {
        let metrics = Metrics::default();
        let key = ("tenant".to_owned(), "d".to_owned());
        metrics
            .domains
            .update(&key, Some(&status(DomainPhase::Armed, true, None)));
        assert_eq!(
            series(&metrics),
            [
                r#"continuity_domain_phase{namespace="tenant",name="d",phase="Armed"} 1"#,
                r#"continuity_domain_routed_to_standby{namespace="tenant",name="d"} 0"#,
                r#"continuity_domain_standby_ready{namespace="tenant",name="d"} 1"#,
            ]
        );

        let held = MessageCounts {
            held: 7,
            delivered: 2,
            pending: 5,
            failed: 0,
            oldest_pending_time: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
        };
        metrics
            .domains
            .update(&key, Some(&status(DomainPhase::FailingBack, true, Some(held))));
        let shown = series(&metrics);
        assert!(
            shown.contains(&r#"continuity_domain_phase{namespace="tenant",name="d",phase="FailingBack"} 1"#.to_owned())
        );
        assert!(
            !shown.iter().any(|l| l.contains(r#"phase="Armed""#)),
            "one phase series: {shown:?}"
        );
        assert!(
            shown.contains(&r#"continuity_domain_messages{namespace="tenant",name="d",state="pending"} 5"#.to_owned())
        );
        assert!(shown.contains(
            &r#"continuity_domain_oldest_pending_message_timestamp_seconds{namespace="tenant",name="d"} 1700000000"#.to_owned()
        ));

        metrics
            .domains
            .update(&key, Some(&status(DomainPhase::Armed, true, None)));
        assert_eq!(series(&metrics).len(), 3, "the message series went with the held mail");
        metrics.domains.retain(&[]);
        assert_eq!(series(&metrics), Vec::<String>::new(), "a domain gone after a relist");
        metrics
            .domains
            .update(&key, Some(&status(DomainPhase::Armed, true, None)));
        metrics.domains.remove(&key);
        assert_eq!(series(&metrics), Vec::<String>::new(), "a deleted domain");
    }
}
