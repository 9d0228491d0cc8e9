//! FerroLB's test support, shared by the end-to-end tests (`tests/`, package `ferrolb-e2e`)
//! and the speaker's netns benches. Dev-only: nothing here ships.
//!
//! - [`netns`]: network namespaces, veth links, the standalone speaker, the kernel's ARP/NDP
//!   clients, CPU starvation;
//! - [`apiserver`]: etcd and a real kube-apiserver on a LAN bridge, FerroLB's binaries run
//!   by hand against it;
//! - [`node`]: the rest of a real cluster (kube-controller-manager, kube-scheduler, and
//!   nodes with their own containerd, kubelet and kube-proxy), FerroLB run from its image.
//!
//! Everything a harness creates is removed on drop, also when a test fails; traffic stays
//! in the namespaces it made, on documentation addresses.
// A test harness fails the test where something is wrong, also inside Option/Result helpers.
#![allow(clippy::unwrap_in_result)]

pub mod apiserver;
pub mod netns;
pub mod node;
pub mod wait;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A binary of the workspace (`ferrolb-speaker`, `ferrolb-controller`) built by the same
/// cargo run as the test or bench asking: the file beside its `deps/` folder. `cargo test
/// --workspace` and `cargo bench -p ferrolb-speaker` build them.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/PROFILE/deps/TEST");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (it builds every binary)",
        bin.display()
    );
    bin
}
