//! FerroLB's shared vocabulary: the MetalLB-compatible API types, the configuration model
//! shared by the standalone speaker and the controller, and the ARP / NDP / Ethernet wire
//! formats. Pure and I/O-free: callers pass bytes and strings in, get values out.

pub mod allocator;
pub mod api;
pub mod config;
pub mod legacy;
pub mod ownership;
pub mod range;

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
