//! Host name lookups for the probes, through the system resolver, bounded and briefly cached.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use super::probe::{Failure, fail};
use crate::api::domain::ProbeFailureClass;

/// Host name lookups shared by every probe. The system resolver runs on blocking threads that
/// a timed-out probe cannot cancel, so lookups are bounded (an unreachable resolver must not
/// pile them up) and answers are kept briefly (a domain is probed every few seconds).
pub(super) struct Resolver {
    answers: std::sync::Mutex<HashMap<String, (Instant, Lookup)>>,
    slots: Arc<Semaphore>,
}

/// The addresses of a name, or why there are none.
type Lookup = Result<Vec<IpAddr>, String>;

const RESOLVED_FOR: Duration = Duration::from_secs(30);
const UNRESOLVED_FOR: Duration = Duration::from_secs(5);
const CONCURRENT_LOOKUPS: usize = 32;

pub(super) static RESOLVER: LazyLock<Arc<Resolver>> = LazyLock::new(|| {
    Arc::new(Resolver {
        answers: std::sync::Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(CONCURRENT_LOOKUPS)),
    })
});

impl Resolver {
    fn cached(&self, host: &str) -> Option<Lookup> {
        let answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (at, answer) = answers.get(host)?;
        let ttl = if answer.is_ok() { RESOLVED_FOR } else { UNRESOLVED_FOR };
        (at.elapsed() < ttl).then(|| answer.clone())
    }

    pub(super) async fn resolve(self: &Arc<Self>, host: &str, deadline: Instant) -> Result<Vec<IpAddr>, Failure> {
        let answer = match self.cached(host) {
            Some(answer) => answer,
            None => {
                let Ok(Ok(slot)) = timeout_at(deadline, self.slots.clone().acquire_owned()).await else {
                    return Err(fail(
                        ProbeFailureClass::DnsFailure,
                        format!("no resolver slot free in time for {host}"),
                    ));
                };
                let resolver = self.clone();
                let name = host.to_owned();
                // The lookup finishes (and is cached) even when this probe stops waiting.
                let lookup = tokio::spawn(async move {
                    let answer = match tokio::net::lookup_host((name.as_str(), 0)).await {
                        Ok(found) => Ok(found.map(|a| a.ip()).collect::<Vec<_>>()),
                        Err(error) => Err(error.to_string()),
                    };
                    drop(slot);
                    let mut answers = resolver
                        .answers
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    answers.insert(name, (Instant::now(), answer.clone()));
                    answer
                });
                match timeout_at(deadline, lookup).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => {
                        return Err(fail(
                            ProbeFailureClass::DnsFailure,
                            format!("looking up {host} timed out"),
                        ));
                    }
                }
            }
        };
        match answer {
            Ok(addresses) if !addresses.is_empty() => Ok(addresses),
            Ok(_) => Err(fail(ProbeFailureClass::DnsFailure, format!("{host} has no address"))),
            Err(error) => Err(fail(ProbeFailureClass::DnsFailure, format!("{host}: {error}"))),
        }
    }
}
