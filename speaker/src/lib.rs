//! The FerroLB speaker: answers ARP and NDP for the addresses this node announces.
//!
//! - [`announcer`]: owns the loop; plan → ownership → data plane, outcomes back;
//! - [`source`]: where plans come from: a YAML file, or the API server;
//! - [`cluster`]: membership between speakers (who owns which address is the model's);
//! - the data plane: [`dataplane`] (one task per interface), [`responder`] and [`bpf`]
//!   (pure), [`interfaces`] (which ones), [`sys`] (the one module that makes syscalls).

pub mod announcer;
pub mod bgp;
pub mod bpf;
pub mod cluster;
pub mod dataplane;
pub mod interfaces;
pub mod metrics;
pub mod responder;
pub mod source;
pub mod sys;
