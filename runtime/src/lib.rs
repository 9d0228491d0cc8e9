//! What FerroLB's two binaries share at run time, and nothing either one alone needs:
//!
//! - [`readiness`]: what a component waits for, and why, as `/readyz` reports it;
//! - [`http`]: the `/metrics`, `/healthz` and `/readyz` endpoints and their listener;
//! - [`watch`]: reflector stores whose failures make the component wait, visibly;
//! - [`trim`]: what each binary keeps of the objects it watches;
//! - [`events`]: Event notes the API server accepts.

pub mod events;
pub mod http;
pub mod readiness;
pub mod trim;
pub mod watch;

pub use readiness::Readiness;

/// The Secret holding the speakers' membership key: the controller creates it, the
/// speaker Pods mount it.
pub const MEMBERLIST_SECRET: &str = "ferrolb-memberlist";
