//! The Helm chart (`charts/ferrolb`), offline, with Helm's own engine: it lints strictly,
//! a typo in values is an error, it installs exactly what `manifests/` installs (apart
//! from Helm's labels), other values never change a selector (immutable on upgrade), its
//! output validates against the Kubernetes schemas of the supported versions, and the
//! Prometheus Operator objects carry the rules file promtool tests.
//!
//! Helm: `FERROLB_HELM` names the binary (`.ci/run` points it at `../shared/tools/helm`);
//! without it these tests skip loudly, except in CI, where they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn helm() -> Option<PathBuf> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    match std::env::var_os("FERROLB_HELM").map(PathBuf::from) {
        Some(p) if p.is_file() => return Some(p),
        Some(p) => assert!(!ci, "FERROLB_HELM={} does not exist", p.display()),
        None => assert!(!ci, "FERROLB_HELM is not set: the chart tests need Helm (../shared/tools/helm)"),
    }
    eprintln!("\n!!!!!!!! SKIPPED: FERROLB_HELM names no Helm binary; the chart is not tested !!!!!!!!\n");
    None
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn parse(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text).unwrap().into_iter().filter(|v| !v.is_null()).collect()
}

/// `helm template` of the chart in metallb-system with `args` (values), CRDs included.
fn template(helm: &Path, args: &[&str]) -> Vec<Value> {
    let chart = root().join("charts/ferrolb");
    let mut cmd = Command::new(helm);
    cmd.args(["template", "ferrolb"]).arg(&chart).args(["-n", "metallb-system", "--include-crds"]);
    cmd.args(["--kube-version", "1.32.0"]).args(args);
    let (ok, text) = output(&mut cmd);
    assert!(ok, "helm template {args:?}:\n{text}");
    parse(&text)
}

fn kustomize(dir: &str) -> Vec<Value> {
    let (ok, text) = output(Command::new("kubectl").arg("kustomize").arg(root().join(dir)));
    assert!(ok, "kubectl kustomize {dir}:\n{text}");
    parse(&text)
}

/// Helm's labels, which the chart adds and `manifests/` has not.
const HELM_LABELS: [&str; 4] =
    ["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"];

fn without_helm_labels(mut o: Value) -> Value {
    if let Some(labels) = o.get_mut("metadata").and_then(|m| m.get_mut("labels")).and_then(Value::as_object_mut) {
        for l in HELM_LABELS {
            labels.remove(l);
        }
    }
    o
}

fn by_key(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|o| {
            let key = format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            );
            (key, o)
        })
        .collect()
}

#[test]
fn the_chart_lints_strictly_and_a_typo_in_values_is_an_error() {
    let Some(helm) = helm() else { return };
    let chart = root().join("charts/ferrolb");
    let (ok, text) = output(Command::new(&helm).arg("lint").arg(&chart).arg("--strict"));
    assert!(ok && text.contains("0 chart(s) failed"), "{text}");
    let (ok, text) =
        output(Command::new(&helm).arg("lint").arg(&chart).args(["--strict", "--set", "speaker.logLvel=debug"]));
    assert!(!ok && text.contains("logLvel"), "a misspelt value must be refused by values.schema.json:\n{text}");
    let (ok, text) =
        output(Command::new(&helm).arg("lint").arg(&chart).args(["--strict", "--set", "speaker.logLevel=loud"]));
    assert!(!ok, "a log level the binaries do not know must be refused:\n{text}");
}

/// One source of truth: with default values the chart renders the objects `kubectl apply
/// -k manifests/` installs, field for field, apart from Helm's labels and the Namespace
/// (Helm creates it: `--create-namespace`).
#[test]
fn the_chart_installs_exactly_what_manifests_install() {
    let Some(helm) = helm() else { return };
    let chart = by_key(template(&helm, &[]).into_iter().map(without_helm_labels).collect());
    let manifests = by_key(kustomize("manifests").into_iter().filter(|o| o["kind"] != "Namespace").collect());
    assert_eq!(chart.keys().collect::<Vec<_>>(), manifests.keys().collect::<Vec<_>>());
    for (key, want) in &manifests {
        assert_eq!(&chart[key], want, "{key} differs between the chart and manifests/");
    }
    // The same bytes where the chart keeps a copy.
    for (copy, source) in [
        ("charts/ferrolb/crds/crds.yaml", "manifests/crds/crds.yaml"),
        ("charts/ferrolb/files/alerts.rules.yaml", "manifests/monitoring/prometheus/alerts.rules.yaml"),
    ] {
        let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
        assert_eq!(read(copy), read(source), "{copy} is a copy of {source}: copy it again");
    }
}

#[test]
fn other_values_never_change_a_selector_and_reach_the_objects() {
    let Some(helm) = helm() else { return };
    let selectors = |objects: &[Value]| -> BTreeMap<String, String> {
        objects
            .iter()
            .filter(|o| ["Deployment", "DaemonSet", "Service"].contains(&o["kind"].as_str().unwrap_or_default()))
            .map(|o| {
                let s =
                    if o["kind"] == "Service" { &o["spec"]["selector"] } else { &o["spec"]["selector"]["matchLabels"] };
                (o["metadata"]["name"].as_str().unwrap().to_string(), serde_saphyr::to_string(s).unwrap())
            })
            .collect()
    };
    let default = template(&helm, &[]);
    let custom = template(
        &helm,
        &[
            "--set",
            "image.repository=registry.example.invalid/ferrolb",
            "--set",
            "image.tag=9.9.9",
            "--set",
            "loadBalancerClass=example.com/ferrolb",
            "--set",
            "speaker.logLevel=debug",
            "--set",
            "controller.replicas=2",
            "--set",
            "speaker.priorityClassName=system-node-critical",
            "--set",
            "speaker.resources.requests.cpu=50m",
        ],
    );
    assert_eq!(selectors(&custom), selectors(&default));
    assert_eq!(selectors(&default).len(), 4, "{:?}", selectors(&default));
    let custom = by_key(custom);
    let ds = &custom["DaemonSet/metallb-system/ferrolb-speaker"]["spec"]["template"]["spec"];
    assert_eq!(ds["containers"][0]["image"], "registry.example.invalid/ferrolb:9.9.9");
    assert_eq!(ds["priorityClassName"], "system-node-critical");
    assert_eq!(ds["containers"][0]["resources"]["requests"]["cpu"], "50m");
    let args = serde_saphyr::to_string(&ds["containers"][0]["args"]).unwrap();
    assert!(args.contains("--log-level=debug") && args.contains("--lb-class=example.com/ferrolb"), "{args}");
    let dep = &custom["Deployment/metallb-system/ferrolb-controller"]["spec"];
    assert_eq!(dep["replicas"], 2);
    assert_eq!(dep["template"]["spec"]["containers"][0]["image"], "registry.example.invalid/ferrolb:9.9.9");
}

/// The rendered chart, with every optional object, against the schemas of the
/// supported Kubernetes versions (the Operator's kinds have none there).
#[test]
fn the_rendered_chart_validates_for_the_supported_versions() {
    let Some(helm) = helm() else { return };
    let all = [
        "--set",
        "prometheus.podMonitor.enabled=true",
        "--set",
        "prometheus.serviceMonitor.enabled=true",
        "--set",
        "prometheus.prometheusRule.enabled=true",
    ];
    let objects = template(&helm, &all);
    let operator = ["PodMonitor", "ServiceMonitor", "PrometheusRule"];
    assert_eq!(objects.iter().filter(|o| operator.contains(&o["kind"].as_str().unwrap_or_default())).count(), 3);
    let core: Vec<String> = objects
        .iter()
        .filter(|o| !operator.contains(&o["kind"].as_str().unwrap_or_default()))
        .map(|o| serde_saphyr::to_string(o).unwrap())
        .collect();
    let file = std::env::temp_dir().join(format!("ferrolb-chart-{}.yaml", std::process::id()));
    std::fs::write(&file, core.join("---\n")).unwrap();
    for version in ["1.30.0", "1.32.0"] {
        let (ok, text) = output(
            Command::new("python3")
                .args(["-m", "kubernetes_validate", "--kubernetes-version", version, "--strict", "--quiet"])
                .arg(&file),
        );
        assert!(ok, "kubernetes-validate {version}:\n{text}");
    }
    let _ = std::fs::remove_file(&file);
}

/// The Operator loads PrometheusRule objects, not a ConfigMap of rules: both the chart's
/// and `manifests/monitoring/`'s carry exactly the rules file that promtool tests, with
/// the label kube-prometheus-stack selects by (configurable in the chart).
#[test]
fn the_operator_objects_carry_the_promtool_tested_rules() {
    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("manifests/monitoring/prometheus/alerts.rules.yaml")).unwrap(),
    )
    .unwrap();
    let monitoring = kustomize("manifests/monitoring");
    let rule =
        monitoring.iter().find(|o| o["kind"] == "PrometheusRule").expect("a PrometheusRule in manifests/monitoring");
    assert_eq!(rule["spec"], rules, "prometheusrule.yaml is generated from alerts.rules.yaml: regenerate it");
    assert!(monitoring.iter().all(|o| o["kind"] != "ConfigMap" || o["metadata"]["name"] != "ferrolb-alert-rules"));
    for kind in ["PrometheusRule", "PodMonitor"] {
        let o = monitoring.iter().find(|o| o["kind"] == kind).unwrap();
        assert_eq!(o["metadata"]["labels"]["release"], "kube-prometheus-stack", "{kind}");
    }
    let Some(helm) = helm() else { return };
    let chart = template(
        &helm,
        &[
            "--set",
            "prometheus.prometheusRule.enabled=true",
            "--set",
            "prometheus.prometheusRule.additionalLabels.release=monitoring",
        ],
    );
    let rule = chart.iter().find(|o| o["kind"] == "PrometheusRule").expect("the chart's PrometheusRule");
    assert_eq!(rule["spec"], rules);
    assert_eq!(rule["metadata"]["labels"]["release"], "monitoring");
}

/// Both kustomizations render with the oldest kubectl users still have: Debian's 1.20
/// (kustomize 2.0). `FERROLB_OLD_KUBECTL` names it (`.ci/run` unpacks Debian's
/// kubernetes-client package); outside CI without it, skipped loudly.
#[test]
fn the_kustomizations_render_with_debians_old_kubectl() {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let Some(old) = std::env::var_os("FERROLB_OLD_KUBECTL").map(PathBuf::from).filter(|p| p.is_file()) else {
        assert!(!ci, "FERROLB_OLD_KUBECTL names no kubectl (see .ci/run)");
        eprintln!("\n!!!!!!!! SKIPPED: FERROLB_OLD_KUBECTL names no kubectl !!!!!!!!\n");
        return;
    };
    for dir in ["manifests", "manifests/monitoring"] {
        let (ok, text) = output(Command::new(&old).arg("kustomize").arg(root().join(dir)));
        assert!(ok, "{} kustomize {dir}:\n{text}", old.display());
        let new: Vec<String> =
            kustomize(dir).iter().map(|o| o["kind"].as_str().unwrap_or_default().to_string()).collect();
        let got: Vec<String> =
            parse(&text).iter().map(|o| o["kind"].as_str().unwrap_or_default().to_string()).collect();
        assert_eq!(got.len(), new.len(), "{dir}: {got:?} vs {new:?}");
    }
}
