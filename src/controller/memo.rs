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

/// Content hashes of recent writes, by target.
#[derive(Default)]
pub struct WriteMemo {
    entries: Mutex<HashMap<String, (u64, Instant)>>,
}

impl WriteMemo {
    /// Whether `content` was written to `target` within the window.
    pub fn recently_written(&self, target: &str, content: u64) -> bool {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(target)
            .is_some_and(|(hash, at)| *hash == content && at.elapsed() < WINDOW)
    }

    /// Records that `content` was just written to `target`.
    pub fn record(&self, target: String, content: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Expired entries are pruned each time the map doubles (from 64 entries on): amortised
        // constant work, and the map stays the size of a few seconds of writes.
        if entries.len() >= 64 && entries.len().is_power_of_two() {
            entries.retain(|_, (_, at)| at.elapsed() < WINDOW);
        }
        entries.insert(target, (content, Instant::now()));
    }
}

/// The last status written per object (by uid), for a reconcile that runs before the cache
/// holds it: deciding from the older status would, for example, flip a route a second time.
pub struct LastWritten<T> {
    entries: Mutex<HashMap<String, (T, Instant)>>,
}

impl<T> Default for LastWritten<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> LastWritten<T> {
    /// What was written for `uid` within the window.
    pub fn get(&self, uid: &str) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(uid)
            .filter(|(_, at)| at.elapsed() < WINDOW)
            .map(|(value, _)| value.clone())
    }

    /// Records what was just written for `uid`.
    pub fn record(&self, uid: String, value: T) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= 64 && entries.len().is_power_of_two() {
            entries.retain(|_, (_, at)| at.elapsed() < WINDOW);
        }
        entries.insert(uid, (value, Instant::now()));
    }
}

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
}
