//! FerroLB's model: what MetalLB's objects mean, with no I/O (callers pass strings and
//! objects in, get values out), the same for the controller, the speaker and its file mode.
//!
//! - [`api`]: MetalLB's API types (the CRDs are generated from them) and annotations;
//! - [`served`]: objects completed as the API server would serve them;
//! - [`config`]: the configuration model, the file loader and its validation, and the
//!   speaker's plan (what may be announced, by which nodes);
//! - [`legacy`]: MetalLB's pre-0.13 ConfigMap, converted;
//! - [`range`]: address ranges and families;
//! - [`allocator`]: which address each LoadBalancer Service gets;
//! - [`ownership`]: which live member announces each address.

pub mod allocator;
pub mod api;
pub mod config;
pub mod legacy;
pub mod ownership;
pub mod range;
pub mod served;

pub use allocator::{AllocError, Allocation, Allocator, Assignment, Unassigned, allocate_all};
pub use config::{Announcement, Config, Issue, Loaded, NodeInfo};
pub use range::{Family, IpRange};

/// Errors of this crate, other than the per-frame [`wire::WireError`] (kept separate and
/// `Copy` because the packet hot path returns it for every frame it drops).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid address range {range:?}: {reason}")]
    InvalidRange { range: String, reason: String },
    #[error("invalid legacy MetalLB configuration: {0}")]
    InvalidLegacyConfig(String),
    #[error("{} invalid: {}", if .0.len() == 1 { "configuration is" } else { "configuration has errors; it is" }, .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig(Vec<Issue>),
}
