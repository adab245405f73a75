//! Observability: Prometheus metrics and structured logs.

pub mod domains;
pub mod logging;
pub mod metrics;

pub use metrics::Metrics;
