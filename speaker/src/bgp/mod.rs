//! BGP mode, the second way to announce a plan: every selected node announces the
//! Service's prefixes to its routers through FRR, the engine MetalLB also drives.
//!
//! - [`frr_config`]: FRR's configuration from the peers and routes (pure; FRR's own
//!   parser checks it in the tests);
//! - [`frr`]: FRR driven: the configuration applied with FRR's reload, the sessions read;
//! - [`neighbors`]: FRR's JSON report of its sessions, parsed (pure).
//!
//! Who announces what is the model's (`ferrolb_model::config::bgp`).

pub mod frr;
pub mod frr_config;
pub mod neighbors;
