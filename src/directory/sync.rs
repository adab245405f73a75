//! Reads every registered directory on its own period, apart from reconciles: a reconcile
//! registers what its domain's spec and bind Secret say and reads what is known; it never
//! waits for a directory. Each domain's reads run in a task of their own, at most
//! [`MAX_CONCURRENT_READS`] at once; a read's outcome is folded into what is known
//! ([`fold`]), and the domain is handed to the reconciler only when that changes something a
//! user would see: the listed addresses, or whether (and why) the directory fails.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::ldap::{self, Bind, Query, ReadError};
use super::{Knowledge, Listing, addresses_of};
use crate::health::networks::ProbeNetworks;
use crate::health::resolver::Resolver;
use crate::health::scheduler::DomainKey;
use crate::jitter::jittered;
use crate::telemetry::Metrics;

/// Most directory reads in flight at once, over all domains.
pub const MAX_CONCURRENT_READS: usize = 16;

/// How one domain's directory is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub query: Query,
    pub bind: Option<Bind>,
    pub period: Duration,
    /// The mail domain whose addresses count.
    pub domain: String,
    pub networks: Arc<ProbeNetworks>,
}

struct Entry {
    registration: Arc<Registration>,
    knowledge: Knowledge,
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    entries: Mutex<HashMap<DomainKey, Entry>>,
    resolver: Resolver,
    reads: Semaphore,
    metrics: Arc<Metrics>,
    notify: Box<dyn Fn(&DomainKey) + Send + Sync>,
}

impl Shared {
    fn entries(&self) -> MutexGuard<'_, HashMap<DomainKey, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The directory readers of every domain that has one.
pub struct DirectorySync {
    shared: Arc<Shared>,
}

impl DirectorySync {
    /// Readers resolving names with `resolver`; `notify` hands a domain to the reconciler.
    pub fn new(resolver: Resolver, metrics: Arc<Metrics>, notify: impl Fn(&DomainKey) + Send + Sync + 'static) -> Self {
        DirectorySync {
            shared: Arc::new(Shared {
                entries: Mutex::new(HashMap::new()),
                resolver,
                reads: Semaphore::new(MAX_CONCURRENT_READS),
                metrics,
                notify: Box::new(notify),
            }),
        }
    }

    /// Reads `key`'s directory as `registration` says, from now on; a new or changed
    /// registration is read at once. What is known stays: new settings that fail do not
    /// shrink coverage either.
    pub fn register(&self, key: &DomainKey, registration: Registration) {
        let mut entries = self.shared.entries();
        if entries.get(key).is_some_and(|e| *e.registration == registration) {
            return;
        }
        let registration = Arc::new(registration);
        let task = tokio::spawn(read_every_period(
            Arc::downgrade(&self.shared),
            key.clone(),
            registration.clone(),
        ));
        let knowledge = entries
            .remove(key)
            .map(|mut old| std::mem::take(&mut old.knowledge))
            .unwrap_or_default();
        entries.insert(
            key.clone(),
            Entry {
                registration,
                knowledge,
                task,
            },
        );
    }

    /// Starts `key` from `addresses` (as its coverage ConfigMap lists them) while no read has
    /// succeeded since this operator started.
    pub fn seed(&self, key: &DomainKey, addresses: BTreeSet<String>) {
        if let Some(entry) = self.shared.entries().get_mut(key)
            && entry.knowledge.listing.is_none()
        {
            entry.knowledge.listing = Some(Arc::new(Listing {
                addresses,
                read_at: None,
            }));
        }
    }

    /// What is known of `key`'s directory, if it is registered.
    pub fn knowledge(&self, key: &DomainKey) -> Option<Knowledge> {
        self.shared.entries().get(key).map(|e| e.knowledge.clone())
    }

    /// Stops reading `key`'s directory and forgets it.
    pub fn deregister(&self, key: &DomainKey) {
        self.shared.entries().remove(key);
    }

    /// Forgets every directory but those of `present` (after a relist, which may have missed
    /// deletions).
    pub fn retain(&self, present: &[DomainKey]) {
        let present: std::collections::HashSet<&DomainKey> = present.iter().collect();
        self.shared.entries().retain(|key, _| present.contains(key));
    }
}

async fn read_every_period(shared: Weak<Shared>, key: DomainKey, registration: Arc<Registration>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let result = {
            let _permit = strong.reads.acquire().await;
            ldap::read(
                &registration.query,
                registration.bind.as_ref(),
                &registration.networks,
                &strong.resolver,
            )
            .await
        }
        .map(|values| addresses_of(values, &registration.domain));
        strong.metrics.directory_read(match &result {
            Ok(_) => "Ok",
            Err(error) => error.step.name(),
        });
        let changed = {
            let mut entries = strong.entries();
            let Some(entry) = entries
                .get_mut(&key)
                .filter(|e| Arc::ptr_eq(&e.registration, &registration))
            else {
                return;
            };
            let (knowledge, changed) = fold(&entry.knowledge, result, Timestamp::now());
            entry.knowledge = knowledge;
            changed
        };
        if changed {
            (strong.notify)(&key);
        }
        drop(strong);
        tokio::time::sleep(jittered(registration.period, 0.1, &key)).await;
    }
}

/// What is known after a read with `result`, and whether a user would see the difference.
pub fn fold(known: &Knowledge, result: Result<BTreeSet<String>, ReadError>, now: Timestamp) -> (Knowledge, bool) {
    match result {
        Ok(addresses) => {
            let changed = known.failing.is_some() || known.listing.as_ref().map(|l| &l.addresses) != Some(&addresses);
            let listing = Listing {
                addresses,
                read_at: Some(now),
            };
            (
                Knowledge {
                    listing: Some(Arc::new(listing)),
                    failing: None,
                },
                changed,
            )
        }
        Err(error) => {
            let changed = known.failing.as_ref() != Some(&error);
            (
                Knowledge {
                    listing: known.listing.clone(),
                    failing: Some(error),
                },
                changed,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Step;

    fn set(addresses: &[&str]) -> BTreeSet<String> {
        addresses.iter().map(|a| (*a).to_owned()).collect()
    }

    fn down(message: &str) -> ReadError {
        ReadError {
            step: Step::Connect,
            message: message.into(),
        }
    }

    #[test]
    fn a_failing_directory_keeps_the_last_listing() {
        let t = |s| Timestamp::from_second(s).unwrap();
        let (read, changed) = fold(&Knowledge::default(), Ok(set(&["a@x.org"])), t(10));
        assert!(changed, "the first listing");
        let (same, changed) = fold(&read, Ok(set(&["a@x.org"])), t(20));
        assert!(!changed, "the same addresses again are no news");
        assert_eq!(same.listing.as_ref().unwrap().read_at, Some(t(20)));

        let (failed, changed) = fold(&same, Err(down("refused")), t(30));
        assert!(changed);
        assert_eq!(failed.listing.as_ref().unwrap().addresses, set(&["a@x.org"]), "kept");
        let (still, changed) = fold(&failed, Err(down("refused")), t(40));
        assert!(!changed, "the same failure again is no news");
        let (other, changed) = fold(&still, Err(down("timed out")), t(50));
        assert!(changed, "a different failure is shown");
        assert_eq!(other.failing.as_ref().unwrap().message, "timed out");

        let (back, changed) = fold(&other, Ok(set(&["a@x.org"])), t(60));
        assert!(changed, "recovered");
        assert_eq!(back.failing, None);
        let (grown, changed) = fold(&back, Ok(set(&["a@x.org", "b@x.org"])), t(70));
        assert!(changed, "a new address");
        assert_eq!(grown.listing.unwrap().addresses.len(), 2);
    }
}
