//! The FerroLB speaker: answers ARP and NDP for the addresses this node announces.
//!
//! - [`core`]: plan → ownership → data plane, which both sources feed;
//! - the sources: [`standalone`] (a YAML file) and [`k8s`] (the API server);
//! - [`cluster`]: membership between speakers, and who owns which address;
//! - the data plane: [`dataplane`] (one task per interface), [`responder`] and [`bpf`]
//!   (pure), [`interfaces`] (which ones), [`sys`] (the one module that makes syscalls).

pub mod bpf;
pub mod cluster;
pub mod core;
pub mod dataplane;
pub mod interfaces;
pub mod k8s;
pub mod metrics;
pub mod responder;
pub mod standalone;
pub mod sys;
