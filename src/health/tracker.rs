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
    /// Reconcile at least this often while nothing else changes, so status shows a probe time
    /// at most this old.
    pub heartbeat: Duration,
}

/// A domain's health as seen by this replica since it started probing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub last: Report,
    /// When the latest probe finished.
    pub at: Timestamp,
    /// Failures of a class the domain counts, in a row (what routing acts on).
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Results equal to the latest one, in a row: what status shows of the primary changes
    /// only once a new result has repeated up to its threshold ([`Health::settled`]).
    pub streak: u32,
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

    /// How many times in a row `outcome` must come before it is believed.
    pub fn threshold(&self, outcome: Outcome) -> u32 {
        match outcome {
            Outcome::Ok => self.success_threshold,
            Outcome::Failed(_) => self.failure_threshold,
        }
    }
}

impl Health {
    /// Whether a run of results is on its way to a threshold: failures short of
    /// `failureThreshold`, or successes short of `successThreshold` (after a failure, or the
    /// first ones). The time to probe sooner, when the domain asks for it.
    pub fn in_transition(&self, policy: &Policy) -> bool {
        (1..policy.failure_threshold).contains(&self.consecutive_failures)
            || (1..policy.success_threshold).contains(&self.consecutive_successes)
    }

    /// Whether the latest result has repeated often enough to be shown instead of what was
    /// shown before: a primary flapping below its thresholds changes nothing a user sees.
    pub fn settled(&self, failure_threshold: u32, success_threshold: u32) -> bool {
        let threshold = match self.last.outcome {
            Outcome::Ok => success_threshold,
            Outcome::Failed(_) => failure_threshold,
        };
        self.streak >= threshold
    }
}

/// Folds `report` into `previous`; returns the new record and whether the domain should be
/// reconciled: after the first result, when a run reaches a threshold (routing may flip, or
/// what status shows of the primary may change), and once per heartbeat otherwise. A run
/// climbing towards a threshold, or falling back, is not worth a reconcile.
pub fn record(
    previous: Option<&Tracked>,
    report: Report,
    at: Timestamp,
    policy: &Policy,
    now: Instant,
) -> (Tracked, bool) {
    let (failures, successes, streak) = previous.map_or((0, 0, 0), |p| {
        let same = p.health.last.outcome == report.outcome;
        (
            p.health.consecutive_failures,
            p.health.consecutive_successes,
            if same { p.health.streak } else { 0 },
        )
    });
    let (consecutive_failures, consecutive_successes) = match report.outcome {
        Outcome::Ok => (0, successes.saturating_add(1)),
        outcome if policy.counts(outcome) => (failures.saturating_add(1), 0),
        Outcome::Failed(_) => (0, 0),
    };
    let streak = streak.saturating_add(1);
    let reached = consecutive_failures == policy.failure_threshold
        || consecutive_successes == policy.success_threshold
        || streak == policy.threshold(report.outcome);
    let health = Health {
        last: report,
        at,
        consecutive_failures,
        consecutive_successes,
        streak,
    };
    let notify = match previous {
        None => true,
        Some(previous) => {
            reached || (!policy.heartbeat.is_zero() && now.duration_since(previous.notified) >= policy.heartbeat)
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

    /// Folds `report` into `key`'s record ([`record`]); returns the domain's health and
    /// whether to reconcile it.
    pub fn record(
        &mut self,
        key: &DomainKey,
        report: Report,
        at: Timestamp,
        policy: &Policy,
        now: Instant,
    ) -> (Health, bool) {
        let previous = self.tracked.get(key);
        let was_failing = previous.is_some_and(Tracked::failing);
        let (next, notify) = record(previous, report, at, policy, now);
        self.failing = self.failing + usize::from(next.failing()) - usize::from(was_failing);
        let health = next.health.clone();
        self.tracked.insert(key.clone(), next);
        (health, notify)
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
    fn only_a_run_reaching_its_threshold_asks_for_a_reconcile() {
        let (health, notified) = feed(&[
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Ok,
            REFUSED,
            REFUSED,
            REFUSED,
            REFUSED,
            Outcome::Ok,
            Outcome::Ok,
        ]);
        // The first result; two successes; the third failure; two successes again.
        assert_eq!(
            notified,
            vec![true, true, false, false, false, true, false, false, true]
        );
        assert!(health.settled(3, 2));
    }

    #[test]
    fn a_primary_flapping_below_its_thresholds_asks_for_nothing() {
        let mut outcomes = vec![Outcome::Ok, Outcome::Ok];
        for _ in 0..20 {
            outcomes.extend([GREETING_4XX, Outcome::Ok, REFUSED, REFUSED, Outcome::Ok]);
        }
        let (health, notified) = feed(&outcomes);
        let asked = notified.iter().filter(|n| **n).count();
        // The first result and the run of two successes; then, within the 60 s heartbeat,
        // nothing; after it, one per heartbeat.
        assert_eq!(asked, 2 + (outcomes.len() - 2) / 60, "{notified:?}");
        assert!(!health.settled(3, 2), "a lone success is not believed yet");
    }

    #[test]
    fn a_failure_of_another_class_is_believed_after_its_own_run() {
        let (health, notified) = feed(&[GREETING_4XX, GREETING_4XX, GREETING_4XX]);
        assert_eq!(health.consecutive_failures, 0, "not a class that counts for routing");
        assert_eq!(health.streak, 3);
        assert!(health.settled(3, 2));
        assert_eq!(notified, vec![true, false, true], "shown once it repeated three times");
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
