//! Runs the probes of every registered domain, each at its own period, all at once within a
//! bound on concurrent probes. One loop owns the schedule (a delay queue); each due probe runs
//! as its own task with its own deadline, so a primary that never answers holds one permit for
//! its timeout and delays nobody else. Results are folded into each domain's [`Health`] and,
//! when [`super::tracker::record`] says so, the domain is handed to the reconciler. When failures
//! become [widespread](super::widespread) or stop being so, every failing domain is handed to
//! the reconciler too: its failover is held, or may go ahead.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::rustls::ClientConfig;
use tokio_util::time::{DelayQueue, delay_queue};
use tracing::{debug, info, warn};

use super::probe::{self, Outcome, ProbeClient, Report, Target};
pub use super::tracker::DomainKey;
use super::tracker::{Board, Health, Policy};
use super::widespread::Threshold;
use crate::api::domain::ProbeFailureClass;
use crate::telemetry::Metrics;

/// How one domain is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub target: Target,
    pub period: Duration,
    /// Probe this soon instead while a run of results is on its way to a threshold.
    pub fast_retry: Option<Duration>,
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

/// How a probe is run: [`probe::probe`], or a stand-in in unit tests.
pub type ProbeFn = Arc<dyn Fn(Target, Option<Arc<ClientConfig>>) -> BoxFuture<'static, Report> + Send + Sync>;

/// The probing service; reconciles register and read through it.
pub struct Prober {
    commands: mpsc::UnboundedSender<Command>,
    registered: Mutex<HashMap<DomainKey, Registration>>,
    board: Mutex<Board>,
    threshold: Threshold,
    widespread: AtomicBool,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    notify: Box<dyn Fn(&DomainKey) + Send + Sync>,
    probe: ProbeFn,
}

impl Prober {
    /// A prober probing as `client`, running at most `concurrency` probes at once, holding
    /// failovers when failures pass `threshold`, and calling `notify` for domains whose health
    /// changed. Run the returned future to start it.
    pub fn new(
        client: ProbeClient,
        concurrency: usize,
        threshold: Threshold,
        metrics: Arc<Metrics>,
        notify: impl Fn(&DomainKey) + Send + Sync + 'static,
    ) -> (Arc<Prober>, impl Future<Output = ()>) {
        let client = Arc::new(client);
        let probe: ProbeFn = Arc::new(move |target: Target, tls: Option<Arc<ClientConfig>>| {
            let client = client.clone();
            Box::pin(async move { probe::probe(&target, &client, tls.as_ref()).await }) as BoxFuture<'static, Report>
        });
        Self::with_probe(concurrency, threshold, metrics, notify, probe)
    }

    /// As [`Prober::new`], running `probe` instead of real SMTP probes.
    pub fn with_probe(
        concurrency: usize,
        threshold: Threshold,
        metrics: Arc<Metrics>,
        notify: impl Fn(&DomainKey) + Send + Sync + 'static,
        probe: ProbeFn,
    ) -> (Arc<Prober>, impl Future<Output = ()>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let prober = Arc::new(Prober {
            commands,
            registered: Mutex::new(HashMap::new()),
            board: Mutex::new(Board::default()),
            threshold,
            widespread: AtomicBool::new(false),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            metrics,
            notify: Box::new(notify),
            probe,
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
        self.forget(|board| board.remove(key));
    }

    /// Stops probing every domain not in `keep` (a relist may have missed deletions).
    pub fn retain(&self, keep: &[DomainKey]) {
        let keep: std::collections::HashSet<&DomainKey> = keep.iter().collect();
        lock(&self.registered).retain(|key, _| keep.contains(key));
        self.forget(|board| board.retain(|key| keep.contains(key)));
        let _ = self.commands.send(Command::Retain(keep.into_iter().cloned().collect()));
    }

    /// What this replica has seen of `key`'s primary; `None` before its first probe.
    pub fn health(&self, key: &DomainKey) -> Option<Health> {
        lock(&self.board).health(key).cloned()
    }

    /// While so many primaries fail at once that failovers are held, the threshold they
    /// passed (to explain the hold).
    pub fn widespread_failure(&self) -> Option<&Threshold> {
        self.widespread.load(Ordering::Relaxed).then_some(&self.threshold)
    }

    /// Removes domains from the board with `change`, and reassesses.
    fn forget(&self, change: impl FnOnce(&mut Board)) {
        let woken = {
            let mut board = lock(&self.board);
            change(&mut board);
            self.reassess(&board)
        };
        woken.iter().for_each(|key| (self.notify)(key));
    }

    /// Whether failures became widespread, or stopped being so, with the board as it is now;
    /// if so, the failing domains, whose failovers are now held or free.
    fn reassess(&self, board: &Board) -> Vec<DomainKey> {
        let (failing, probed) = board.failing_of_probed();
        let widespread = self.threshold.widespread(failing, probed);
        if self.widespread.swap(widespread, Ordering::Relaxed) == widespread {
            return Vec::new();
        }
        self.metrics.set_widespread_failure(widespread);
        if widespread {
            warn!(failing, probed, "many primaries fail at once: failovers are held");
        } else {
            info!(
                failing,
                probed, "failures are no longer widespread: failovers may go ahead"
            );
        }
        board.failing_domains().cloned().collect()
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
                        // Here, not in deregister(): no result can come after this.
                        self.metrics.primary_forgotten(&key);
                        // A result that landed between deregister() and now is stale too.
                        self.forget(|board| board.remove(&key));
                    }
                    Command::Retain(keep) => {
                        let keep: std::collections::HashSet<DomainKey> = keep.into_iter().collect();
                        entries.retain(|key, entry| {
                            let kept = keep.contains(key);
                            if !kept {
                                queue.remove(&entry.queue_key);
                                self.metrics.primary_forgotten(key);
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
                    let health = self.observe(&finished.key, &entry.registration.policy, finished.report);
                    if let Some(fast) = entry.registration.fast_retry
                        && health.in_transition(&entry.registration.policy)
                        && queue.deadline(&entry.queue_key) > Instant::now() + fast
                    {
                        queue.reset(&entry.queue_key, fast);
                    }
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
        let tls_config = |registration: &Registration| {
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
                })
        };
        match entries.get_mut(&key) {
            Some(entry) => {
                // Every reconcile registers again; the roots are parsed only when the check changed.
                if entry.registration.tls != registration.tls {
                    entry.tls_config = tls_config(&registration);
                }
                if entry.registration.target != registration.target {
                    // Another server: a fresh count, and results still coming for the old one
                    // are dropped.
                    entry.generation += 1;
                    entry.in_flight = false;
                    entry.tls_failing = false;
                    self.forget(|board| board.remove(&key));
                }
                if entry.registration.period != registration.period {
                    queue.reset(&entry.queue_key, spread(&key, registration.period));
                }
                entry.registration = registration;
            }
            None => {
                // Spread the first probes of many domains over one period instead of firing
                // them all at once when the operator starts.
                let offset = spread(&key, registration.period);
                let queue_key = queue.insert(key.clone(), offset);
                let tls_config = tls_config(&registration);
                entries.insert(
                    key,
                    Entry {
                        tls_config,
                        registration,
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
            let tls_checked = tls.is_some();
            let report = (prober.probe)(target, tls).await;
            let _ = done.send(Done {
                key,
                generation,
                report,
                tls_checked,
            });
        });
    }

    /// Folds a result into the board and the metrics; returns the domain's health now.
    fn observe(&self, key: &DomainKey, policy: &Policy, report: Report) -> Health {
        self.metrics.probed(report.outcome.name(), report.latency);
        debug!(domain = ?key, outcome = report.outcome.name(), latency = ?report.latency, detail = %report.detail, "probed");
        let (health, notify, woken) = {
            let mut board = lock(&self.board);
            let (health, notify) = board.record(key, report, Timestamp::now(), policy, Instant::now());
            (health, notify, self.reassess(&board))
        };
        self.metrics.primary_probed(key, &health);
        if notify && !woken.contains(key) {
            (self.notify)(key);
        }
        woken.iter().for_each(|key| (self.notify)(key));
        health
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// What a stand-in probe saw: calls, and the most running at once.
    #[derive(Default)]
    struct Seen {
        calls: AtomicUsize,
        running: AtomicUsize,
        most: AtomicUsize,
    }

    /// A probe that takes `takes` and answers Ok for port 25, Refused otherwise.
    fn stand_in(seen: Arc<Seen>, takes: Duration) -> ProbeFn {
        Arc::new(move |target: Target, _| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.calls.fetch_add(1, SeqCst);
                let running = seen.running.fetch_add(1, SeqCst) + 1;
                seen.most.fetch_max(running, SeqCst);
                tokio::time::sleep(takes).await;
                seen.running.fetch_sub(1, SeqCst);
                let outcome = if target.port == 25 {
                    Outcome::Ok
                } else {
                    Outcome::Failed(ProbeFailureClass::Refused)
                };
                Report {
                    outcome,
                    latency: takes,
                    detail: String::new(),
                }
            }) as BoxFuture<'static, Report>
        })
    }

    fn registration(port: u16, period: u64) -> Registration {
        Registration {
            target: Target {
                host: "mx.example.com".into(),
                port,
                timeout: Duration::from_secs(5),
                networks: Arc::default(),
            },
            period: Duration::from_secs(period),
            fast_retry: None,
            policy: Policy {
                failure_threshold: 3,
                success_threshold: 3,
                failure_classes: ProbeFailureClass::ALL.to_vec(),
                heartbeat: Duration::from_secs(60),
            },
            tls: None,
        }
    }

    fn key(name: &str) -> DomainKey {
        ("tenant".into(), name.into())
    }

    /// A running prober with the stand-in probe; the domains it asked to reconcile, in order.
    fn start(concurrency: usize, seen: &Arc<Seen>, takes: Duration) -> (Arc<Prober>, Arc<Mutex<Vec<DomainKey>>>) {
        let notified = Arc::new(Mutex::new(Vec::new()));
        let record = notified.clone();
        let (prober, run) = Prober::with_probe(
            concurrency,
            Threshold::default(),
            Arc::new(Metrics::default()),
            move |key: &DomainKey| lock(&record).push(key.clone()),
            stand_in(seen.clone(), takes),
        );
        tokio::spawn(run);
        (prober, notified)
    }

    /// Lets (paused) time pass in small steps until `done`.
    async fn until(done: impl Fn() -> bool) {
        while !done() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_domain_is_probed_at_its_period_and_reconciled_only_on_a_change() {
        let seen = Arc::new(Seen::default());
        let (prober, notified) = start(4, &seen, Duration::from_millis(10));
        prober.register(&key("d"), registration(25, 10));
        tokio::time::sleep(Duration::from_secs(95)).await;
        let calls = seen.calls.load(SeqCst);
        assert!((9..=10).contains(&calls), "{calls} probes in 95 s at a 10 s period");
        let health = prober.health(&key("d")).expect("probed");
        assert_eq!(health.consecutive_successes as usize, calls);
        // The first result, the run to the success threshold, one heartbeat: not every probe.
        assert!((3..=4).contains(&lock(&notified).len()), "{:?}", lock(&notified));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_the_next_probes_come_at_the_fast_retry_until_the_threshold() {
        let seen = Arc::new(Seen::default());
        let (prober, notified) = start(4, &seen, Duration::from_millis(10));
        let failing = Registration {
            fast_retry: Some(Duration::from_millis(200)),
            ..registration(2525, 10)
        };
        prober.register(&key("d"), failing);
        until(|| seen.calls.load(SeqCst) == 1).await;
        // Two more 200 ms apart reach the threshold of 3, well within one 10 s period...
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(seen.calls.load(SeqCst), 3);
        let health = prober.health(&key("d")).expect("probed");
        assert_eq!(health.consecutive_failures, 3);
        // ... then the period again.
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(seen.calls.load(SeqCst), 3, "at the threshold, back to the period");
        assert_eq!(
            lock(&notified).len(),
            2,
            "the first result and the threshold: {:?}",
            lock(&notified)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_slower_than_its_period_never_runs_twice_at_once() {
        let seen = Arc::new(Seen::default());
        let (prober, _) = start(4, &seen, Duration::from_secs(25));
        prober.register(&key("slow"), registration(25, 10));
        tokio::time::sleep(Duration::from_secs(110)).await;
        assert_eq!(seen.most.load(SeqCst), 1);
        let calls = seen.calls.load(SeqCst);
        assert!((4..=5).contains(&calls), "the next starts when one ends: {calls}");
    }

    #[tokio::test(start_paused = true)]
    async fn probes_run_at_most_concurrency_at_once() {
        let seen = Arc::new(Seen::default());
        let (prober, _) = start(2, &seen, Duration::from_secs(8));
        for i in 0..6 {
            prober.register(&key(&format!("d{i}")), registration(25, 10));
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(seen.most.load(SeqCst), 2);
        assert!(seen.calls.load(SeqCst) >= 10, "the permits are reused");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deregistered_domain_is_no_longer_probed_and_its_health_forgotten() {
        let seen = Arc::new(Seen::default());
        let (prober, _) = start(4, &seen, Duration::from_millis(10));
        prober.register(&key("d"), registration(25, 10));
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(prober.health(&key("d")).is_some());
        let series = r#"continuity_primary_up{namespace="tenant",name="d"} 1"#;
        assert!(prober.metrics.encode().contains(series));
        prober.deregister(&key("d"));
        let calls = seen.calls.load(SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(seen.calls.load(SeqCst), calls);
        assert_eq!(prober.health(&key("d")), None);
        assert!(
            !prober.metrics.encode().contains("continuity_primary_up{"),
            "its series are gone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_result_about_an_old_target_is_dropped() {
        let seen = Arc::new(Seen::default());
        let (prober, _) = start(4, &seen, Duration::from_secs(7));
        prober.register(&key("d"), registration(2525, 10));
        // The old target's first probe is running when the target changes.
        until(|| seen.running.load(SeqCst) == 1).await;
        prober.register(&key("d"), registration(25, 10));
        until(|| seen.running.load(SeqCst) == 0).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            prober.health(&key("d")),
            None,
            "the refused probe was about the old target"
        );
        until(|| prober.health(&key("d")).is_some()).await;
        let health = prober.health(&key("d")).expect("probed");
        assert_eq!((health.last.outcome, health.consecutive_failures), (Outcome::Ok, 0));
    }
}
