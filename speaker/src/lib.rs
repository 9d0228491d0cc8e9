//! The FerroLB speaker: answers ARP and NDP for the addresses this node announces.
//!
//! Pure parts ([`responder`], [`bpf`]) are separate from the one module that makes
//! syscalls ([`sys`]) and from the async plumbing ([`dataplane`], [`standalone`]).

pub mod bpf;
pub mod cluster;
pub mod dataplane;
pub mod http;
pub mod interfaces;
pub mod k8s;
pub mod metrics;
pub mod responder;
pub mod standalone;
pub mod sys;
