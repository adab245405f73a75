//! Runs the probes of every registered domain, each at its own period, all at once within a
//! bound on concurrent probes. One loop owns the schedule (a delay queue); each due probe runs
//! as its own task with its own deadline, so a primary that never answers holds one permit for
//! its timeout and delays nobody else. Results are folded into each domain's [`Health`] and,
//! when [`tracker::record`] says so, the domain is handed to the reconciler.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::rustls::ClientConfig;
use tokio_util::time::{DelayQueue, delay_queue};
use tracing::{debug, warn};

use super::probe::{self, Outcome, Report, Target};
use super::tracker::{self, Health, Policy, Tracked};
use crate::api::domain::ProbeFailureClass;
use crate::telemetry::Metrics;

/// A domain, by namespace and name.
pub type DomainKey = (String, String);

/// How one domain is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub target: Target,
    pub period: Duration,
    pub policy: Policy,
    /// STARTTLS with certificate verification, this often, trusting these extra CAs.
    pub tls: Option<TlsCheck>,
}

/// The periodic certificate check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsCheck {
    pub period: Duration,
    pub ca_bundle: Option<String>,
}

enum Command {
    Upsert(DomainKey, Registration),
    Remove(DomainKey),
    Retain(Vec<DomainKey>),
}

struct Entry {
    registration: Registration,
    tls_config: Option<Arc<ClientConfig>>,
    next_tls: Instant,
    /// The last certificate check failed: every probe checks the certificate until one passes,
    /// so a broken certificate counts towards failover at the probe period.
    tls_failing: bool,
    queue_key: delay_queue::Key,
    in_flight: bool,
    /// A probe came due while the previous one was still running; it starts when that ends.
    overdue: bool,
    /// Changes with the target, so a late result about an old target is ignored.
    generation: u64,
}

/// A finished probe, for the loop.
struct Done {
    key: DomainKey,
    generation: u64,
    report: Report,
    tls_checked: bool,
}

/// The probing service; reconciles register and read through it.
pub struct Prober {
    commands: mpsc::UnboundedSender<Command>,
    registered: Mutex<HashMap<DomainKey, Registration>>,
    health: Mutex<HashMap<DomainKey, Tracked>>,
    helo: String,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    notify: Box<dyn Fn(&DomainKey) + Send + Sync>,
}

impl Prober {
    /// A prober introducing itself as `helo`, running at most `concurrency` probes at once and
    /// calling `notify` for domains whose health changed. Run [`Prober::run`] to start it.
    pub fn new(
        helo: String,
        concurrency: usize,
        metrics: Arc<Metrics>,
        notify: impl Fn(&DomainKey) + Send + Sync + 'static,
    ) -> (Arc<Prober>, impl Future<Output = ()>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let prober = Arc::new(Prober {
            commands,
            registered: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            helo,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            metrics,
            notify: Box::new(notify),
        });
        let run = prober.clone().run(receiver);
        (prober, run)
    }

    /// Probes `key` as `registration` says; a no-op when nothing changed.
    pub fn register(&self, key: &DomainKey, registration: Registration) {
        let mut registered = lock(&self.registered);
        if registered.get(key) == Some(&registration) {
            return;
        }
        registered.insert(key.clone(), registration.clone());
        let _ = self.commands.send(Command::Upsert(key.clone(), registration));
    }

    /// Stops probing `key` and forgets its health.
    pub fn deregister(&self, key: &DomainKey) {
        if lock(&self.registered).remove(key).is_some() {
            let _ = self.commands.send(Command::Remove(key.clone()));
        }
        lock(&self.health).remove(key);
    }

    /// Stops probing every domain not in `keep` (a relist may have missed deletions).
    pub fn retain(&self, keep: &[DomainKey]) {
        let keep: std::collections::HashSet<&DomainKey> = keep.iter().collect();
        lock(&self.registered).retain(|key, _| keep.contains(key));
        lock(&self.health).retain(|key, _| keep.contains(key));
        let _ = self.commands.send(Command::Retain(keep.into_iter().cloned().collect()));
    }

    /// What this replica has seen of `key`'s primary; `None` before its first probe.
    pub fn health(&self, key: &DomainKey) -> Option<Health> {
        lock(&self.health).get(key).map(|tracked| tracked.health.clone())
    }

    async fn run(self: Arc<Self>, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut queue: DelayQueue<DomainKey> = DelayQueue::new();
        let mut entries: HashMap<DomainKey, Entry> = HashMap::new();
        let (done_sender, mut done) = mpsc::unbounded_channel::<Done>();
        loop {
            tokio::select! {
                // The Prober owns the sender, and this loop owns the Prober: commands never end.
                Some(command) = commands.recv() => match command {
                    Command::Upsert(key, registration) => self.upsert(&mut queue, &mut entries, key, registration),
                    Command::Remove(key) => {
                        if let Some(entry) = entries.remove(&key) {
                            queue.remove(&entry.queue_key);
                        }
                        // A result that landed between deregister() and now is stale too.
                        lock(&self.health).remove(&key);
                    }
                    Command::Retain(keep) => {
                        let keep: std::collections::HashSet<DomainKey> = keep.into_iter().collect();
                        entries.retain(|key, entry| {
                            let kept = keep.contains(key);
                            if !kept {
                                queue.remove(&entry.queue_key);
                            }
                            kept
                        });
                    }
                },
                Some(expired) = queue.next() => {
                    let key = expired.into_inner();
                    if let Some(entry) = entries.get_mut(&key) {
                        entry.queue_key = queue.insert(key.clone(), entry.registration.period);
                        if entry.in_flight {
                            entry.overdue = true;
                        } else {
                            self.launch(key, entry, done_sender.clone());
                        }
                    }
                },
                Some(finished) = done.recv() => {
                    let Some(entry) = entries.get_mut(&finished.key) else { continue };
                    if finished.generation != entry.generation {
                        continue;
                    }
                    entry.in_flight = false;
                    if finished.tls_checked {
                        entry.tls_failing = finished.report.outcome == Outcome::Failed(ProbeFailureClass::TlsFailure);
                    }
                    self.observe(&finished.key, &entry.registration.policy, finished.report);
                    if std::mem::take(&mut entry.overdue) {
                        self.launch(finished.key, entry, done_sender.clone());
                    }
                },
            }
        }
    }

    fn upsert(
        &self,
        queue: &mut DelayQueue<DomainKey>,
        entries: &mut HashMap<DomainKey, Entry>,
        key: DomainKey,
        registration: Registration,
    ) {
        let tls_config =
            registration
                .tls
                .as_ref()
                .and_then(|tls| match crate::tls::verifying(tls.ca_bundle.as_deref()) {
                    Ok(config) => Some(config),
                    Err(error) => {
                        // Validation rejects such a bundle before registration; this cannot be reached
                        // with a valid spec.
                        warn!(domain = ?key, %error, "cannot build the TLS check");
                        None
                    }
                });
        match entries.get_mut(&key) {
            Some(entry) => {
                if entry.registration.target != registration.target {
                    // Another server: a fresh count, and results still coming for the old one
                    // are dropped.
                    entry.generation += 1;
                    entry.in_flight = false;
                    entry.tls_failing = false;
                    lock(&self.health).remove(&key);
                }
                if entry.registration.period != registration.period {
                    queue.reset(&entry.queue_key, spread(&key, registration.period));
                }
                entry.registration = registration;
                entry.tls_config = tls_config;
            }
            None => {
                // Spread the first probes of many domains over one period instead of firing
                // them all at once when the operator starts.
                let offset = spread(&key, registration.period);
                let queue_key = queue.insert(key.clone(), offset);
                entries.insert(
                    key,
                    Entry {
                        registration,
                        tls_config,
                        next_tls: Instant::now(),
                        tls_failing: false,
                        queue_key,
                        in_flight: false,
                        overdue: false,
                        generation: 0,
                    },
                );
            }
        }
    }

    fn launch(self: &Arc<Self>, key: DomainKey, entry: &mut Entry, done: mpsc::UnboundedSender<Done>) {
        entry.in_flight = true;
        let now = Instant::now();
        let tls = match (&entry.registration.tls, &entry.tls_config) {
            (Some(check), Some(config)) if entry.tls_failing || now >= entry.next_tls => {
                entry.next_tls = now + check.period;
                Some(config.clone())
            }
            _ => None,
        };
        let target = entry.registration.target.clone();
        let generation = entry.generation;
        let prober = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = prober.permits.clone().acquire_owned().await else {
                return;
            };
            let report = probe::probe(&target, &prober.helo, tls.as_ref()).await;
            let _ = done.send(Done {
                key,
                generation,
                report,
                tls_checked: tls.is_some(),
            });
        });
    }

    fn observe(&self, key: &DomainKey, policy: &Policy, report: Report) {
        self.metrics.probed(report.outcome.name(), report.latency);
        debug!(domain = ?key, outcome = report.outcome.name(), latency = ?report.latency, detail = %report.detail, "probed");
        let notify = {
            let mut health = lock(&self.health);
            let (next, notify) = tracker::record(health.get(key), report, Timestamp::now(), policy, Instant::now());
            health.insert(key.clone(), next);
            notify
        };
        if notify {
            (self.notify)(key);
        }
    }
}

/// A stable offset within `period` for `key`.
fn spread(key: &DomainKey, period: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let millis = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(hasher.finish() % millis)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
