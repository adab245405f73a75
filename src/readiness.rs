//! Where this replica stands (starting, standby, syncing, leading, stopping): set by the
//! leader election and the controller, read by `/readyz`.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where the replica stands, for `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Connecting to the API server.
    Starting = 0,
    /// Waiting for the leader Lease.
    Standby = 1,
    /// Leading; caches not synced yet.
    Syncing = 2,
    /// Leading with synced caches.
    Leading = 3,
    /// Shutting down.
    Stopping = 4,
}

/// Shared, lock-free readiness state.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

impl Readiness {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            1 => Phase::Standby,
            2 => Phase::Syncing,
            3 => Phase::Leading,
            4 => Phase::Stopping,
            _ => Phase::Starting,
        }
    }
}
