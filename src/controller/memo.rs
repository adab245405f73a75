//! Memory of the writes made in the last few seconds.
//!
//! Right after the operator writes a status or a child, its caches still hold the old version
//! for a moment; a reconcile in that window (our own write triggers one) would see a
//! difference and send the same content again. The memo answers "did we just send exactly
//! this?" so such writes are skipped; the caller then re-checks shortly after, when the cache
//! has caught up, so a child deleted in that same window is still restored.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long a write is remembered; far longer than a watch event takes to arrive.
pub const WINDOW: Duration = Duration::from_secs(5);

/// Values remembered for [`WINDOW`] after they were recorded, by key.
pub struct Recent<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Recent<V> {
    /// What was recorded for `key` within the window.
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < WINDOW)
            .map(|(value, _)| value.clone())
    }

    /// Records `value` for `key`, now.
    pub fn record(&self, key: String, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Expired entries are pruned each time the map doubles (from 64 entries on): amortised
        // constant work, and the map stays the size of a few seconds of writes.
        if entries.len() >= 64 && entries.len().is_power_of_two() {
            entries.retain(|_, (_, at)| at.elapsed() < WINDOW);
        }
        entries.insert(key, (value, Instant::now()));
    }
}

/// Content hashes of recent writes, by target.
pub type WriteMemo = Recent<u64>;

impl WriteMemo {
    /// Whether `content` was written to `target` within the window.
    pub fn recently_written(&self, target: &str, content: u64) -> bool {
        self.get(target) == Some(content)
    }
}

/// The last status written per object (by uid), for a reconcile that runs before the cache
/// holds it: deciding from the older status would, for example, flip a route a second time.
pub type LastWritten<T> = Recent<T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remembers_exact_content_for_the_window_only() {
        let memo = WriteMemo::default();
        memo.record("status:uid-1".into(), 42);
        assert!(memo.recently_written("status:uid-1", 42));
        assert!(
            !memo.recently_written("status:uid-1", 43),
            "other content is a real change"
        );
        assert!(!memo.recently_written("status:uid-2", 42));
        tokio::time::advance(WINDOW).await;
        assert!(
            !memo.recently_written("status:uid-1", 42),
            "after the window the cache is trusted"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn prunes_expired_entries_as_it_grows() {
        let memo = Recent::<u32>::default();
        for i in 0..64 {
            memo.record(format!("old-{i}"), i);
        }
        tokio::time::advance(WINDOW).await;
        memo.record("new".into(), 1);
        assert_eq!(memo.entries.lock().unwrap().len(), 1, "the 64 expired entries are gone");
        assert_eq!(memo.get("new"), Some(1));
        assert_eq!(memo.get("old-3"), None);
    }
}
