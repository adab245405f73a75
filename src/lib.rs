//! continuity-operator: a Kubernetes operator for an email Continuity Service.
//!
//! Data flows one way: a custom resource is validated ([`api::validation`]), the desired child
//! objects are built by pure functions ([`resources`]), applied with server-side apply
//! ([`controller::apply`]), and the status is computed purely from what was observed
//! ([`status`]) and written only when it changed. Only the fetch, apply and status steps in
//! [`controller`] touch the API server.

pub mod api;
pub mod claims;
pub mod config;
pub mod controller;
pub mod coverage;
pub mod crd;
pub mod credentials;
pub mod error;
pub mod health;
pub mod http;
pub mod leader;
pub mod resources;
pub mod routing;
pub mod shutdown;
pub mod standby;
pub mod status;
pub mod telemetry;

#[cfg(test)]
pub(crate) mod testing;

pub use error::{Error, Result};

/// The one field manager under which the operator applies every object and status.
pub const FIELD_MANAGER: &str = "continuity-operator";
