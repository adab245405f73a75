//! What the operator remembers of each domain's recent probes (consecutive failures and
//! successes, the latest report), which results are worth a reconcile, and how many domains
//! are failing at once ([`Board`]). Pure.
//!
//! Only the failure classes a domain lists count towards failover. Any other failure counts
//! neither way: it cannot flip routing to the standby, and it breaks a run of successes
//! towards failback.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::probe::{Outcome, Report};
use crate::api::domain::ProbeFailureClass;

/// A domain, by namespace and name.
pub type DomainKey = (String, String);

/// The per-domain rules for counting results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub failure_classes: Vec<ProbeFailureClass>,
    /// Reconcile at least this often while nothing else changes, so status shows a recent
    /// probe time.
    pub heartbeat: Duration,
}

/// A domain's health as seen by this replica since it started probing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub last: Report,
    /// When the latest probe finished.
    pub at: Timestamp,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
}

/// The scheduler's record of a domain: its health, and when a reconcile was last asked for
/// (bookkeeping that routing and status never see).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub health: Health,
    notified: Instant,
}

impl Policy {
    fn counts(&self, outcome: Outcome) -> bool {
        matches!(outcome, Outcome::Failed(class) if self.failure_classes.contains(&class))
    }
}

/// What a user is shown of a domain's recent probes: the latest result, and the runs of
/// failures and successes up to their thresholds (a longer run changes nothing anyone acts
/// on). Reconciles are asked for, and status is refreshed, only when this changes, or for the
/// heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visible<'a> {
    result: &'a str,
    failures: u32,
    successes: u32,
}

impl<'a> Visible<'a> {
    pub fn new(result: &'a str, failures: u32, successes: u32, failure_threshold: u32, success_threshold: u32) -> Self {
        Self {
            result,
            failures: failures.min(failure_threshold),
            successes: successes.min(success_threshold),
        }
    }
}

impl Health {
    fn visible(&self, policy: &Policy) -> Visible<'static> {
        Visible::new(
            self.last.outcome.name(),
            self.consecutive_failures,
            self.consecutive_successes,
            policy.failure_threshold,
            policy.success_threshold,
        )
    }
}

/// Folds `report` into `previous`; returns the new record and whether the domain should be
/// reconciled: when what a user sees changes ([`Visible`]), and once per heartbeat otherwise.
pub fn record(
    previous: Option<&Tracked>,
    report: Report,
    at: Timestamp,
    policy: &Policy,
    now: Instant,
) -> (Tracked, bool) {
    let (failures, successes) = previous.map_or((0, 0), |p| {
        (p.health.consecutive_failures, p.health.consecutive_successes)
    });
    let (consecutive_failures, consecutive_successes) = match report.outcome {
        Outcome::Ok => (0, successes.saturating_add(1)),
        outcome if policy.counts(outcome) => (failures.saturating_add(1), 0),
        Outcome::Failed(_) => (0, 0),
    };
    let health = Health {
        last: report,
        at,
        consecutive_failures,
        consecutive_successes,
    };
    let notify = match previous {
        None => true,
        Some(previous) => {
            previous.health.visible(policy) != health.visible(policy)
                || now.duration_since(previous.notified) >= policy.heartbeat
        }
    };
    let notified = match (previous, notify) {
        (Some(previous), false) => previous.notified,
        _ => now,
    };
    (Tracked { health, notified }, notify)
}

/// Every probed domain's record, and how many of them are failing now (a counted failure as
/// their latest result), kept up to date with each result.
#[derive(Default)]
pub struct Board {
    tracked: HashMap<DomainKey, Tracked>,
    failing: usize,
}

impl Tracked {
    fn failing(&self) -> bool {
        self.health.consecutive_failures > 0
    }
}

impl Board {
    pub fn health(&self, key: &DomainKey) -> Option<&Health> {
        self.tracked.get(key).map(|tracked| &tracked.health)
    }

    /// Folds `report` into `key`'s record ([`record`]); returns whether to reconcile it.
    pub fn record(&mut self, key: &DomainKey, report: Report, at: Timestamp, policy: &Policy, now: Instant) -> bool {
        let previous = self.tracked.get(key);
        let was_failing = previous.is_some_and(Tracked::failing);
        let (next, notify) = record(previous, report, at, policy, now);
        self.failing = self.failing + usize::from(next.failing()) - usize::from(was_failing);
        self.tracked.insert(key.clone(), next);
        notify
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &DomainKey) {
        if self.tracked.remove(key).as_ref().is_some_and(Tracked::failing) {
            self.failing -= 1;
        }
    }

    /// Forgets every domain `keep` refuses.
    pub fn retain(&mut self, keep: impl Fn(&DomainKey) -> bool) {
        self.tracked.retain(|key, _| keep(key));
        self.failing = self.tracked.values().filter(|tracked| tracked.failing()).count();
    }

    /// How many domains are failing, of how many probed.
    pub fn failing_of_probed(&self) -> (usize, usize) {
        (self.failing, self.tracked.len())
    }

    /// The failing domains.
    pub fn failing_domains(&self) -> impl Iterator<Item = &DomainKey> {
        self.tracked
            .iter()
            .filter(|(_, tracked)| tracked.failing())
            .map(|(key, _)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            failure_threshold: 3,
            success_threshold: 2,
            failure_classes: vec![ProbeFailureClass::Refused, ProbeFailureClass::Timeout],
            heartbeat: Duration::from_secs(60),
        }
    }

    fn report(outcome: Outcome) -> Report {
        Report {
            outcome,
            latency: Duration::from_millis(3),
            detail: String::new(),
        }
    }

    /// Feeds outcomes one second apart; returns the final record and the notifications.
    fn feed(outcomes: &[Outcome]) -> (Health, Vec<bool>) {
        let start = Instant::now();
        let mut health: Option<Tracked> = None;
        let mut notified = Vec::new();
        for (i, outcome) in outcomes.iter().enumerate() {
            let now = start + Duration::from_secs(i as u64);
            let (next, notify) = record(health.as_ref(), report(*outcome), Timestamp::UNIX_EPOCH, &policy(), now);
            health = Some(next);
            notified.push(notify);
        }
        (health.expect("at least one outcome").health, notified)
    }

    const REFUSED: Outcome = Outcome::Failed(ProbeFailureClass::Refused);
    const GREETING_4XX: Outcome = Outcome::Failed(ProbeFailureClass::Greeting4xx);

    #[test]
    fn counts_runs_of_failures_and_successes() {
        let (health, _) = feed(&[Outcome::Ok, REFUSED, REFUSED]);
        assert_eq!((health.consecutive_failures, health.consecutive_successes), (2, 0));
        let (health, _) = feed(&[REFUSED, REFUSED, Outcome::Ok]);
        assert_eq!((health.consecutive_failures, health.consecutive_successes), (0, 1));
    }

    #[test]
    fn an_unlisted_failure_class_counts_neither_way() {
        let (health, _) = feed(&[REFUSED, REFUSED, GREETING_4XX, REFUSED]);
        assert_eq!(
            health.consecutive_failures, 1,
            "the 4xx greeting broke the run of counted failures"
        );
        let (health, _) = feed(&[Outcome::Ok, GREETING_4XX]);
        assert_eq!(health.consecutive_successes, 0, "nor is it a success");
    }

    #[test]
    fn a_steady_state_asks_for_a_reconcile_only_once_a_heartbeat() {
        let outcomes = vec![Outcome::Ok; 200];
        let (_, notified) = feed(&outcomes);
        // First result, the run to the success threshold (2), then every 60 s.
        let at: Vec<usize> = notified
            .iter()
            .enumerate()
            .filter(|(_, n)| **n)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at, vec![0, 1, 61, 121, 181]);
    }

    #[test]
    fn every_failure_up_to_the_threshold_and_every_change_is_reported() {
        let (_, notified) = feed(&[
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Ok,
            REFUSED,
            REFUSED,
            REFUSED,
            REFUSED,
            Outcome::Ok,
        ]);
        assert_eq!(notified, vec![true, true, false, true, true, true, false, true]);
    }

    #[test]
    fn the_board_counts_failing_domains_through_results_and_removals() {
        let now = Instant::now();
        let mut board = Board::default();
        let key = |name: &str| ("tenant".to_owned(), name.to_owned());
        for (name, outcome) in [("a", REFUSED), ("b", REFUSED), ("c", Outcome::Ok), ("d", GREETING_4XX)] {
            board.record(&key(name), report(outcome), Timestamp::UNIX_EPOCH, &policy(), now);
        }
        assert_eq!(board.failing_of_probed(), (2, 4), "an uncounted class is not failing");
        board.record(&key("a"), report(REFUSED), Timestamp::UNIX_EPOCH, &policy(), now);
        assert_eq!(board.failing_of_probed(), (2, 4), "a second failure is the same domain");
        board.record(&key("b"), report(Outcome::Ok), Timestamp::UNIX_EPOCH, &policy(), now);
        assert_eq!(board.failing_of_probed(), (1, 4));
        board.remove(&key("a"));
        assert_eq!(board.failing_of_probed(), (0, 3));
        board.record(&key("c"), report(REFUSED), Timestamp::UNIX_EPOCH, &policy(), now);
        board.retain(|k| k.1 != "c");
        assert_eq!(board.failing_of_probed(), (0, 2));
        assert_eq!(board.failing_domains().count(), 0);
    }
}
