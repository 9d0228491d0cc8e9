//! Cluster mode: membership over authenticated UDP heartbeats and per-address ownership.

pub mod membership;
pub mod ownership;
pub mod wire;
