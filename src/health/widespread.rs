//! Telling a customer's outage from the operator's own. When more than a share of all the
//! primaries this operator probes fail at the same time, the likely cause sits between the
//! operator and the world (its network, its resolver), not in every customer at once; flipping
//! them all would move hundreds of domains' mail to standbys for nothing, and flood the API
//! server exactly when it is least welcome. Failovers are then held until fewer fail. Pure.

/// When failures count as widespread: more than `share` of the probed primaries failing, once
/// at least `min_primaries` are probed (with fewer, one customer's outage is a large share).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    pub share: f64,
    pub min_primaries: usize,
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold {
            share: 0.5,
            min_primaries: 10,
        }
    }
}

impl Threshold {
    /// Whether `failing` of `probed` primaries failing at once is widespread.
    pub fn widespread(&self, failing: usize, probed: usize) -> bool {
        // "More than": 5 of 10 at 0.5 is not widespread.
        probed >= self.min_primaries && probed > 0 && (failing as f64) > self.share * (probed as f64)
    }

    /// The condition message of a held failover: the same at every probe (no counts).
    pub fn explain(&self) -> String {
        format!(
            "the primary is failing health checks, but so are more than {}% of the primaries this operator probes: the operator's own network is the likely cause, so failovers are held until fewer fail",
            (self.share * 100.0).round()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_the_share_of_enough_primaries_is_widespread() {
        let threshold = Threshold::default();
        assert!(!threshold.widespread(9, 9), "fewer primaries than the minimum");
        assert!(!threshold.widespread(5, 10), "exactly half is not more than half");
        assert!(threshold.widespread(6, 10));
        assert!(!threshold.widespread(400, 1000));
        assert!(threshold.widespread(501, 1000));
        assert!(!threshold.widespread(0, 0));
        let small = Threshold {
            share: 0.5,
            min_primaries: 1,
        };
        assert!(small.widespread(1, 1));
        assert!(!small.widespread(0, 1));
        assert!(threshold.explain().contains("more than 50%"));
    }
}
