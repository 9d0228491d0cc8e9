//! BGP mode, the second way to announce a plan: every selected node announces the
//! Service's prefixes to its routers through FRR, the engine MetalLB also drives.
//!
//! - [`frr_config`]: FRR's configuration from the peers and routes (pure; FRR's own
//!   parser checks it in the tests).
//!
//! Who announces what is the model's (`ferrolb_model::config::bgp`); running FRR,
//! applying changes with its reload, and reading its state back are not built yet.

pub mod frr_config;
