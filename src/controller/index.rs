//! Secondary indexes over watched objects, so that "which users reference this domain" and
//! "who claims this mail domain" are lookups, not scans of every object: with thousands of
//! domains a scan per watch event would make a full resync quadratic.
//!
//! An index is fed the same watcher events a reflector gets, and answers which keys an event
//! touched, so the controller can reconcile exactly the objects related to those keys, under
//! the old key as well as the new one when an object moves.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

use kube::ResourceExt;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

type ObjectKey = (String, String);

/// Maps each object (by namespace and name) to at most one key and an entry.
pub struct Index<K, Key, Entry> {
    extract: fn(&K) -> Option<(Key, Entry)>,
    state: RwLock<State<Key, Entry>>,
    /// Turns true once the initial list is indexed.
    synced: watch::Sender<bool>,
}

struct State<Key, Entry> {
    by_object: HashMap<ObjectKey, (Key, Entry)>,
    by_key: HashMap<Key, HashMap<ObjectKey, Entry>>,
    /// Objects seen during a (re)list, swapped in when it completes.
    relisting: Option<HashMap<ObjectKey, (Key, Entry)>>,
}

fn object_key<K: ResourceExt>(object: &K) -> ObjectKey {
    (object.namespace().unwrap_or_default(), object.name_any())
}

impl<K, Key, Entry> Index<K, Key, Entry>
where
    K: ResourceExt,
    Key: Clone + Eq + Hash,
    Entry: Clone + PartialEq,
{
    /// An empty index whose key and entry for an object come from `extract` (`None`: the
    /// object is not indexed).
    pub fn new(extract: fn(&K) -> Option<(Key, Entry)>) -> Self {
        Self {
            extract,
            state: RwLock::new(State {
                by_object: HashMap::new(),
                by_key: HashMap::new(),
                relisting: None,
            }),
            synced: watch::Sender::new(false),
        }
    }

    /// Applies one watcher event; returns the keys whose entries changed.
    pub fn apply(&self, event: &Event<K>) -> Vec<Key> {
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Apply(object) => {
                let new = (self.extract)(object);
                state.replace(object_key(object), new)
            }
            Event::Delete(object) => state.replace(object_key(object), None),
            Event::Init => {
                state.relisting = Some(HashMap::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                if let Some(new) = (self.extract)(object) {
                    state
                        .relisting
                        .get_or_insert_with(HashMap::new)
                        .insert(object_key(object), new);
                }
                Vec::new()
            }
            Event::InitDone => {
                let listed = state.relisting.take().unwrap_or_default();
                let gone: Vec<ObjectKey> = state
                    .by_object
                    .keys()
                    .filter(|k| !listed.contains_key(*k))
                    .cloned()
                    .collect();
                let mut touched: Vec<Key> = gone.into_iter().flat_map(|k| state.replace(k, None)).collect();
                for (object, new) in listed {
                    touched.extend(state.replace(object, Some(new)));
                }
                self.synced.send_replace(true);
                touched
            }
        }
    }

    /// The entries under `key`.
    pub fn get(&self, key: &Key) -> Vec<Entry> {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .by_key
            .get(key)
            .map(|entries| entries.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the initial list has been indexed.
    pub fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once the initial list has been indexed.
    pub async fn wait_until_synced(&self) {
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = self.synced.subscribe().wait_for(|synced| *synced).await;
    }
}

impl<Key: Clone + Eq + Hash, Entry: Clone + PartialEq> State<Key, Entry> {
    /// Sets an object's key and entry; returns the keys whose entries changed (the old and the
    /// new key when the object moved, nothing when nothing changed).
    fn replace(&mut self, object: ObjectKey, new: Option<(Key, Entry)>) -> Vec<Key> {
        let old = self.by_object.remove(&object);
        if old == new {
            if let Some(kept) = old {
                self.by_object.insert(object, kept);
            }
            return Vec::new();
        }
        let mut touched = Vec::new();
        if let Some((old_key, _)) = old {
            if let Some(entries) = self.by_key.get_mut(&old_key) {
                entries.remove(&object);
                if entries.is_empty() {
                    self.by_key.remove(&old_key);
                }
            }
            touched.push(old_key);
        }
        if let Some((new_key, entry)) = new {
            self.by_key
                .entry(new_key.clone())
                .or_default()
                .insert(object.clone(), entry.clone());
            self.by_object.insert(object, (new_key.clone(), entry));
            if !touched.contains(&new_key) {
                touched.push(new_key);
            }
        }
        touched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ContinuityUser;
    use crate::testing::fixture;

    fn user(name: &str, domain: &str) -> ContinuityUser {
        let mut u: ContinuityUser = fixture("user-alice.yaml");
        u.metadata.name = Some(name.into());
        u.spec.domain_ref.name = domain.into();
        u
    }

    fn by_domain(u: &ContinuityUser) -> Option<(String, String)> {
        Some((u.spec.domain_ref.name.clone(), u.name_any()))
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn moving_an_object_touches_its_old_and_new_key() {
        let index = Index::new(by_domain);
        assert_eq!(index.apply(&Event::Apply(user("alice", "a"))), vec!["a".to_owned()]);
        assert_eq!(index.apply(&Event::Apply(user("bob", "a"))), vec!["a".to_owned()]);
        assert_eq!(sorted(index.get(&"a".into())), vec!["alice", "bob"]);

        // An unchanged object touches nothing.
        assert!(index.apply(&Event::Apply(user("alice", "a"))).is_empty());

        assert_eq!(
            index.apply(&Event::Apply(user("alice", "b"))),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(index.get(&"a".into()), vec!["bob"]);
        assert_eq!(index.get(&"b".into()), vec!["alice"]);

        assert_eq!(index.apply(&Event::Delete(user("bob", "a"))), vec!["a".to_owned()]);
        assert!(index.get(&"a".into()).is_empty());
    }

    #[test]
    fn a_relist_replaces_the_contents_and_reports_what_changed() {
        let index = Index::new(by_domain);
        assert!(!index.synced());
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(user("alice", "a")));
        index.apply(&Event::InitApply(user("bob", "b")));
        assert!(
            index.get(&"a".into()).is_empty(),
            "nothing is visible before the list completes"
        );
        let touched = sorted(index.apply(&Event::InitDone));
        assert_eq!(touched, vec!["a", "b"]);
        assert!(index.synced());

        // bob vanished while the watch was down; carol appeared.
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(user("alice", "a")));
        index.apply(&Event::InitApply(user("carol", "c")));
        assert_eq!(sorted(index.apply(&Event::InitDone)), vec!["b", "c"]);
        assert!(index.get(&"b".into()).is_empty());
        assert_eq!(index.get(&"c".into()), vec!["carol"]);
    }

    #[tokio::test]
    async fn waiting_for_the_sync_resolves_when_the_list_is_indexed() {
        let index = Index::new(by_domain);
        let mut waiting = std::pin::pin!(index.wait_until_synced());
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(user("alice", "a")));
        assert!(futures::poll!(waiting.as_mut()).is_pending(), "not before InitDone");
        index.apply(&Event::InitDone);
        waiting.await;
    }
}
