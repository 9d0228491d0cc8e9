//! The cluster manifests, offline: `kubectl kustomize` renders them, every object
//! validates against the Kubernetes schemas (`kubernetes-validate`), the speaker really is
//! host-network with NET_RAW only, the alert rules pass `promtool`, and every metric the
//! dashboard and the rules use is one the binaries export.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (see .ci/run for the packages)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn render(dir: &str) -> Vec<Value> {
    let text = run(Command::new("kubectl").arg("kustomize").arg(root().join(dir)));
    serde_saphyr::from_multiple(&text).unwrap()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|s| s.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn the_install_renders_and_every_object_validates() {
    let objects = render("manifests");
    let kinds: BTreeSet<String> = objects.iter().map(|o| o["kind"].as_str().unwrap().to_string()).collect();
    for k in ["Namespace", "CustomResourceDefinition", "ClusterRole", "Role", "Deployment", "DaemonSet", "Service"] {
        assert!(kinds.contains(k), "no {k} rendered");
    }
    let file = std::env::temp_dir().join(format!("ferrolb-rendered-{}.yaml", std::process::id()));
    std::fs::write(&file, run(Command::new("kubectl").arg("kustomize").arg(root().join("manifests")))).unwrap();
    // As a module of the python3 on PATH, where .ci/run installed it.
    let report = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--kubernetes-version", "1.33.0", "--strict", "--quiet"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (pip install kubernetes-validate)");
    let _ = std::fs::remove_file(&file);
    assert!(
        report.status.success(),
        "kubernetes-validate:\n{}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    // Everything namespaced lands where MetalLB's objects are, but the kube-proxy Role.
    for o in &objects {
        let ns = o["metadata"]["namespace"].as_str();
        let kind = o["kind"].as_str().unwrap();
        if ["Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"].contains(&kind) {
            assert!(ns.is_none(), "{kind} is cluster-scoped");
        } else if o["metadata"]["name"].as_str().unwrap().ends_with("kube-proxy") {
            assert_eq!(ns, Some("kube-system"));
        } else {
            assert_eq!(ns, Some("metallb-system"), "{kind} {:?}", o["metadata"]["name"]);
        }
    }
}

#[test]
fn the_speaker_is_host_network_with_net_raw_only() {
    let objects = render("manifests");
    let ds = find(&objects, "DaemonSet", "ferrolb-speaker");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(strings(&sc["capabilities"]["add"]), vec!["NET_RAW"]);
    assert_eq!(strings(&sc["capabilities"]["drop"]), vec!["ALL"]);
    assert_ne!(sc["privileged"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert!(pod["securityContext"]["privileged"].is_null());
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    let tolerated: Vec<&str> =
        pod["tolerations"].as_array().unwrap().iter().filter_map(|t| t["key"].as_str()).collect();
    assert!(tolerated.contains(&"node-role.kubernetes.io/control-plane"), "runs on control-plane nodes too");
    assert_eq!(strings(&c["command"]), vec!["/ferrolb-speaker", "run"]);
    let env: Vec<&str> = c["env"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    for var in ["NODE_NAME", "POD_NAMESPACE", "POD_IP"] {
        assert!(env.contains(&var), "{var} from the downward API");
    }
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], ferrolb_runtime::MEMBERLIST_SECRET);
    // The controller is not root and writes nothing to its filesystem.
    let dep = find(&objects, "Deployment", "ferrolb-controller");
    assert_eq!(dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true);
}

/// RBAC: each component gets what its code calls, and the speaker cannot write Services.
#[test]
fn rbac_is_least_privilege() {
    let objects = render("manifests");
    let grants = |kind: &str, name: &str| -> Vec<(String, String)> {
        let role = find(&objects, kind, name);
        let mut out = Vec::new();
        for rule in role["rules"].as_array().unwrap() {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    out.push((r.clone(), v));
                }
            }
        }
        out
    };
    let has = |g: &[(String, String)], r: &str, v: &str| g.iter().any(|(gr, gv)| gr == r && gv == v);
    let controller = [grants("ClusterRole", "ferrolb-controller"), grants("Role", "ferrolb-controller")].concat();
    for (r, v) in [
        ("services/status", "patch"),
        ("services", "patch"),
        ("events", "create"),
        ("leases", "update"),
        ("secrets", "create"),
        ("ipaddresspools/status", "patch"),
    ] {
        assert!(has(&controller, r, v), "controller lacks {v} {r}");
    }
    let speaker = [grants("ClusterRole", "ferrolb-speaker"), grants("Role", "ferrolb-speaker")].concat();
    for (r, v) in [
        ("services", "watch"),
        ("endpointslices", "watch"),
        ("nodes", "watch"),
        ("pods", "watch"),
        ("l2advertisements", "watch"),
        ("events", "create"),
    ] {
        assert!(has(&speaker, r, v), "speaker lacks {v} {r}");
    }
    for (r, v) in &speaker {
        assert!(
            ["get", "list", "watch"].contains(&v.as_str()) || r == "events" || r.starts_with("servicel2statuses"),
            "speaker may {v} {r}"
        );
    }
    assert!(!objects.iter().any(|o| strings(&o["rules"][0]["verbs"]).contains(&"*".to_string())), "no wildcards");
}

/// Metric names (normalized: no `_total`, `_bucket`, `_sum`, `_count`) that the speaker
/// and the controller export.
fn exported_names() -> BTreeSet<String> {
    use ferrolb_speaker::metrics::*;
    // Families without series print nothing: give each one.
    let speaker = Arc::new(Metrics::default());
    let ip = IpLabel { ip: IpValue("198.51.100.10".parse().unwrap()) };
    for f in [&speaker.requests_received, &speaker.responses_sent, &speaker.gratuitous_sent] {
        f.get_or_create(&ip).inc();
    }
    speaker.conflicts.get_or_create(&ip).inc();
    let announced =
        AnnouncedLabels { ip: ip.ip, node: SharedValue("n".into()), protocol: "layer2", service: "s".into() };
    speaker.announced.get_or_create(&announced).set(1);
    let sock = SocketLabels { interface: "eth0".into(), protocol: "arp".into() };
    for f in [&speaker.filter_misses, &speaker.socket_frames, &speaker.socket_drops] {
        f.get_or_create(&sock).inc();
    }
    speaker.frames_dropped.get_or_create(&DropLabels { interface: "eth0".into(), reason: "bad_checksum".into() }).inc();
    speaker.config_reloads.get_or_create(&ResultLabel { result: "success".into() }).inc();
    speaker.cluster_members.get_or_create(&StateLabel { state: "settled" }).set(3);
    speaker.cluster_rejected.get_or_create(&ReasonLabel { reason: "bad_tag" }).inc();
    let controller = Arc::new(ferrolb_controller::k8s::Metrics::default());
    let pool = ferrolb_controller::k8s::PoolLabel { pool: "lan".into() };
    for f in [
        &controller.in_use,
        &controller.total,
        &controller.in_use_v4,
        &controller.total_v4,
        &controller.in_use_v6,
        &controller.total_v6,
    ] {
        f.get_or_create(&pool).set(1);
    }
    let mut text = ferrolb_runtime::http::render_text(&speaker.registry());
    prometheus_client::encoding::text::encode(&mut text, &controller.registry()).unwrap();
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| normalize(l.split(' ').next().unwrap())).collect()
}

fn normalize(name: &str) -> String {
    let mut n = name;
    for suffix in ["_bucket", "_sum", "_count", "_total"] {
        n = n.strip_suffix(suffix).unwrap_or(n);
    }
    n.to_string()
}

fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["metallb_", "ferrolb_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let tail = &rest[i..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            out.insert(normalize(&tail[..end]));
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_use_only_exported_metrics() {
    let dir = root().join("manifests/monitoring/prometheus");
    run(Command::new("promtool").args(["check", "rules"]).arg(dir.join("alerts.rules.yaml")));
    run(Command::new("promtool").args(["test", "rules"]).arg(dir.join("alerts.test.yaml")));
    let exported = exported_names();
    let rules = std::fs::read_to_string(dir.join("alerts.rules.yaml")).unwrap();
    let dashboard =
        std::fs::read_to_string(root().join("manifests/monitoring/grafana/grafana-dashboard.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    for (what, text) in [("alert rules", &rules), ("dashboard", &dashboard)] {
        let used = referenced(text);
        assert!(used.len() >= 6, "{what} use {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(unknown.is_empty(), "{what} use metrics nobody exports: {unknown:?} (exported: {exported:?})");
    }
    let monitoring = render("manifests/monitoring");
    assert!(monitoring.iter().any(|o| o["kind"] == "PodMonitor"));
    assert!(monitoring.iter().any(|o| o["metadata"]["labels"]["grafana_dashboard"] == "1"));
}

#[test]
fn the_example_pool_loads_cleanly() {
    let path = root().join("manifests/examples/pool.yaml");
    let loaded = ferrolb_model::config::load("pool.yaml", &std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.pools.len(), 1);
}
