//! continuity-operator: a Kubernetes operator for an email Continuity Service.
//!
//! Data flows one way, each stage its own type: a custom resource is validated into a
//! [`validation::ValidatedDomain`] (or the reason it may not act), planned into stamped child
//! objects built by pure functions ([`plan`], [`resources`]), applied with server-side apply
//! ([`controller::apply`], which reports what was refused), and the status is computed purely
//! from what was applied ([`status`]) and written only when it changed. Only the fetch, apply
//! and status steps in [`controller`] touch the API server.

pub mod api;
pub mod config;
pub mod controller;
pub mod coverage;
pub mod crd;
pub mod credentials;
pub mod directory;
pub mod error;
pub mod handback;
pub mod health;
pub mod host;
pub mod http;
pub mod jitter;
pub mod leader;
pub mod plan;
pub mod plugin;
pub mod readiness;
pub mod resources;
pub mod routing;
pub mod shutdown;
pub mod standby;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod validation;
pub mod webhook;

#[cfg(test)]
pub(crate) mod testing;

pub use error::{Error, Result};

/// The one field manager under which the operator applies every object and status.
pub const FIELD_MANAGER: &str = "continuity-operator";

/// The User-Agent of the operator's requests to the API server (its audit log names it).
pub const USER_AGENT: &str = concat!("continuity-operator/", env!("CARGO_PKG_VERSION"));
