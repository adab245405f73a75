//! Prometheus metrics of the operator, served on `/metrics`.

use std::collections::HashSet;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Error;
use crate::health::probe::Outcome;
use crate::health::tracker::Health;
use crate::routing::decision::Flip;
use crate::telemetry::domains::DomainSeries;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    kind: &'static str,
    result: &'static str,
}

/// One domain: the per-domain series, one set per probed domain (bounded by the number of
/// ContinuityDomains that act; removed when a domain stops acting).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlipLabels {
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    resource: String,
    operation: &'static str,
}

/// What is written to the API server, for [`Metrics::api_write`].
#[derive(Clone, Copy, Debug)]
pub enum Write {
    /// A child object applied.
    Apply,
    /// A status applied.
    Status,
    /// A status applied that refreshes nothing but the primary's probe details (the status
    /// heartbeat): counted apart, so that a write a user would act on stands out.
    Heartbeat,
    /// An Event published.
    Event,
    /// A child the spec no longer asks for deleted.
    Delete,
}

/// Every probe's result per domain: the live data status keeps out of the API server.
#[derive(Default)]
struct PrimarySeries {
    up: Family<DomainLabels, Gauge>,
    last_probe: Family<DomainLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    latency: Family<DomainLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    failures: Family<DomainLabels, Gauge>,
    successes: Family<DomainLabels, Gauge>,
}

/// The operator's metrics, registered in one registry.
pub struct Metrics {
    registry: Registry,
    reconciliations: Family<KindLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Family<KindLabels, Histogram>,
    api_writes: Family<WriteLabels, Counter>,
    leader: Gauge,
    probes: Family<ResultLabels, Counter>,
    probe_duration: Histogram,
    primary: PrimarySeries,
    flips: Family<FlipLabels, Counter>,
    active_seconds: Counter<f64>,
    widespread_failure: Gauge,
    failover_holds: Counter,
    directory_reads: Family<ResultLabels, Counter>,
    admissions: Family<AdmissionLabels, Counter>,
    /// The per-domain state series, from each domain's status.
    pub domains: DomainSeries,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("continuity");
        let reconciliations = Family::<KindLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciliations run, by resource kind",
            reconciliations.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by resource kind and error class",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconciliation took, by resource kind",
            reconcile_duration.clone(),
        );
        let api_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Write requests sent to the Kubernetes API, by resource and operation; zero while nothing changes",
            api_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        let probes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "probes",
            "SMTP health checks of primaries, by result (Ok or the failure class)",
            probes.clone(),
        );
        let probe_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "probe_duration_seconds",
            "Time one SMTP health check took",
            probe_duration.clone(),
        );
        let primary = PrimarySeries::default();
        registry.register(
            "primary_up",
            "1 if the latest health check of the domain's primary passed, else 0",
            primary.up.clone(),
        );
        registry.register(
            "primary_last_probe_timestamp_seconds",
            "When the latest health check of the domain's primary finished (Unix time)",
            primary.last_probe.clone(),
        );
        registry.register(
            "primary_probe_latency_seconds",
            "How long the latest health check of the domain's primary took",
            primary.latency.clone(),
        );
        registry.register(
            "primary_consecutive_failures",
            "Failed health checks of the domain's primary in a row, of the classes that count towards failover",
            primary.failures.clone(),
        );
        registry.register(
            "primary_consecutive_successes",
            "Passed health checks of the domain's primary in a row",
            primary.successes.clone(),
        );
        let flips = Family::<FlipLabels, Counter>::default();
        registry.register(
            "routing_flips",
            "Routing flips, by new target (standby or primary)",
            flips.clone(),
        );
        let active_seconds = Counter::<f64>::default();
        registry.register(
            "active_seconds",
            "Time domains spent with their mail routed to the standby, counted when continuity ends",
            active_seconds.clone(),
        );
        let widespread_failure = Gauge::default();
        registry.register(
            "widespread_failure",
            "1 while so many primaries fail at once that failovers are held",
            widespread_failure.clone(),
        );
        let failover_holds = Counter::default();
        registry.register(
            "failover_holds",
            "Times failovers were held because many primaries failed at once",
            failover_holds.clone(),
        );
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "webhook_admissions",
            "Admission requests the validating webhook answered, by kind and result (allowed, warned, denied, error)",
            admissions.clone(),
        );
        let directory_reads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "directory_reads",
            "Reads of tenants' LDAP directories, by result (Ok, or the step that failed: Connect, Bind, Search)",
            directory_reads.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The operator's version, value 1", build_info);
        let domains = DomainSeries::default();
        domains.register(&mut registry);
        Self {
            registry,
            domains,
            directory_reads,
            admissions,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            api_writes,
            leader,
            probes,
            probe_duration,
            primary,
            flips,
            active_seconds,
            widespread_failure,
            failover_holds,
        }
    }
}

impl Metrics {
    /// Records a finished reconciliation of a `kind` object.
    pub fn reconciled(&self, kind: &str, took: Duration) {
        let labels = KindLabels { kind: kind.to_owned() };
        self.reconciliations.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records a failed reconciliation.
    pub fn reconcile_failed(&self, kind: &str, error: &Error) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
                error: error.metric_label(),
            })
            .inc();
    }

    /// Records one write request to the API server.
    pub fn api_write(&self, resource: &str, write: Write) {
        let operation = match write {
            Write::Apply => "apply",
            Write::Status => "status",
            Write::Heartbeat => "heartbeat",
            Write::Event => "event",
            Write::Delete => "delete",
        };
        self.api_writes
            .get_or_create(&WriteLabels {
                resource: resource.to_owned(),
                operation,
            })
            .inc();
    }

    /// Records one directory read.
    /// Counts one admission request the webhook answered.
    pub fn admitted(&self, kind: &'static str, result: &'static str) {
        self.admissions.get_or_create(&AdmissionLabels { kind, result }).inc();
    }

    pub fn directory_read(&self, result: &'static str) {
        self.directory_reads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Records one health check.
    pub fn probed(&self, result: &'static str, took: Duration) {
        self.probes.get_or_create(&ResultLabels { result }).inc();
        self.probe_duration.observe(took.as_secs_f64());
    }

    /// Records the latest health check of the domain `(namespace, name)`.
    pub fn primary_probed(&self, (namespace, name): &(String, String), health: &Health) {
        let labels = DomainLabels {
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let series = &self.primary;
        series
            .up
            .get_or_create(&labels)
            .set(i64::from(health.last.outcome == Outcome::Ok));
        let finished = health.at.as_millisecond() as f64 / 1000.0;
        series.last_probe.get_or_create(&labels).set(finished);
        series
            .latency
            .get_or_create(&labels)
            .set(health.last.latency.as_secs_f64());
        series
            .failures
            .get_or_create(&labels)
            .set(health.consecutive_failures.into());
        series
            .successes
            .get_or_create(&labels)
            .set(health.consecutive_successes.into());
    }

    /// Drops the per-domain series of a domain no longer probed.
    pub fn primary_forgotten(&self, (namespace, name): &(String, String)) {
        let labels = DomainLabels {
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let series = &self.primary;
        series.up.remove(&labels);
        series.last_probe.remove(&labels);
        series.latency.remove(&labels);
        series.failures.remove(&labels);
        series.successes.remove(&labels);
    }

    /// Records a routing flip to `to` (`standby` or `primary`); `ended` is the length of the
    /// continuity period a flip back to the primary closes.
    pub fn flipped(&self, flip: Flip, ended: Option<Duration>) {
        let to = match flip {
            Flip::ToStandby => "standby",
            Flip::ToPrimary => "primary",
        };
        self.flips.get_or_create(&FlipLabels { to }).inc();
        if let Some(ended) = ended {
            self.active_seconds.inc_by(ended.as_secs_f64());
        }
    }

    /// Records that failovers are held (`true`, counted once per hold) or released.
    pub fn set_widespread_failure(&self, held: bool) {
        if held {
            self.failover_holds.inc();
        }
        self.widespread_failure.set(i64::from(held));
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in the Prometheus text format (0.0.4): see [`to_text_format`].
    pub fn encode_text_format(&self) -> String {
        to_text_format(&self.encode())
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// OpenMetrics as the Prometheus text format (0.0.4), the one `promtool check metrics` and
/// older scrapers read: OpenMetrics names a counter family without the `_total` its samples
/// carry and ends with `# EOF`; the text format names the family as its samples. Sample lines
/// are the same in both. (prometheus-client writes OpenMetrics only.)
fn to_text_format(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        let renamed = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {rest}"))
        });
        match renamed {
            Some(line) => text.push_str(&line),
            None if line == "# EOF" || line.starts_with("# UNIT ") => continue,
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counts_durations_errors_and_writes() {
        let metrics = Metrics::default();
        metrics.reconciled("ContinuityDomain", Duration::from_millis(3));
        metrics.reconcile_failed("ContinuityUser", &Error::Config("x".into()));
        metrics.api_write("ConfigMap", Write::Apply);
        metrics.set_leader(true);
        metrics.probed("Refused", Duration::from_millis(1));
        metrics.flipped(Flip::ToPrimary, Some(Duration::from_secs(90)));
        metrics.set_widespread_failure(true);
        let text = metrics.encode();
        for expected in [
            r#"continuity_reconciliations_total{kind="ContinuityDomain"} 1"#,
            r#"continuity_reconcile_errors_total{kind="ContinuityUser",error="config"} 1"#,
            r#"continuity_reconcile_duration_seconds_count{kind="ContinuityDomain"} 1"#,
            r#"continuity_api_writes_total{resource="ConfigMap",operation="apply"} 1"#,
            "continuity_leader 1",
            r#"continuity_probes_total{result="Refused"} 1"#,
            "continuity_probe_duration_seconds_count 1",
            r#"continuity_routing_flips_total{to="primary"} 1"#,
            "continuity_widespread_failure 1",
            "continuity_failover_holds_total 1",
            "continuity_active_seconds_total 90.0",
            format!(r#"continuity_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION")).as_str(),
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }

    #[test]
    fn the_text_format_names_counter_families_as_their_samples() {
        let metrics = Metrics::default();
        metrics.probed("Ok", Duration::from_millis(1));
        let text = metrics.encode_text_format();
        assert!(text.contains("# TYPE continuity_probes_total counter\n"), "{text}");
        assert!(
            text.contains("# HELP continuity_probes_total SMTP health checks"),
            "{text}"
        );
        assert!(text.contains(r#"continuity_probes_total{result="Ok"} 1"#), "{text}");
        assert!(
            text.contains("# TYPE continuity_probe_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE continuity_leader gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
