//! Spreading retries: a stable pseudo-random fraction per key, so that replicas or objects
//! that failed together (the API server was down) do not retry in lockstep. Derived from a
//! hash of the key rather than a random number generator: reproducible in tests, and as
//! spread as the keys are.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// A fraction in `[0, 1)` that depends only on `key`.
pub fn fraction(key: impl Hash) -> f64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    // The top 53 bits make an exactly representable f64 in [0, 1).
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `base` plus up to `factor` times `base`, by `key`: client-go's `wait.Jitter`.
pub fn jittered(base: Duration, factor: f64, key: impl Hash) -> Duration {
    base + base.mul_f64(factor * fraction(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_factor_and_spreads_keys() {
        let base = Duration::from_secs(2);
        let delays: Vec<Duration> = (0..200).map(|key| jittered(base, 1.2, key)).collect();
        assert!(delays.iter().all(|d| *d >= base && *d < base.mul_f64(2.2)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 190, "keys get different delays");
        assert_eq!(jittered(base, 1.2, "a"), jittered(base, 1.2, "a"), "stable per key");
        let mean = delays.iter().map(Duration::as_secs_f64).sum::<f64>() / 200.0;
        assert!((2.9..3.3).contains(&mean), "about base + factor/2: {mean}");
    }
}
