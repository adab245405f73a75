//! Status computation: pure functions from a resource and the facts the controller observed
//! to the status it should have. Unchanged facts give an identical status, so the controller
//! writes nothing when nothing changed.

pub mod domain;
pub mod primary;
pub mod progress;
pub mod standby;
pub mod user;
