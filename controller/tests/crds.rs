//! The committed CRDs must be what the Rust types generate; regenerate with
//! `cargo run -p ferrolb-controller --bin crdgen > manifests/crds/crds.yaml`.

#[test]
fn committed_crds_match_the_types() {
    let committed = include_str!("../../manifests/crds/crds.yaml");
    let generated = ferrolb_controller::crds().unwrap();
    assert!(
        committed == generated,
        "manifests/crds/crds.yaml drifted from the Rust types: run `cargo run -p ferrolb-controller --bin crdgen > manifests/crds/crds.yaml`"
    );
}

#[test]
fn crds_accept_metallb_field_names() {
    let crds = ferrolb_controller::crds().unwrap();
    for field in [
        "addresses",
        "autoAssign",
        "avoidBuggyIPs",
        "serviceAllocation",
        "ipAddressPools",
        "ipAddressPoolSelectors",
        "nodeSelectors",
        "interfaces",
    ] {
        assert!(crds.contains(&format!("{field}:")), "{field} missing from the CRD schema");
    }
    assert!(crds.contains("name: ipaddresspools.metallb.io") && crds.contains("name: l2advertisements.metallb.io"));
}
