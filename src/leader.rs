//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics, so that of
//! several replicas exactly one reconciles.
//!
//! A candidate takes the Lease when it is free or when its record has not changed for the
//! record's `leaseDurationSeconds`, measured on the candidate's own clock (never by comparing
//! `renewTime` with local time, so clock skew between nodes cannot cause two leaders). Every
//! write carries the `resourceVersion` that was read, so two candidates racing for the same
//! Lease cannot both win: the API server rejects the second with a conflict. The leader renews
//! every retry period; if it cannot renew for `renewDeadline` it stops leading. On a clean
//! shutdown it releases the Lease, so another replica takes over at once instead of waiting
//! for expiry.
//!
//! [`Leadership`] runs the election on a thread of its own, with its own runtime and its own
//! API client (connections), as client-go gives leader election a client of its own: at
//! 10,000 domains a leader sharing both with the controllers saw its Lease GETs take seconds
//! to be sent while the API server answered each in milliseconds, and gave up leading.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{Error, FIELD_MANAGER, Result, jitter};

/// Timing of the election, as in client-go.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// The outcome of one election round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// This candidate holds the Lease now.
    Holding,
    /// Another candidate holds a Lease that has not expired.
    HeldByOther,
    /// Another write to the Lease came first; try again.
    Raced,
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The last record seen and when (on our clock) it was first seen.
    observed: Option<(LeaseSpec, Instant)>,
}

/// Leadership of one Lease, elected on a thread of its own (see the module documentation).
pub struct Leadership {
    /// First whether the Lease was acquired, then why it was lost.
    events: mpsc::UnboundedReceiver<Result<()>>,
    /// Asks the election thread to give the Lease up, and waits for its answer.
    release: Option<oneshot::Sender<oneshot::Sender<Result<()>>>>,
}

impl Leadership {
    /// Starts the election for `name` in `namespace` as `identity`, with a client made from
    /// `config`.
    pub fn start(config: kube::Config, namespace: String, name: String, identity: String, timing: Timing) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (release, release_rx) = oneshot::channel::<oneshot::Sender<Result<()>>>();
        let thread_events = events_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("leader-election".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = thread_events.send(Err(Error::Runtime(error)));
                        return;
                    }
                };
                runtime.block_on(elect(
                    config,
                    namespace,
                    name,
                    identity,
                    timing,
                    thread_events,
                    release_rx,
                ));
            });
        if let Err(error) = spawned {
            let _ = events_tx.send(Err(Error::Runtime(error)));
        }
        Self {
            events,
            release: Some(release),
        }
    }

    /// Returns once the Lease is held.
    pub async fn acquired(&mut self) -> Result<()> {
        self.next().await
    }

    /// Returns why leadership was lost, once it is.
    pub async fn lost(&mut self) -> Error {
        match self.next().await {
            Err(error) => error,
            Ok(()) => Error::LeaderElection {
                lease: String::new(),
                reason: "the election reported holding twice".into(),
            },
        }
    }

    /// Gives the Lease up (if still held) and waits until that is written.
    pub async fn release(&mut self) -> Result<()> {
        let Some(release) = self.release.take() else {
            return Ok(());
        };
        let (reply, answer) = oneshot::channel();
        if release.send(reply).is_err() {
            return Ok(());
        }
        answer.await.unwrap_or(Ok(()))
    }

    async fn next(&mut self) -> Result<()> {
        self.events.recv().await.unwrap_or_else(|| {
            Err(Error::LeaderElection {
                lease: String::new(),
                reason: "the election thread ended".into(),
            })
        })
    }
}

/// The election thread's work: acquire, then hold until lost or asked to release.
async fn elect(
    config: kube::Config,
    namespace: String,
    name: String,
    identity: String,
    timing: Timing,
    events: mpsc::UnboundedSender<Result<()>>,
    release: oneshot::Receiver<oneshot::Sender<Result<()>>>,
) {
    let client = match kube::Client::try_from(config) {
        Ok(client) => client,
        Err(error) => {
            let _ = events.send(Err(error.into()));
            return;
        }
    };
    let mut elector = LeaderElector::new(Api::namespaced(client, &namespace), name, identity, timing);
    let mut release = release;
    tokio::select! {
        acquired = elector.acquire() => {
            let held = acquired.is_ok();
            let _ = events.send(acquired);
            if !held {
                return;
            }
        }
        reply = &mut release => {
            // Asked to stop before leading: nothing to give up.
            if let Ok(reply) = reply {
                let _ = reply.send(Ok(()));
            }
            return;
        }
    }
    tokio::select! {
        lost = elector.hold() => {
            let _ = events.send(Err(lost));
        }
        reply = &mut release => {
            let released = elector.release().await;
            if let Ok(reply) = reply {
                let _ = reply.send(released);
            }
        }
    }
}

/// Whether the Lease may be taken by `identity` now.
fn acquirable(record: &LeaseSpec, observed_at: Instant, now: Instant, identity: &str) -> bool {
    let holder = record.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let duration = Duration::from_secs(u64::try_from(record.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    now.duration_since(observed_at) >= duration
}

/// The record `identity` writes when it takes or renews a Lease whose record is `current`.
fn next_record(current: Option<&LeaseSpec>, identity: &str, timing: &Timing, now: Timestamp) -> LeaseSpec {
    let renewing = current.is_some_and(|c| c.holder_identity.as_deref() == Some(identity));
    let transitions = current.and_then(|c| c.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(i32::try_from(timing.lease_duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if renewing {
            current.and_then(|c| c.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if renewing || current.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: String, identity: String, timing: Timing) -> Self {
        Self {
            api,
            name,
            identity,
            timing,
            observed: None,
        }
    }

    /// Returns once this candidate holds the Lease.
    pub async fn acquire(&mut self) -> Result<()> {
        info!(lease = %self.name, identity = %self.identity, "waiting to become leader");
        let mut attempt: u64 = 0;
        loop {
            // A hung request must not stall the candidate forever.
            match tokio::time::timeout(self.timing.renew_deadline, self.round()).await {
                Ok(Ok(Round::Holding)) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                Ok(Ok(Round::HeldByOther | Round::Raced)) => {}
                Ok(Err(error)) => warn!(lease = %self.name, %error, "cannot read or write the Lease; retrying"),
                Err(_) => warn!(lease = %self.name, "the API server did not answer in time; retrying"),
            }
            // Jittered as client-go does (factor 1.2), so candidates that start together, or
            // all saw the Lease expire, do not race each other at every round.
            let pause = jitter::jittered(self.timing.retry_period, 1.2, (&self.identity, attempt));
            attempt = attempt.wrapping_add(1);
            tokio::time::sleep(pause).await;
        }
    }

    /// Renews the Lease every retry period; returns why leadership is lost as soon as another
    /// replica holds it, or when no renewal has succeeded for the renew deadline (each attempt
    /// is cut off at that deadline, so a hung connection cannot keep a stale leader acting).
    pub async fn hold(&mut self) -> Error {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            let deadline = last_renewal + self.timing.renew_deadline;
            // The renewal counts from when it was sent, not from its answer: the Lease says it
            // was renewed then, and the other replicas count its expiry from there.
            let attempt_started = Instant::now();
            match tokio::time::timeout_at(deadline, self.round()).await {
                Ok(Ok(Round::Holding)) => last_renewal = attempt_started,
                Ok(Ok(Round::HeldByOther)) => return self.lost("another replica holds the Lease"),
                Ok(Ok(Round::Raced)) => debug!(lease = %self.name, "renewal raced another write; retrying"),
                Ok(Err(error)) => warn!(lease = %self.name, %error, "renewing the Lease failed; retrying"),
                Err(_) => warn!(lease = %self.name, "a renewal did not finish before the renew deadline"),
            }
            if Instant::now() >= deadline {
                return self.lost(&format!("not renewed within {:?}", self.timing.renew_deadline));
            }
        }
    }

    fn lost(&self, reason: &str) -> Error {
        Error::LeaderElection {
            lease: self.name.clone(),
            reason: reason.to_owned(),
        }
    }

    /// Gives the Lease up so another replica can take over without waiting for expiry.
    pub async fn release(&mut self) -> Result<()> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        // An empty holder, written explicitly as client-go does: omitting the field would not
        // clear it while the manager that created the Lease still co-owns it.
        let released = LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(Timestamp::now())),
            acquire_time: spec.acquire_time.clone(),
            lease_transitions: spec.lease_transitions,
            ..LeaseSpec::default()
        };
        self.write(&current, released).await?;
        info!(lease = %self.name, identity = %self.identity, "released the Lease");
        Ok(())
    }

    /// One election round: takes or renews the Lease if allowed.
    async fn round(&mut self) -> Result<Round> {
        let now = Instant::now();
        let Some(current) = self.api.get_opt(&self.name).await? else {
            return self.create().await;
        };
        let record = current.spec.clone().unwrap_or_default();
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => now,
        };
        self.observed = Some((record.clone(), observed_at));
        if !acquirable(&record, observed_at, now, &self.identity) {
            debug!(lease = %self.name, holder = ?record.holder_identity, "Lease is held by another replica");
            return Ok(Round::HeldByOther);
        }
        let next = next_record(Some(&record), &self.identity, &self.timing, Timestamp::now());
        match self.write(&current, next.clone()).await {
            Ok(()) => {
                self.observed = Some((next, Instant::now()));
                Ok(Round::Holding)
            }
            Err(Error::Kube(kube::Error::Api(status))) if status.is_conflict() => Ok(Round::Raced),
            Err(error) => Err(error),
        }
    }

    async fn create(&mut self) -> Result<Round> {
        let record = next_record(None, &self.identity, &self.timing, Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(record.clone()),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                self.observed = Some((record, Instant::now()));
                Ok(Round::Holding)
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(Round::Raced),
            Err(error) => Err(error.into()),
        }
    }

    /// Applies `spec` with the `resourceVersion` of `current` as a precondition.
    async fn write(&self, current: &Lease, spec: LeaseSpec) -> Result<()> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: current.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        // k8s-openapi serializes apiVersion and kind, as server-side apply requires.
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    fn held_by(holder: &str) -> LeaseSpec {
        next_record(None, holder, &TIMING, Timestamp::from_second(1000).unwrap())
    }

    #[test]
    fn a_held_lease_is_taken_only_after_it_stood_still_for_its_duration() {
        let seen = Instant::now();
        let record = held_by("a");
        assert!(!acquirable(&record, seen, seen + Duration::from_secs(14), "b"));
        assert!(acquirable(&record, seen, seen + Duration::from_secs(15), "b"));
        // The holder itself renews at any time.
        assert!(acquirable(&record, seen, seen, "a"));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let seen = Instant::now();
        // An empty holder, written explicitly as client-go does: omitting the field would not
        // clear it while the manager that created the Lease still co-owns it.
        let released = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held_by("a")
        };
        assert!(acquirable(&released, seen, seen, "b"));
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let t1 = Timestamp::from_second(1002).unwrap();
        let first = next_record(None, "a", &TIMING, t0);
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.lease_duration_seconds, Some(15));

        let renewed = next_record(Some(&first), "a", &TIMING, t1);
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert_eq!(renewed.renew_time, Some(MicroTime(t1)));

        let taken = next_record(Some(&renewed), "b", &TIMING, t1);
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(t1)));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
    }
}
