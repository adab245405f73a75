//! Hands held mail back to the primary over SMTP (with `lettre`'s connection, one recipient
//! per transaction so that each entry gets its own answer), oldest first and throttled. The
//! agent opens the TCP connection itself to set `TCP_NODELAY`: without it the message's last
//! segment waits for the primary's delayed ACK, 40 ms per message (measured: 20 messages/s). An entry
//! is marked `Delivered` only after the primary's 250; a 5xx marks it `Failed` with the reply;
//! a 4xx waits and is retried, the wait doubling per attempt; a primary that cannot be reached
//! at all pauses the whole hand-back the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use super::ledger::{self, Entry, Ledger, State};
use super::settings::{Destination, HandBackSettings};

/// Longest wait, as a multiple of the first.
const MAX_BACKOFF_FACTOR: u32 = 16;
/// How long one SMTP exchange with the primary may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the primary made of one entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted(String),
    Refused(String),
    TryLater(String),
    /// Not reached at all (connection refused, timeout): every entry waits.
    Unreachable(String),
}

/// The wait before attempt `attempts + 1`.
pub fn backoff(retry_seconds: u32, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(MAX_BACKOFF_FACTOR.trailing_zeros());
    Duration::from_secs(u64::from(retry_seconds.max(1)) * u64::from(factor))
}

fn address(text: &str) -> Result<Option<Address>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<Address>()
        .map(Some)
        .map_err(|e| format!("<{text}> cannot be sent over SMTP: {e}"))
}

/// One SMTP connection to the primary, opened when needed and dropped after any error.
pub struct Primary {
    destination: Destination,
    helo: ClientId,
    connection: Option<AsyncSmtpConnection>,
}

impl Primary {
    pub fn new(destination: Destination, helo: &str) -> Self {
        Primary {
            destination,
            helo: ClientId::Domain(helo.to_owned()),
            connection: None,
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let address = (self.destination.host.as_str(), self.destination.port);
        let stream = tokio::time::timeout(SMTP_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| format!("connecting to {} timed out", self.destination))?
            .map_err(|e| format!("connecting to {}: {e}", self.destination))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        tokio::time::timeout(
            SMTP_TIMEOUT,
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.helo),
        )
        .await
        .map_err(|_| format!("{} did not greet in time", self.destination))?
        .map_err(|e| format!("{}: {e}", self.destination))
    }

    /// Sends `message` for `entry`.
    pub async fn send(&mut self, entry: &Entry, message: &[u8]) -> Answer {
        let envelope = match envelope(entry) {
            Ok(envelope) => envelope,
            Err(reason) => return Answer::Refused(reason),
        };
        let mut connection = match self.connection.take().filter(|c| !c.has_broken()) {
            Some(connection) => connection,
            None => match self.connect().await {
                Ok(connection) => connection,
                Err(reason) => return Answer::Unreachable(reason),
            },
        };
        match tokio::time::timeout(SMTP_TIMEOUT, connection.send(&envelope, message)).await {
            Err(_) => Answer::Unreachable(format!("{} did not answer in time", self.destination)),
            Ok(Ok(response)) => {
                self.connection = Some(connection);
                Answer::Accepted(format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                ))
            }
            // After a refusal the session's state is unclear: the next message opens a new one.
            Ok(Err(e)) if e.is_permanent() => Answer::Refused(e.to_string()),
            Ok(Err(e)) if e.is_transient() => Answer::TryLater(e.to_string()),
            Ok(Err(e)) => Answer::Unreachable(e.to_string()),
        }
    }
}

fn envelope(entry: &Entry) -> Result<Envelope, String> {
    match (address(&entry.sender)?, address(&entry.recipient)?) {
        (from, Some(to)) => Envelope::new(from, vec![to]).map_err(|e| format!("invalid envelope: {e}")),
        (_, None) => Err("no recipient".into()),
    }
}

/// Per-entry retry state, kept in memory: after a restart every pending entry is tried at once.
#[derive(Default)]
struct Retries {
    per_entry: HashMap<u64, (u32, Instant)>,
    unreachable: u32,
}

/// Runs the hand-back until the process ends.
pub async fn run(ledger: Arc<Mutex<Ledger>>, mut settings: watch::Receiver<HandBackSettings>, arrived: Arc<Notify>) {
    let mut retries = Retries::default();
    let mut current: Option<(HandBackSettings, Primary)> = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut cursor = 0u64;
    loop {
        let wanted = settings.borrow_and_update().clone();
        let Some(destination) = wanted.deliver_to.clone() else {
            current = None;
            // Held until the route is back on the primary.
            let _ = settings.changed().await;
            continue;
        };
        if current.as_ref().is_none_or(|(s, _)| *s != wanted) {
            info!(primary = %destination, rate = wanted.messages_per_second, "handing held mail back");
            ticker = tokio::time::interval(Duration::from_secs_f64(
                1.0 / f64::from(wanted.messages_per_second.max(1)),
            ));
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            current = Some((wanted.clone(), Primary::new(destination.clone(), &wanted.helo_name)));
        }
        let now = Instant::now();
        let (due, next_retry) = next_due(&ledger, &retries, &mut cursor, now);
        let Some(entry) = due else {
            let wake = next_retry.unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                () = arrived.notified() => {}
                _ = settings.changed() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
            continue;
        };
        ticker.tick().await;
        let Some((_, primary)) = current.as_mut() else { continue };
        let message = {
            let ledger = ledger.lock();
            ledger.map_err(|_| ()).and_then(|l| l.message(&entry).map_err(|_| ()))
        };
        let answer = match message {
            Ok(bytes) => match record_attempt(&ledger, entry.seq).await {
                Ok(()) => primary.send(&entry, &bytes).await,
                Err(error) => Answer::Unreachable(format!("cannot record the attempt: {error}")),
            },
            Err(()) => Answer::Refused("the held copy is missing from the spool".into()),
        };
        let settled = match answer {
            Answer::Accepted(reply) => Some((State::Delivered, reply)),
            Answer::Refused(reply) => {
                warn!(seq = entry.seq, recipient = %entry.recipient, %reply, "the primary refused a held message");
                Some((State::Failed, reply))
            }
            Answer::TryLater(reply) => {
                let (attempts, _) = retries.per_entry.get(&entry.seq).copied().unwrap_or((0, now));
                let wait = backoff(wanted.retry_seconds, attempts + 1);
                info!(seq = entry.seq, %reply, retry_in = ?wait, "the primary deferred a held message");
                retries
                    .per_entry
                    .insert(entry.seq, (attempts + 1, Instant::now() + wait));
                Some((State::Deferred, reply))
            }
            Answer::Unreachable(reason) => {
                retries.unreachable += 1;
                let wait = backoff(wanted.retry_seconds, retries.unreachable);
                warn!(primary = %destination, %reason, retry_in = ?wait, "cannot reach the primary");
                cursor = entry.seq; // try this one first again
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = settings.changed() => {}
                }
                continue;
            }
        };
        retries.unreachable = 0;
        if let Some((state, reply)) = settled {
            if state != State::Deferred {
                retries.per_entry.remove(&entry.seq);
            }
            if let Err(error) = settle(&ledger, entry.seq, state, reply).await {
                // The primary has it; not recording that would send it again after a restart.
                warn!(%error, seq = entry.seq, "cannot record a hand-back; stopping hand-back until the ledger is writable");
                tokio::time::sleep(Duration::from_secs(u64::from(wanted.retry_seconds))).await;
            }
        }
    }
}

/// The next pending entry at or after the cursor (wrapping round) whose retry time has come,
/// and when the earliest waiting one is due.
fn next_due(
    ledger: &Mutex<Ledger>,
    retries: &Retries,
    cursor: &mut u64,
    now: Instant,
) -> (Option<Entry>, Option<Instant>) {
    let Ok(ledger) = ledger.lock() else {
        return (None, None);
    };
    let mut earliest: Option<Instant> = None;
    let mut due = |entry: &&Entry| match retries.per_entry.get(&entry.seq) {
        Some((_, at)) if *at > now => {
            earliest = Some(earliest.map_or(*at, |e| e.min(*at)));
            false
        }
        _ => true,
    };
    let found = ledger
        .pending_from(*cursor)
        .find(&mut due)
        .or_else(|| ledger.pending_from(0).take_while(|e| e.seq < *cursor).find(&mut due))
        .cloned();
    if let Some(entry) = &found {
        *cursor = entry.seq + 1;
    }
    (found, earliest)
}

async fn record_attempt(ledger: &Arc<Mutex<Ledger>>, seq: u64) -> std::io::Result<()> {
    ledger::blocking(ledger, move |ledger| ledger.attempt(seq, Timestamp::now())).await
}

async fn settle(ledger: &Arc<Mutex<Ledger>>, seq: u64, state: State, reply: String) -> std::io::Result<()> {
    ledger::blocking(ledger, move |ledger| {
        ledger.settle(seq, state, &reply, Timestamp::now())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_sixteen_times_the_first() {
        let waits: Vec<u64> = (1..=7).map(|n| backoff(30, n).as_secs()).collect();
        assert_eq!(waits, vec![30, 60, 120, 240, 480, 480, 480]);
    }
}
