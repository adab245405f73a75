//! The agent's HTTP endpoint, the only way into the ledger from outside the pod (the operator
//! and `kubectl continuity messages` reach it through the API server's service proxy):
//! `/summary` (counts, and whether hand-back runs), `/messages` (entries, filtered by `state`
//! and `recipient`, newest first, at most `limit`), `/metrics` and `/healthz`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State as Shared};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::ledger::{Counts, Entry, Ledger, State};
use super::settings::HandBackSettings;

/// The Service port name and number of the endpoint.
pub const PORT_NAME: &str = "agent";
pub const PORT: u16 = 8025;
/// Most entries one `/messages` answer lists unless asked for fewer.
pub const DEFAULT_LIMIT: usize = 1000;

/// `/summary`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(flatten)]
    pub counts: Counts,
    /// The primary held mail is handed back to now (`[host]:port`); absent while held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivering_to: Option<String>,
}

/// `/messages`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MessageList {
    /// Entries matching the filter, in all.
    pub total: usize,
    /// The newest of them, at most the limit.
    pub items: Vec<Entry>,
}

/// `/messages`' filter.
#[derive(Deserialize, Debug, Default)]
pub struct Filter {
    pub state: Option<State>,
    pub recipient: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Clone)]
struct Endpoint {
    ledger: Arc<Mutex<Ledger>>,
    settings: watch::Receiver<HandBackSettings>,
}

/// The router.
pub fn router(ledger: Arc<Mutex<Ledger>>, settings: watch::Receiver<HandBackSettings>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/summary", get(summary))
        .route("/messages", get(messages))
        .route("/metrics", get(metrics))
        .with_state(Endpoint { ledger, settings })
}

fn unavailable() -> (StatusCode, &'static str) {
    (StatusCode::SERVICE_UNAVAILABLE, "the ledger is unavailable\n")
}

fn current(endpoint: &Endpoint) -> Option<Summary> {
    let counts = endpoint.ledger.lock().ok()?.counts();
    let delivering_to = endpoint.settings.borrow().deliver_to.as_ref().map(ToString::to_string);
    Some(Summary { counts, delivering_to })
}

async fn summary(Shared(endpoint): Shared<Endpoint>) -> impl IntoResponse {
    current(&endpoint).map(Json).ok_or_else(unavailable)
}

/// The entries matching `filter`, newest first.
pub fn select(ledger: &Ledger, filter: &Filter) -> MessageList {
    let matching: Vec<&Entry> = ledger
        .entries()
        .filter(|e| filter.state.is_none_or(|s| s == e.state))
        .filter(|e| {
            filter
                .recipient
                .as_ref()
                .is_none_or(|r| r.eq_ignore_ascii_case(&e.recipient))
        })
        .collect();
    MessageList {
        total: matching.len(),
        items: matching
            .into_iter()
            .rev()
            .take(filter.limit.unwrap_or(DEFAULT_LIMIT))
            .cloned()
            .collect(),
    }
}

async fn messages(Shared(endpoint): Shared<Endpoint>, Query(filter): Query<Filter>) -> impl IntoResponse {
    let ledger = endpoint.ledger.lock().map_err(|_| unavailable())?;
    Ok::<_, (StatusCode, &str)>(Json(select(&ledger, &filter)))
}

/// Prometheus text format, written out: five series do not need a registry.
pub fn metrics_text(summary: &Summary, now: Timestamp) -> String {
    let counts = &summary.counts;
    let oldest = counts
        .oldest_pending
        .map_or(0, |t| now.duration_since(t).as_secs().max(0));
    format!(
        "# HELP continuity_handback_messages Messages held for the primary, by state (held counts every one ever held).
# TYPE continuity_handback_messages gauge
continuity_handback_messages{{state=\"held\"}} {}
continuity_handback_messages{{state=\"pending\"}} {}
continuity_handback_messages{{state=\"delivered\"}} {}
continuity_handback_messages{{state=\"failed\"}} {}
# HELP continuity_handback_oldest_pending_seconds Age of the oldest message waiting for the primary (0 when none).
# TYPE continuity_handback_oldest_pending_seconds gauge
continuity_handback_oldest_pending_seconds {oldest}
# HELP continuity_handback_delivering 1 while held mail is handed back to the primary.
# TYPE continuity_handback_delivering gauge
continuity_handback_delivering {}
",
        counts.held,
        counts.pending,
        counts.delivered,
        counts.failed,
        u8::from(summary.delivering_to.is_some()),
    )
}

async fn metrics(Shared(endpoint): Shared<Endpoint>) -> impl IntoResponse {
    current(&endpoint)
        .map(|summary| metrics_text(&summary, Timestamp::now()))
        .ok_or_else(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_filtered_by_state_and_recipient_newest_first() {
        let dir = std::env::temp_dir().join(format!("tracking-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut ledger = Ledger::open(&dir).unwrap();
        let now = Timestamp::UNIX_EPOCH;
        for (body, to) in [("1", "a@example.com"), ("2", "b@example.com"), ("3", "A@example.com")] {
            ledger.hold(body.as_bytes(), "", to, now).unwrap();
        }
        ledger.settle(2, State::Failed, "550 no", now).unwrap();
        let deferred_for_a = select(
            &ledger,
            &Filter {
                state: Some(State::Deferred),
                recipient: Some("a@example.com".into()),
                limit: None,
            },
        );
        assert_eq!(deferred_for_a.total, 2);
        assert_eq!(
            deferred_for_a.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 1]
        );
        let one = select(
            &ledger,
            &Filter {
                limit: Some(1),
                ..Filter::default()
            },
        );
        assert_eq!((one.total, one.items.len()), (3, 1));
    }

    #[test]
    fn metrics_give_the_oldest_pending_age() {
        let summary = Summary {
            counts: Counts {
                held: 3,
                pending: 1,
                oldest_pending: Some(Timestamp::from_second(100).unwrap()),
                ..Counts::default()
            },
            delivering_to: None,
        };
        let text = metrics_text(&summary, Timestamp::from_second(160).unwrap());
        assert!(
            text.contains("continuity_handback_oldest_pending_seconds 60\n"),
            "{text}"
        );
        assert!(text.contains("continuity_handback_messages{state=\"held\"} 3\n"));
        assert!(text.contains("continuity_handback_delivering 0\n"));
    }
}
