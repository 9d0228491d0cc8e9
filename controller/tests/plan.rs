//! Documented MetalLB behaviours as `plan` fixtures: each `tests/plan/NAME.yaml` is run
//! through the real binary and must print `NAME.expected.yaml` exactly.

use std::process::Command;

#[test]
fn plan_fixtures_match_expected_output() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plan");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name.ends_with(".expected.yaml") {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected.yaml"))
            .unwrap_or_else(|_| panic!("{name} has no .expected.yaml"));
        let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-controller"))
            .args(["plan", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{name}");
        cases += 1;
    }
    assert!(cases >= 10, "only {cases} plan fixtures found");
}

#[test]
fn plan_json_and_invalid_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plan");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-controller"))
        .args(["plan", "--output", "json", "--config"])
        .arg(dir.join("tcp-and-udp-share-one-address.yaml"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["addresses"][0], v[1]["addresses"][0]);
    let bad = std::env::temp_dir().join(format!("ferrolb-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [nonsense]}\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_ferrolb-controller")).args(["plan", "--config"]).arg(&bad).output().unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.addresses[0]"));
}

#[test]
fn convert_turns_the_kubeadm_configmap_into_crds() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/users/legacy-configmap-kubeadm.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-controller"))
        .args(["convert", "--config"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(out.status.success());
    // The output must load as a configuration with the same pool and an advertisement.
    let text = String::from_utf8(out.stdout).unwrap();
    let loaded = ferrolb_model::config::load("converted.yaml", &text).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.pools[0].name, "default");
    assert_eq!(loaded.config.pools[0].ranges[0].to_string(), "172.42.42.100-172.42.42.120");
    assert_eq!(loaded.config.l2_advertisements[0].spec.ip_address_pools, ["default"]);
}

#[test]
fn lb_class_selects_which_services_are_ours() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plan/restart-keeps-status-and-other-classes-are-ignored.yaml");
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-controller"))
            .args(["plan", "--output", "json", "--config"])
            .arg(&fixture)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let names: Vec<String> =
            v.as_array().unwrap().iter().map(|e| e["service"].as_str().unwrap().to_string()).collect();
        (names, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (default, stderr) = run(&[]);
    assert_eq!(default, ["default/old", "default/new"]);
    assert!(stderr.contains("default/other-class: loadBalancerClass \"example.com/other\" is not ours"), "{stderr}");
    let (other, _) = run(&["--lb-class", "example.com/other"]);
    assert_eq!(other, ["default/other-class"]);
}

/// Rule 9 of issue 10: MetalLB's ParseCIDR (internal/config/config.go:1078, MetalLB
/// 7938d3f89) refuses a bare address, so FerroLB refuses the pool too, naming the pool and
/// the entry and saying what to write instead.
#[test]
fn a_bare_address_in_a_pool_is_refused_with_the_fix() {
    let bad = std::env::temp_dir().join(format!("ferrolb-bare-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: office, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/30, 198.51.100.7]}\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_ferrolb-controller")).args(["plan", "--config"]).arg(&bad).output().unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needed in ["metallb-system/office", "spec.addresses[1]", "198.51.100.7/32"] {
        assert!(err.contains(needed), "{needed:?} missing from: {err}");
    }
}
