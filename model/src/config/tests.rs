use std::collections::BTreeSet;

use super::plan::advertises_pool;
use super::*;
use crate::Error;

const K3S_HOMELAB: &str = include_str!("../../../tests/fixtures/users/k3s-homelab-l2.yaml");
const LEGACY_KUBEADM: &str = include_str!("../../../tests/fixtures/users/legacy-configmap-kubeadm.yaml");
const LEGACY_OFFICE: &str = include_str!("../../../tests/fixtures/users/legacy-configmap-office.yaml");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn assigned(service: &str, pool: &str, ips: &[&str]) -> Vec<ServiceAddresses> {
    vec![ServiceAddresses {
        service: service.into(),
        pool: pool.into(),
        addresses: ips.iter().map(|i| ip(i)).collect(),
    }]
}

fn issues(e: Error) -> Vec<Issue> {
    match e {
        Error::InvalidConfig(v) => v,
        other => panic!("unexpected error {other}"),
    }
}

const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec:\n  addresses: [192.0.2.8/29, 2001:db8::10-2001:db8::1f]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: lan, namespace: metallb-system}\nspec:\n  ipAddressPools: [lan]\n";

fn service(name: &str, annotations: &str, extra_spec: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: web\n  annotations: {{{annotations}}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80, protocol: TCP}}]\n{extra_spec}"
    )
}

#[test]
fn k3s_homelab_fixture_warns_about_misspelt_field_and_covers_every_pool() {
    let loaded = load("k3s.yaml", K3S_HOMELAB).unwrap();
    let misspelt = loaded.warnings.iter().find(|w| w.field == "spec.addresspools").expect("a warning naming the field");
    assert!(misspelt.message.contains("did you mean ipAddressPools"), "{misspelt}");
    assert!(misspelt.object.contains("L2Advertisement default/l2-advertisement"), "{misspelt}");
    assert!(loaded.warnings.iter().any(|w| w.message.contains("covers every pool")));
    let cfg = &loaded.config;
    assert_eq!(cfg.pools[0].ranges, vec!["10.0.0.5-10.0.0.10".parse::<IpRange>().unwrap()]);
    assert!(advertises_pool(&cfg.l2_advertisements[0], &cfg.pools[0]));
}

#[test]
fn legacy_configmaps_load_and_the_office_service_keeps_its_address() {
    let kubeadm = load("kubeadm.yaml", LEGACY_KUBEADM).unwrap().config;
    assert_eq!(kubeadm.pools[0].name, "default");
    assert_eq!(kubeadm.pools[0].ranges[0].size(), 21);
    assert_eq!(kubeadm.l2_advertisements.len(), 1);

    let office = load("office.yaml", LEGACY_OFFICE).unwrap().config;
    assert_eq!(office.services[0].load_balancer_ip.as_deref(), Some("10.10.10.51"));
    let ann = announcements(
        &office,
        &assigned("default/my-web-app", "company-office", &["10.10.10.51"]),
        &NodeInfo::new("pi-1"),
    );
    assert_eq!(ann.len(), 1);
    assert_eq!(ann[0].ip, ip("10.10.10.51"));
    assert_eq!(ann[0].services, ["default/my-web-app"]);
    assert_eq!(ann[0].interfaces, None);
}

#[test]
fn invalid_pool_names_file_object_and_field() {
    let text = POOL.replace("192.0.2.8/29", "192.0.2.300-192.0.2.310");
    let errs = issues(load("bad.yaml", &text).unwrap_err());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].object, "bad.yaml: document 1 (IPAddressPool metallb-system/lan)");
    assert_eq!(errs[0].field, "spec.addresses[0]");
    assert!(errs[0].message.contains("192.0.2.300"), "{}", errs[0]);
}

#[test]
fn wrong_type_names_the_field() {
    let text = POOL.replace("ipAddressPools: [lan]", "ipAddressPools: lan");
    let errs = issues(load("bad.yaml", &text).unwrap_err());
    assert_eq!(errs[0].field, "spec.ipAddressPools", "{errs:?}");
}

#[test]
fn overlapping_pools_are_rejected() {
    let text = format!(
        "{POOL}---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: other}}\nspec:\n  addresses: [192.0.2.12-192.0.2.20]\n"
    );
    let errs = issues(load("o.yaml", &text).unwrap_err());
    assert!(errs[0].message.contains("overlaps"), "{errs:?}");
    assert!(errs[0].object.contains("other"), "{errs:?}");
}

#[test]
fn bad_yaml_is_an_error_not_a_panic() {
    assert!(load("x.yaml", "kind: [unclosed").is_err());
    assert!(load("x.yaml", "just a string").is_err());
    assert!(load("x.yaml", "").unwrap().config.pools.is_empty());
}

#[test]
fn node_selectors_and_interfaces() {
    let text = POOL.replace(
        "  ipAddressPools: [lan]\n",
        "  ipAddressPools: [lan]\n  interfaces: [eth1]\n  nodeSelectors:\n  - matchLabels: {kubernetes.io/hostname: n1}\n",
    ) + &service("a", "metallb.io/loadBalancerIPs: 192.0.2.9", "");
    let cfg = load("n.yaml", &text).unwrap().config;
    let a = assigned("web/a", "lan", &["192.0.2.9"]);
    let n1 = announcements(&cfg, &a, &NodeInfo::new("n1"));
    assert_eq!(n1[0].interfaces, Some(BTreeSet::from(["eth1".to_string()])));
    assert!(announcements(&cfg, &a, &NodeInfo::new("n2")).is_empty());
}

#[test]
fn ignored_objects_are_warned_about() {
    let text = format!(
        "{POOL}---\napiVersion: metallb.io/v1beta1\nkind: ServiceBGPStatus\nmetadata: {{name: p}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n"
    );
    let loaded = load("i.yaml", &text).unwrap();
    assert!(loaded.warnings.iter().any(|w| w.message.contains("ServiceBGPStatus (metallb.io/v1beta1) is ignored")));
    assert!(loaded.warnings.iter().any(|w| w.message.contains("Deployment (apps/v1) is not part")));
}

#[test]
fn no_l2_advertisement_announces_nothing() {
    let text =
        POOL.split("---").next().unwrap().to_string() + &service("a", "metallb.io/loadBalancerIPs: 192.0.2.9", "");
    let loaded = load("n.yaml", &text).unwrap();
    assert!(announcements(&loaded.config, &assigned("web/a", "lan", &["192.0.2.9"]), &NodeInfo::new("n1")).is_empty());
    assert!(loaded.warnings.iter().any(|w| w.message.contains("no L2Advertisement")));
}

#[test]
fn clean_example_loads_without_warnings() {
    let text = include_str!("../../../examples/documentation-net.yaml");
    let loaded = load("demo.yaml", text).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.services.len(), 2);
}

#[test]
fn bad_requested_address_is_a_warning_naming_the_annotation_and_the_service_stays() {
    let text = format!("{POOL}{}", service("a", "metallb.io/loadBalancerIPs: '192.0.2.9,192.0.2.10'", ""));
    let loaded = load("r.yaml", &text).unwrap();
    let w = loaded.warnings.iter().find(|w| w.message.contains("one address per family")).expect("a warning");
    assert_eq!(w.field, "metadata.annotations[\"metallb.io/loadBalancerIPs\"]", "{w:?}");
    assert_eq!(loaded.config.services.len(), 1);
    let text = format!("{POOL}{}", service("a", "metallb.universe.tf/loadBalancerIPs: 192.0.2.9", ""));
    assert!(load("r.yaml", &text).unwrap().warnings.iter().any(|w| w.message.contains("deprecated")));
}

/// MetalLB's own `configsamples/simple_pool_adv_l2.yaml`: its L2Advertisement has no
/// `spec`, which MetalLB reads as "every pool, every node".
const METALLB_SIMPLE: &str = include_str!("../../../tests/fixtures/metallb/simple_pool_adv_l2.yaml");

#[test]
fn metallb_sample_without_spec_announces_every_pool() {
    let text = format!("{METALLB_SIMPLE}{}", service("web", "metallb.io/loadBalancerIPs: 192.168.10.7", ""));
    let loaded = load("sample.yaml", &text).unwrap();
    assert_eq!(loaded.config.l2_advertisements.len(), 1);
    let plan = Plan::new(&loaded.config, &assigned("web/web", "example", &["192.168.10.7"]));
    assert_eq!(plan.for_node(&NodeInfo::new("n1")).len(), 1, "{plan:?}");
}

/// MetalLB v0.16 `serviceSelectors`: an advertisement announces only the Services its
/// selectors match (speaker/layer2_controller.go:257, `l2AdsForService`, MetalLB 7938d3f).
#[test]
fn service_selectors_limit_what_an_advertisement_announces() {
    let adv = POOL.replace(
        "  ipAddressPools: [lan]\n",
        "  ipAddressPools: [lan]\n  serviceSelectors: [{matchLabels: {expose: lan}}]\n",
    );
    let text = format!(
        "{adv}{}{}",
        service("labelled", "metallb.io/loadBalancerIPs: 192.0.2.9", "")
            .replace("  name: labelled\n", "  name: labelled\n  labels: {expose: lan}\n"),
        service("plain", "metallb.io/loadBalancerIPs: 192.0.2.10", "")
    );
    let loaded = load("selectors.yaml", &text).unwrap();
    let mut addresses = assigned("web/labelled", "lan", &["192.0.2.9"]);
    addresses.extend(assigned("web/plain", "lan", &["192.0.2.10"]));
    let announced: Vec<IpAddr> =
        Plan::new(&loaded.config, &addresses).for_node(&NodeInfo::new("n1")).iter().map(|a| a.ip).collect();
    assert_eq!(announced, vec![ip("192.0.2.9")]);
}

/// Documents are numbered as a YAML parser numbers them (libyaml counts this stream the same:
/// comments before the first marker
/// are none, an empty one between markers is one, a marker may carry the document), and a
/// broken document is reported by number, with the line and column of the fault in it.
#[test]
fn documents_are_numbered_as_yaml_numbers_them_and_a_syntax_error_names_its_document() {
    let text = format!(
        "# pools for the lab\n---\n{POOL}---\n---\n--- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: x}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: a, namespace: default}}\nspec: {{ports: [{{port: 80\n"
    );
    let errs = issues(load("lab.yaml", &text).unwrap_err());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].object, "lab.yaml: document 6");
    // Lines count from the document's marker line.
    assert!(errs[0].message.contains("line 5"), "{}", errs[0]);
    assert!(!errs[0].message.contains('\n'), "one line: {}", errs[0]);
    let fixed = text.replace("port: 80\n", "port: 80}]}\n");
    let loaded = load("lab.yaml", &fixed).unwrap();
    assert_eq!(loaded.config.pools.len(), 1);
    let ignored: Vec<&str> = loaded.warnings.iter().map(|w| w.object.as_str()).collect();
    assert!(ignored.contains(&"lab.yaml: document 5 (ConfigMap x)"), "{ignored:?}");
}

/// A byte-order mark, directives and end markers (`...`) do not shift the numbering.
#[test]
fn bom_directives_and_end_markers_are_no_documents() {
    let text = format!(
        "\u{feff}# lab\n%YAML 1.2\n---\n{}...\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n...\n# trailing\n",
        POOL.replace("---\n", "...\n---\n")
    );
    let loaded = load("lab.yaml", &text).unwrap();
    assert_eq!(loaded.config.pools.len(), 1);
    let objects: Vec<&str> = loaded.warnings.iter().map(|w| w.object.as_str()).collect();
    assert!(objects.contains(&"lab.yaml: document 3 (ConfigMap x)"), "{objects:?}");
}
