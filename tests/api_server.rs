//! FerroLB against real kube-apiservers (1.30 and 1.32): installed with the shipped
//! manifests, the real controller and speakers (speakers in node namespaces) authorised by
//! the shipped RBAC, the kernel's own ARP and NDP clients on the LAN. See
//! `testkit/src/apiserver.rs` for the topology and what the test writes in place of the
//! components that are not there (kubelet, scheduler, kube-controller-manager).

use ferrolb_testkit::apiserver;
use ferrolb_testkit::netns;

use std::collections::BTreeSet;
use std::time::Duration;

use apiserver::{Cluster, NAMESPACE, Process, node_mac, node_name, wait_for};

/// The pool of these tests: documentation addresses on the test LAN.
#[allow(dead_code)]
const POOL: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec:
  addresses: [198.51.100.64-198.51.100.99, '2001:db8:100::64-2001:db8:100::99']
";

/// MetalLB's own sample `configsamples/simple_pool_adv_l2.yaml`, unchanged: its
/// L2Advertisement has no `spec` at all.
const METALLB_SIMPLE_SAMPLE: &str = include_str!("fixtures/metallb/simple_pool_adv_l2.yaml");

/// A MetalLB sample with its private addresses moved onto the test LAN's documentation
/// ranges (tests send traffic to nothing else); everything else as it is.
fn on_test_lan(sample: &str) -> String {
    let moved = sample
        .replace("192.168.10.0/24", "198.51.100.64/27")
        .replace("192.168.9.1-192.168.9.5", "198.51.100.96-198.51.100.99")
        .replace("fc00:f853:0ccd:e799::/124", "2001:db8:100::60/124");
    assert!(!moved.contains("192.168.") && !moved.contains("fc00:"), "a sample address left unmoved:\n{moved}");
    moved
}

fn service(name: &str, dual: bool) -> String {
    let policy = if dual { "ipFamilyPolicy: PreferDualStack" } else { "ipFamilyPolicy: SingleStack" };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n  {policy}\n  selector: {{app: {name}}}\n  ports: [{{port: 80}}]\n"
    )
}

/// An EndpointSlice with one ready endpoint of `service` on `node` (what the
/// EndpointSlice controller writes).
fn endpoints(service: &str, node: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-x\n  namespace: default\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nendpoints:\n- addresses: [10.244.0.7]\n  nodeName: {node}\n  conditions: {{ready: true}}\nports: [{{port: 80, protocol: TCP}}]\n"
    )
}

/// A cluster of `n` nodes with FerroLB installed, Nodes and speaker Pods written, the
/// controller running; the speakers not yet started.
struct Setup {
    cluster: Cluster,
    controller: Process,
    key: std::path::PathBuf,
}

fn setup(version: &str, n: usize) -> Option<Setup> {
    setup_installed(version, n, Cluster::install)
}

fn setup_installed(version: &str, n: usize, install: fn(&Cluster)) -> Option<Setup> {
    let cluster = Cluster::start(version, n)?;
    install(&cluster);
    for i in 0..n {
        cluster.add_node(i, &[]);
        cluster.add_speaker_pod(i);
    }
    let controller = cluster.controller("ferrolb-controller-0");
    let key = cluster.memberlist_key_file();
    Some(Setup { cluster, controller, key })
}

impl Setup {
    fn speakers(&self, n: usize) -> Vec<Process> {
        (0..n).map(|i| self.cluster.speaker(i, &self.key, &[])).collect()
    }
}

fn wait_ready(speakers: &[Process]) {
    for s in speakers {
        wait_for(
            "the speaker to be Ready",
            Duration::from_secs(30),
            || s.ready(),
            || format!("speaker log:\n{}", s.log_tail()),
        );
    }
}

/// Which node's MAC answers `ip`: exactly one, else the test fails.
fn sole_owner(c: &Cluster, ip: &str, speakers: &[Process]) -> usize {
    let mut macs = BTreeSet::new();
    wait_for(
        &format!("one node to answer for {ip}"),
        Duration::from_secs(20),
        || {
            macs = if ip.contains(':') { c.ndisc6(ip).into_iter().collect() } else { c.arping_all(ip, 3) };
            macs.len() == 1
        },
        || speakers.iter().map(|s| s.log_tail()).collect::<Vec<_>>().join("\n-----\n"),
    );
    let mac = macs.into_iter().next().unwrap();
    (0..speakers.len()).find(|i| node_mac(*i) == mac).unwrap_or_else(|| panic!("{mac} is no node's MAC"))
}

/// User story 1: a fresh install with MetalLB's own minimal sample (an L2Advertisement
/// with no `spec`): a dual-stack Service gets an EXTERNAL-IP per family, exactly one node
/// answers ARP and NDP for them, the ServiceL2Status names that node, every speaker is
/// Ready.
fn fresh_install_with_metallb_sample(version: &str) {
    fresh_install(version, Cluster::install);
}

/// User story 1 again, installed from the Helm chart.
fn fresh_install_from_the_helm_chart(version: &str) {
    fresh_install(version, Cluster::install_with_helm);
}

fn fresh_install(version: &str, install: fn(&Cluster)) {
    let Some(s) = setup_installed(version, 3, install) else { return };
    let c = &s.cluster;
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    let speakers = s.speakers(3);
    wait_ready(&speakers);
    c.apply(&service("web", true));
    c.apply(&endpoints("web", &node_name(0)));
    let ips = c.wait_ingress("default", "web", 2, &s.controller);
    assert!(!ips[0].contains(':') && ips[1].contains(':'), "IPv4 first, as MetalLB writes it: {ips:?}");
    let owner4 = sole_owner(c, &ips[0], &speakers);
    let owner6 = sole_owner(c, &ips[1], &speakers);
    assert_eq!(owner4, owner6, "one node announces both addresses of a Service");
    let assigned = c.events("default", "nodeAssigned");
    assert_eq!(assigned.len(), 1, "one nodeAssigned for the Service: {assigned:?}");
    assert!(assigned[0].1.contains(&ips[0]) && assigned[0].1.contains(&ips[1]), "{assigned:?}");
    wait_statuses(c, &[(node_name(owner4), "default/web".to_string())]);
    // The kubelet probes the node's address: on a single-stack IPv6 node, the IPv6 one.
    for i in 0..3 {
        let url = format!("http://[{}]:7472/readyz", apiserver::node_v6(i));
        let out = c.client.exec(&["curl", "-s", "--max-time", "2", &url]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ready", "{url}");
    }
}

/// Waits until the ServiceL2Status objects are exactly `want` (node, Service).
fn wait_statuses(c: &Cluster, want: &[(String, String)]) {
    let ok = apiserver::poll(Duration::from_secs(15), || c.l2_statuses() == want);
    assert!(ok, "ServiceL2Status objects {:?}, want {want:?}", c.l2_statuses());
}

/// A cluster of 3 with MetalLB's sample config, Ready speakers and one IPv4 Service
/// `web` with an endpoint; returns the speakers and the Service's address.
fn serving(s: &Setup) -> (Vec<Process>, String) {
    let c = &s.cluster;
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    let speakers = s.speakers(3);
    wait_ready(&speakers);
    c.apply(&service("web", false));
    c.apply(&endpoints("web", &node_name(0)));
    let ip = c.wait_ingress("default", "web", 1, &s.controller).remove(0);
    (speakers, ip)
}

/// Our users' K3s write-up (`tests/fixtures/users/k3s-homelab-l2.yaml`), with its
/// addresses moved onto the test LAN: its objects are in `default` and its L2Advertisement
/// misspells `ipAddressPools`.
const K3S_HOMELAB: &str = include_str!("fixtures/users/k3s-homelab-l2.yaml");

/// User story 1 with the K3s write-up, as reality has it. kubectl since 1.27 validates
/// strictly by default, so the API server refuses the misspelt field, naming it (MetalLB's
/// CRD does the same: neither has `addresspools`). With `--validate=warn`, what older
/// kubectl did, it warns and prunes the field, and the advertisement covers every pool, as
/// MetalLB reads it. The pool is in `default`, which neither MetalLB nor FerroLB reads:
/// the Service stays pending and the pool gets an `IgnoredPool` Warning saying why. Moved
/// to metallb-system, the same objects give the Service its address and one node answers.
fn k3s_homelab_config_is_explained_then_works(version: &str) {
    let Some(s) = setup(version, 2) else { return };
    let c = &s.cluster;
    let yaml = K3S_HOMELAB.replace("10.0.0.5-10.0.0.10", "198.51.100.80-198.51.100.85");
    let refused = c.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));
    assert!(refused.as_ref().is_err_and(|e| e.contains("unknown field \"spec.addresspools\"")), "{refused:?}");
    c.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], Some(&yaml)).expect("applied with a warning");
    let speakers = s.speakers(2);
    wait_ready(&speakers);
    c.apply(&service("web", false));
    c.apply(&endpoints("web", &node_name(0)));
    wait_for(
        "an IgnoredPool Warning on the pool in default",
        Duration::from_secs(20),
        || !c.events("default", "IgnoredPool").is_empty(),
        || s.controller.log_tail(),
    );
    assert!(c.ingress("default", "web").is_empty(), "a pool outside metallb-system serves nothing");
    let moved = yaml.replace("namespace: default", "namespace: metallb-system");
    c.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], Some(&moved)).expect("applied in metallb-system");
    let ip = c.wait_ingress("default", "web", 1, &s.controller).remove(0);
    assert!(ip.starts_with("198.51.100.8"), "{ip}");
    sole_owner(c, &ip, &speakers);
}

/// User story 2: a speaker that cannot proceed (its ClusterRoleBinding is gone, so it may
/// not list Nodes or Services; then a CRD is missing) says so at warn level and in
/// `/readyz`, is not Ready, and recovers by itself once that is fixed.
fn rbac_denial_is_reported_and_recovers(version: &str) {
    let Some(s) = setup(version, 1) else { return };
    let c = &s.cluster;
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    let binding = c.kubectl(&["get", "clusterrolebinding", "ferrolb-speaker", "-o", "yaml"]);
    c.kubectl(&["delete", "clusterrolebinding", "ferrolb-speaker"]);
    let speaker = c.speaker(0, &s.key, &[]);
    let mut body = String::new();
    wait_for(
        "/readyz to name the failing watch",
        Duration::from_secs(30),
        || {
            let (code, b) = speaker.http("/readyz");
            body = b;
            code == 503 && body.contains("watch") && body.contains("forbidden")
        },
        || format!("speaker log:\n{}", speaker.log_tail()),
    );
    let log = speaker.log_text();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains("cannot list or watch") && l.contains("forbidden")),
        "no warning naming the denial:\n{}",
        speaker.log_tail()
    );
    let binding: String = binding
        .lines()
        .filter(|l| !l.contains("resourceVersion:") && !l.contains("uid:"))
        .collect::<Vec<_>>()
        .join("\n");
    c.apply(&binding);
    wait_ready(std::slice::from_ref(&speaker));
    assert_eq!(speaker.http("/readyz"), (200, "ready".to_string()));

    // A CRD missing (deleted, or never installed): the same, named.
    c.kubectl(&["delete", "crd", "l2advertisements.metallb.io"]);
    wait_for(
        "/readyz to name the missing kind",
        Duration::from_secs(30),
        || {
            let (code, body) = speaker.http("/readyz");
            code == 503 && body.contains("l2advertisements watch")
        },
        || speaker.log_tail(),
    );
    c.install();
    wait_ready(std::slice::from_ref(&speaker));
}

/// User story 3: the owner crashes (SIGKILL), then the next owner stops gracefully
/// (SIGTERM): each time another node answers, and the ServiceL2Status objects name
/// exactly the current owner (the new owner deletes the others'), owned by its Pod.
fn owner_crash_and_graceful_stop_leave_one_status(version: &str) {
    let Some(s) = setup(version, 3) else { return };
    let c = &s.cluster;
    let (mut speakers, ip) = serving(&s);
    let svc = "default/web".to_string();
    let first = sole_owner(c, &ip, &speakers);
    wait_statuses(c, &[(node_name(first), svc.clone())]);
    let v = c.get_json(&["servicel2statuses.metallb.io", "-n", NAMESPACE]);
    let owner = &v["items"][0]["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Pod");
    assert_eq!(owner["name"].as_str(), Some(format!("ferrolb-speaker-{}", node_name(first)).as_str()));

    speakers[first].stop("KILL");
    let alive: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    let mut second = first;
    wait_for(
        "another node to answer after the crash",
        Duration::from_secs(10),
        || {
            second = sole_owner(c, &ip, &speakers);
            second != first
        },
        String::new,
    );
    assert!(alive.contains(&second));
    wait_statuses(c, &[(node_name(second), svc.clone())]);

    speakers[second].stop("TERM");
    let third = alive.into_iter().find(|i| *i != second).unwrap();
    wait_for(
        "the last node to answer",
        Duration::from_secs(10),
        || sole_owner(c, &ip, &speakers) == third,
        String::new,
    );
    wait_statuses(c, &[(node_name(third), svc)]);
}

/// User story 6: speakers that start before the controller has created the membership
/// Secret are not held back by the mount (the volume is optional): they wait for the key,
/// not Ready, saying so, and go on once the kubelet fills the volume in.
fn speakers_started_before_the_membership_secret_wait_for_it(version: &str) {
    let Some(c) = Cluster::start(version, 1) else { return };
    c.install();
    let ds = c.get_json(&["daemonset", "-n", NAMESPACE, "ferrolb-speaker"]);
    let volumes = ds["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes").clone();
    let memberlist = volumes.iter().find(|v| v["name"] == "memberlist").expect("the memberlist volume");
    assert_eq!(memberlist["secret"]["optional"], true, "a required Secret volume holds the Pod in ContainerCreating");
    c.add_node(0, &[]);
    c.add_speaker_pod(0);
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    let mounted = c.dir.join("mounted-secretkey");
    let speaker = c.speaker(0, &mounted, &[]);
    wait_for(
        "/readyz to say it waits for the membership key",
        Duration::from_secs(20),
        || {
            let (code, body) = speaker.http("/readyz");
            code == 503 && body.contains("membership key") && body.contains("ferrolb-memberlist")
        },
        || speaker.log_tail(),
    );
    assert!(speaker.log_text().lines().any(|l| l.contains("WARN") && l.contains("waiting for the membership key")));
    let controller = c.controller("ferrolb-controller-0");
    std::fs::copy(c.memberlist_key_file(), &mounted).expect("the kubelet's copy");
    wait_ready(std::slice::from_ref(&speaker));
    drop(controller);
}

/// User story 5: two controller replicas; SIGTERM to the leader releases the Lease and
/// the standby carries on at once; a killed leader's Lease is taken once it expires
/// (judged on the standby's own clock). No address moves at any step.
fn controller_handover_moves_no_address(version: &str) {
    let Some(s) = setup(version, 1) else { return };
    let c = &s.cluster;
    let mut leader = s.controller;
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    c.apply(&service("web", false));
    let web = c.wait_ingress("default", "web", 1, &leader);
    let mut standby = c.controller("ferrolb-controller-1");
    wait_for(
        "the second replica to stand by",
        Duration::from_secs(20),
        || standby.log_text().contains("standing by"),
        || standby.log_tail(),
    );
    let holder =
        || c.kubectl(&["get", "lease", "-n", NAMESPACE, "ferrolb-controller", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(holder(), "ferrolb-controller-0");
    assert_eq!(standby.http("/readyz"), (200, "ready".to_string()), "a standby is ready (a rollout waits for it)");

    let t = std::time::Instant::now();
    leader.stop("TERM");
    assert_ne!(holder(), "ferrolb-controller-0", "SIGTERM released the Lease");
    c.apply(&service("web2", false));
    c.wait_ingress("default", "web2", 1, &standby);
    let handover = t.elapsed();
    assert!(handover < Duration::from_secs(10), "the standby took over in {handover:?}, not at once");

    standby.stop("KILL");
    let third = c.controller("ferrolb-controller-2");
    c.apply(&service("web3", false));
    let t = std::time::Instant::now();
    c.wait_ingress("default", "web3", 1, &third);
    eprintln!("after a killed leader, allocation resumed in {:?} (Lease 15 s)", t.elapsed());
    assert_eq!(c.ingress("default", "web"), web, "no address moved");
    assert!(c.events("default", "ClearAssignment").is_empty(), "{:?}", c.events("default", "ClearAssignment"));
}

/// MetalLB v0.15.3's own install manifest, unchanged.
const METALLB_V0_15_3: &str = include_str!("fixtures/metallb/metallb-native-v0.15.3.yaml");

/// The numbered steps of `docs/migration.md`'s "Switching over" that are commands, as
/// written there (between "## Switching over" and the next heading).
fn migration_commands() -> Vec<String> {
    let doc = std::fs::read_to_string(apiserver::root().join("docs/migration.md")).expect("docs/migration.md");
    let section = doc.split("## Switching over").nth(1).expect("a Switching over section");
    let section = section.split("\n## ").next().unwrap();
    section.lines().filter_map(|l| l.trim().strip_prefix("$ ")).map(str::to_string).collect()
}

/// User story 7: migration over an installed MetalLB (v0.15.3's manifest: its CRDs and its
/// ValidatingWebhookConfiguration with `failurePolicy: Fail`; its pods never run here),
/// following `docs/migration.md` literally. Pools, advertisements and Service addresses
/// survive; editing a pool afterwards works; v0.16's `serviceSelectors` survive our CRD.
fn migration_over_metallb_keeps_everything(version: &str) {
    let Some(c) = Cluster::start(version, 1) else { return };
    c.apply(METALLB_V0_15_3);
    // MetalLB's pods would answer its webhook; here none run, so the objects MetalLB's
    // users made are created with the webhook configuration out of the way, then it is
    // put back as MetalLB's manifest has it.
    c.kubectl(&["delete", "validatingwebhookconfiguration", "metallb-webhook-configuration"]);
    let l2_with_selectors = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: selected, namespace: metallb-system}\nspec:\n  ipAddressPools: [example]\n";
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    c.apply(l2_with_selectors);
    c.apply(METALLB_V0_15_3);
    let blocked = c.kubectl_stdin(&["apply", "-f", "-"], Some(&POOL.replace("name: lan", "name: probe")));
    assert!(blocked.is_err(), "with MetalLB's webhook and no MetalLB pods, pool edits are refused: {blocked:?}");
    // A Service that MetalLB's controller gave an address.
    c.apply(&service("web", false));
    let patch = r#"{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.70","ipMode":"VIP"}]}}}"#;
    c.kubectl(&["patch", "service", "-n", "default", "web", "--subresource=status", "--type=merge", "-p", patch]);
    c.kubectl(&["annotate", "service", "-n", "default", "web", "metallb.io/ip-allocated-from-pool=example"]);

    let commands = migration_commands();
    assert!(commands.iter().any(|c| c.contains("kubectl apply -k manifests/")), "{commands:?}");
    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[0], "kubectl", "a step that is not kubectl: {command}");
        let args: Vec<String> = words[1..]
            .iter()
            .map(|w| {
                if *w == "manifests/" {
                    apiserver::root().join("manifests").display().to_string()
                } else {
                    w.to_string()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = c.kubectl_ok(&args) {
            panic!("docs/migration.md step `{command}` failed: {e}");
        }
    }
    // What the user had is still there.
    assert_eq!(c.ingress("default", "web"), ["198.51.100.70"]);
    let pools = c.kubectl(&["get", "ipaddresspools.metallb.io", "-n", NAMESPACE, "-o", "name"]);
    assert!(pools.contains("example"), "{pools}");
    let advs = c.kubectl(&["get", "l2advertisements.metallb.io", "-n", NAMESPACE, "-o", "name"]);
    assert!(advs.contains("empty") && advs.contains("selected"), "{advs}");
    // Nothing left behind blocks editing a pool.
    c.apply(POOL);
    c.kubectl(&[
        "patch",
        "ipaddresspool.metallb.io",
        "-n",
        NAMESPACE,
        "example",
        "--type=merge",
        "-p",
        r#"{"spec":{"autoAssign":true}}"#,
    ]);
    // MetalLB v0.16's serviceSelectors are kept by our CRD, not pruned.
    c.apply(&format!("{l2_with_selectors}  serviceSelectors: [{{matchLabels: {{expose: lan}}}}]\n"));
    let kept = c.kubectl(&[
        "get",
        "l2advertisement.metallb.io",
        "-n",
        NAMESPACE,
        "selected",
        "-o",
        "jsonpath={.spec.serviceSelectors[0].matchLabels.expose}",
    ]);
    assert_eq!(kept, "lan");

    // And FerroLB serves them: the controller keeps the address it finds.
    let controller = c.controller("ferrolb-controller-0");
    c.apply(&service("new", false));
    c.wait_ingress("default", "new", 1, &controller);
    assert_eq!(c.ingress("default", "web"), ["198.51.100.70"], "the migrated address stays");
}

/// User story 8: another writer of `status.loadBalancer.ingress` (K3s's ServiceLB left
/// enabled writes the node's address there): the controller says so (Event, log, metric)
/// and does not write its own address back.
fn another_ingress_writer_is_reported_not_fought(version: &str) {
    let Some(s) = setup(version, 1) else { return };
    let c = &s.cluster;
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    c.apply(&service("web", false));
    c.wait_ingress("default", "web", 1, &s.controller);
    let node_ip = apiserver::node_v4(0);
    let patch = format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{node_ip}","ipMode":"VIP"}}]}}}}}}"#);
    c.kubectl(&["patch", "service", "-n", "default", "web", "--subresource=status", "--type=merge", "-p", &patch]);
    wait_for(
        "a ForeignIngress Event",
        Duration::from_secs(15),
        || !c.events("default", "ForeignIngress").is_empty(),
        || s.controller.log_tail(),
    );
    assert!(s.controller.log_text().lines().any(|l| l.contains("WARN") && l.contains("ForeignIngress")));
    assert_eq!(s.controller.metric("ferrolb_controller_foreign_ingress_services", ""), 1.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.ingress("default", "web"), [node_ip], "FerroLB wrote its address back");
}

/// User story 9: kube-proxy in IPVS mode without strictARP, then fixed: the speaker says
/// so (metric, a Warning Event on its Node that `kubectl describe node` shows, i.e. with
/// the Node's uid) and clears the metric once fixed, without a restart.
fn kube_proxy_ipvs_without_strict_arp_then_fixed(version: &str) {
    let Some(s) = setup(version, 1) else { return };
    let c = &s.cluster;
    let kube_proxy = |strict: bool| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kube-proxy, namespace: kube-system}}\ndata:\n  config.conf: |\n    mode: ipvs\n    ipvs:\n      strictARP: {strict}\n"
        )
    };
    c.apply(&kube_proxy(false));
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    let speaker = c.speaker(0, &s.key, &[]);
    wait_for(
        "the strictARP metric",
        Duration::from_secs(20),
        || speaker.metric("ferrolb_kube_proxy_strict_arp_missing", "") == 1.0,
        || speaker.log_tail(),
    );
    let uid = c.kubectl(&["get", "node", &node_name(0), "-o", "jsonpath={.metadata.uid}"]);
    let mut on_node = Vec::new();
    wait_for(
        "a StrictARPMissing Event on the Node",
        Duration::from_secs(10),
        || {
            let v = c.get_json(&["events", "-n", "default"]);
            on_node = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["reason"] == "StrictARPMissing")
                .map(|e| e["involvedObject"]["uid"].as_str().unwrap_or_default().to_string())
                .collect();
            !on_node.is_empty()
        },
        || speaker.log_tail(),
    );
    assert_eq!(on_node, [uid], "the Event names the Node by uid");
    c.apply(&kube_proxy(true));
    wait_for(
        "the metric to clear",
        Duration::from_secs(20),
        || speaker.metric("ferrolb_kube_proxy_strict_arp_missing", "") == 0.0,
        || speaker.log_tail(),
    );
}

/// Watches `ips` from the client until `stop`, counting every probe where two MACs
/// answered one address.
fn watch_double_owners(
    c: &Cluster,
    ips: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    phase: std::sync::Arc<std::sync::Mutex<String>>,
) -> std::thread::JoinHandle<Vec<(String, String, BTreeSet<String>)>> {
    let client = c.client.name.clone();
    let ifname = c.client_if.clone();
    std::thread::spawn(move || {
        let ns = netns::Netns { name: client };
        let mut doubles = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            for ip in &ips {
                let macs = netns::arping_all(&ns, &ifname, ip, 1);
                if macs.len() > 1 {
                    doubles.push((phase.lock().unwrap().clone(), ip.clone(), macs));
                }
            }
        }
        std::mem::forget(ns); // owned by the cluster, not by this thread
        doubles
    })
}

/// User story 4: rolling restart of the speakers one by one, then all at once (a cold
/// cluster start): no address is ever answered by two nodes at once, every address is
/// answered again afterwards, and `nodeAssigned` Events come only for real moves.
fn rolling_and_cold_restarts_never_answer_twice(version: &str) {
    let Some(s) = setup(version, 3) else { return };
    let c = &s.cluster;
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    // The same short hold-down on every speaker (mixed settings disagree on who is settled).
    let hold_down = ["--cluster-hold-down-ms", "2000"];
    let mut speakers: Vec<Process> = (0..3).map(|i| c.speaker(i, &s.key, &hold_down)).collect();
    wait_ready(&speakers);
    let names: Vec<String> = (0..6).map(|i| format!("web{i}")).collect();
    for n in &names {
        c.apply(&service(n, false));
        c.apply(&endpoints(n, &node_name(0)));
    }
    let ips: Vec<String> = names.iter().map(|n| c.wait_ingress("default", n, 1, &s.controller).remove(0)).collect();
    for ip in &ips {
        sole_owner(c, ip, &speakers);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let phase = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let watcher = watch_double_owners(c, ips.clone(), stop.clone(), phase.clone());
    let events_before = c.events("default", "nodeAssigned").len();
    // One by one, as a DaemonSet rollout with maxUnavailable 1 does.
    for (i, speaker) in speakers.iter_mut().enumerate() {
        *phase.lock().unwrap() = format!("rolling: {} stopped", node_name(i));
        speaker.stop("TERM");
        *speaker = c.speaker(i, &s.key, &hold_down);
        *phase.lock().unwrap() = format!("rolling: {} started", node_name(i));
        wait_ready(std::slice::from_ref(speaker));
        std::thread::sleep(Duration::from_secs(3));
    }
    *phase.lock().unwrap() = "cold start".into();
    // All at once.
    for sp in speakers.iter_mut() {
        sp.stop("KILL");
    }
    let speakers: Vec<Process> = (0..3).map(|i| c.speaker(i, &s.key, &hold_down)).collect();
    wait_ready(&speakers);
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, std::sync::atomic::Ordering::Release);
    let doubles = watcher.join().expect("watcher");
    assert!(doubles.is_empty(), "answered by two nodes at once: {doubles:?}");
    for ip in &ips {
        sole_owner(c, ip, &speakers);
    }
    let events = c.events("default", "nodeAssigned");
    eprintln!("nodeAssigned: {events_before} before the restarts, {} after", events.len());
}

/// User story 10, a measurement (the Services take no NodePort: the default range holds
/// 2,768; run on demand, logging as in production:
/// `FERROLB_TEST_LOG_LEVEL=info cargo test -p ferrolb-e2e --test api_server --
/// --ignored --nocapture ten_thousand`): 10,000 LoadBalancer Services
/// (IPv6, the API server's larger Service range) created through the API; time until all
/// have addresses, the requests the controller and the speakers made (the API server's
/// audit log), their peak RSS.
#[test]
#[ignore = "a measurement of several minutes; figures in the README"]
fn ten_thousand_services() {
    const N: usize = 10_000;
    let Some(s) = setup("1.32", 3) else { return };
    let c = &s.cluster;
    c.apply(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: big, namespace: metallb-system}\nspec:\n  addresses: ['2001:db8:100::2:0/112']\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: big, namespace: metallb-system}\n",
    );
    let speakers = s.speakers(3);
    wait_ready(&speakers);
    let t = std::time::Instant::now();
    // In batches, without kubectl's client-side validation (it fetches the OpenAPI schema
    // and costs more CPU per object than the API server's create does: 7.8 s against 0.7 s
    // for 50 Services here).
    for batch in 0..N / 500 {
        let mut yaml = String::new();
        for i in batch * 500..(batch + 1) * 500 {
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i:05}, namespace: default}}\nspec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, ipFamilies: [IPv6], ipFamilyPolicy: SingleStack, selector: {{app: s}}, ports: [{{port: 80}}]}}\n"
            ));
        }
        c.kubectl_stdin(&["create", "--validate=false", "-f", "-", "-o", "name"], Some(&yaml))
            .expect("create 500 Services");
    }
    let created = t.elapsed();
    // The controller's gauge (set when it plans) first, polled every second; then the
    // Services themselves every 5 s: listing 10,000 of them often would load the API server
    // more than the controller does.
    let in_use = || s.controller.metric("metallb_allocator_addresses_in_use_total", "pool=\"big\"");
    let planned = || {
        std::thread::sleep(Duration::from_secs(1));
        in_use() as usize == N
    };
    wait_for("every Service to be planned", Duration::from_secs(900), planned, || s.controller.log_tail());
    let written = || {
        let v = c.get_json(&["services", "-n", "default"]);
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let n = items.iter().filter(|s| s["status"]["loadBalancer"]["ingress"].is_array()).count();
        if n < N {
            std::thread::sleep(Duration::from_secs(5));
        }
        n == N
    };
    wait_for("every Service to have its address written", Duration::from_secs(300), written, || {
        s.controller.log_tail()
    });
    let all = t.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    eprintln!("created {N} Services in {created:?}; all had addresses {all:?} after the first was created");
    for ((user, verb), n) in c.requests() {
        eprintln!("requests: {user} {verb} {n}");
    }
    eprintln!("peak RSS: controller {} KiB", s.controller.peak_rss_kib());
    for sp in &speakers {
        eprintln!("peak RSS: speaker {} KiB", sp.peak_rss_kib());
    }
}

/// User story 12 (issue 10): edits a MetalLB user makes, answered as MetalLB answers them
/// (controller/service.go at MetalLB 7938d3f89): a new requested address moves the
/// Service (:146-156); a pool edit that stops serving a holder moves it to a pool that
/// does (:127-132); PreferDualStack on a dual-stack cluster gains the other family from its
/// pool (:159-173), and back to SingleStack keeps one address of the primary family
/// (serviceFamilyChanged, :222). Each move is told with ClearAssignment then IPAllocated.
fn allocation_edits_follow_metallb(version: &str) {
    let Some(s) = setup(version, 1) else { return };
    let c = &s.cluster;
    let ctl = &s.controller;
    c.apply(POOL);
    c.apply(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: team, namespace: metallb-system}\nspec:\n  addresses: [198.51.100.100-198.51.100.109]\n  serviceAllocation: {priority: 1, namespaces: [default]}\n",
    );
    let until = |what: &str, name: &str, want: &[&str]| {
        wait_for(
            what,
            Duration::from_secs(30),
            || c.ingress("default", name) == want,
            || format!("ingress {:?}\ncontroller log:\n{}", c.ingress("default", name), ctl.log_tail()),
        )
    };
    // The pinned pool first.
    c.apply(&service("web", false));
    until("web from the team pool", "web", &["198.51.100.100"]);
    // Re-IP through the annotation.
    c.kubectl(&["annotate", "service", "-n", "default", "web", "metallb.io/loadBalancerIPs=198.51.100.70"]);
    until("web on its requested address", "web", &["198.51.100.70"]);
    let notes = |reason: &str| -> Vec<String> {
        c.events("default", reason).into_iter().filter(|(n, _)| n == "web").map(|(_, note)| note).collect()
    };
    wait_for(
        "ClearAssignment for web",
        Duration::from_secs(10),
        || notes("ClearAssignment").iter().any(|n| n.contains("198.51.100.100") && n.contains("198.51.100.70")),
        || format!("{:?}", c.events("default", "ClearAssignment")),
    );
    assert!(notes("IPAllocated").iter().any(|n| n.contains("198.51.100.70")), "{:?}", notes("IPAllocated"));

    // A pool edit that no longer serves the holder's namespace.
    c.apply(&service("api", false));
    until("api from the team pool", "api", &["198.51.100.100"]);
    c.kubectl(&[
        "patch",
        "ipaddresspool",
        "-n",
        NAMESPACE,
        "team",
        "--type=merge",
        "-p",
        r#"{"spec":{"serviceAllocation":{"namespaces":["elsewhere"]}}}"#,
    ]);
    until("api moved to the open pool", "api", &["198.51.100.64"]);
    assert_eq!(c.ingress("default", "web"), ["198.51.100.70"], "the untouched Service stays");

    // SingleStack -> PreferDualStack: the API server adds an IPv6 cluster IP, and the
    // Service gains an IPv6 address from the same pool.
    c.apply(&service("dual", false));
    until("dual with one address", "dual", &["198.51.100.65"]);
    let policy = |p: &str| {
        let patch = format!(r#"{{"spec":{{"ipFamilyPolicy":"{p}"}}}}"#);
        c.kubectl(&["patch", "service", "-n", "default", "dual", "--type=merge", "-p", &patch]);
    };
    policy("PreferDualStack");
    until("dual with both families", "dual", &["198.51.100.65", "2001:db8:100::64"]);
    // Back to SingleStack: the API server keeps the primary cluster IP; the Service is
    // reallocated with one IPv4 address (the pool's first free one is its own).
    policy("SingleStack");
    until("dual back to one address", "dual", &["198.51.100.65"]);
    assert_eq!(c.ingress("default", "api"), ["198.51.100.64"]);
}

/// Issue 12 (6): a second speaker running under this node's name (a copied manifest, a
/// node re-added under an old name) would split ownership silently. Both say so at warn
/// level and with a DuplicateNodeName Warning Event on the Node, where `kubectl describe
/// node` shows it.
fn a_duplicate_node_name_is_a_warning_event_on_the_node(version: &str) {
    let Some(s) = setup(version, 2) else { return };
    let c = &s.cluster;
    c.apply(&on_test_lan(METALLB_SIMPLE_SAMPLE));
    let genuine = c.speaker(0, &s.key, &[]);
    let impostor = c.speaker(1, &s.key, &["--node-name", &node_name(0)]);
    let mut events = Vec::new();
    wait_for(
        "a DuplicateNodeName Event",
        Duration::from_secs(20),
        || {
            events = c.events("default", "DuplicateNodeName");
            !events.is_empty()
        },
        || format!("{}\n{}", genuine.log_tail(), impostor.log_tail()),
    );
    assert!(events.iter().all(|(on, _)| *on == node_name(0)), "{events:?}");
    assert!(events[0].1.contains("--node-name"), "{events:?}");
    for p in [&genuine, &impostor] {
        assert!(p.log_text().lines().any(|l| l.contains("WARN") && l.contains("uses this node's name")));
    }
}

macro_rules! on_both_versions {
    ($($story:ident),* $(,)?) => {
        mod v1_30 { $( #[test] fn $story() { super::$story("1.30") } )* }
        mod v1_32 { $( #[test] fn $story() { super::$story("1.32") } )* }
    };
}

on_both_versions!(
    fresh_install_with_metallb_sample,
    fresh_install_from_the_helm_chart,
    k3s_homelab_config_is_explained_then_works,
    rbac_denial_is_reported_and_recovers,
    owner_crash_and_graceful_stop_leave_one_status,
    speakers_started_before_the_membership_secret_wait_for_it,
    controller_handover_moves_no_address,
    migration_over_metallb_keeps_everything,
    another_ingress_writer_is_reported_not_fought,
    kube_proxy_ipvs_without_strict_arp_then_fixed,
    rolling_and_cold_restarts_never_answer_twice,
    allocation_edits_follow_metallb,
    a_duplicate_node_name_is_a_warning_event_on_the_node,
);
