//! The reconcile pipeline around the pure stages: kube-runtime Controllers for
//! ContinuityDomains and ContinuityUsers, the caches and indexes they read, and the error
//! policy. Split by concern:
//! - [`context`]: settings, caches, indexes, triggers and backoff every reconcile shares;
//! - [`watches`] and [`run`]: what is watched, and the assembly (what the children's caches
//!   keep of each object: [`crate::resources::cached`]);
//! - [`relations`]: which change re-reconciles what, as a table;
//! - [`domain`] and [`user`]: the reconciles, `fetch -> validate -> plan -> apply -> status`;
//! - [`fetch`], [`secrets`], [`apply`] and [`events`]: the only modules that reach the API
//!   server (reads, Secrets, writes, Events); [`transport`] writes the transport map through
//!   [`apply`]; [`preflight`] reads once, at start, what the provider's settings rely on.
//!
//! Watches: ContinuityDomains in scope (the domain controller's cache; unscoped, also the
//! claims index), ContinuityDomains in every namespace when scoped (the claims index),
//! ContinuityUsers in scope, the operator's children by label (the caches children are
//! compared with, the standby's readiness is read from, and the owner triggers of `.owns()`),
//! and the metadata of Secrets (a changed Secret reconciles whoever reads it). Every watch
//! event updates its cache first, then the indexes, and only then queues the reconciles that
//! depend on it, so a queued reconcile always reads the change.

pub mod apply;
pub mod context;
pub mod directory;
pub mod domain;
pub mod events;
pub mod fetch;
pub mod index;
pub mod memo;
pub mod preflight;
pub mod relations;
pub mod run;
pub mod secrets;
pub mod transport;
pub mod user;
pub mod watches;

pub use context::{CACHE_SYNC_RETRY, Context, Settings};
pub use run::run;
