//! A real Prometheus server (Debian's `prometheus`) scrapes the speaker in its namespace;
//! the scraped series are checked through Prometheus' HTTP API, and `promtool` checks the
//! exposition format.

use ferrolb_testkit::netns;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns::{KillOnDrop, Lan, SERVER_MAC, Speaker, config};

const VIP4: &str = "198.51.100.10";
const VIP6: &str = "2001:db8:100::10";

#[test]
fn promtool_accepts_the_exposition() {
    let lan = Lan::new();
    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    let text = speaker.http("/metrics").expect("metrics");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}\n---\n{text}");
}

#[test]
fn prometheus_scrapes_the_speaker() {
    let lan = Lan::new();
    let speaker = Speaker::start(&lan.server, &config(&[VIP4, VIP6], &[]), &[]);
    for _ in 0..3 {
        assert_eq!(lan.arping(VIP4, 1).as_deref(), Some(SERVER_MAC));
    }
    let prometheus = Prometheus::start(
        &lan.server,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: ferrolb-speaker\n  static_configs:\n  - targets: ['{}']\n",
            netns::METRICS
        ),
    );
    let query = |q: &str| prometheus.value(q);
    let expect = |q: &str, ok: &dyn Fn(f64) -> bool| {
        let start = Instant::now();
        loop {
            let got = query(q);
            if got.is_some_and(ok) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Prometheus never returned the expected value for {q} (last: {got:?})"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    expect(r#"up{job="ferrolb-speaker"}"#, &|v| v == 1.0);
    expect(&format!(r#"metallb_layer2_requests_received{{ip="{VIP4}"}}"#), &|v| v >= 3.0);
    expect(&format!(r#"metallb_layer2_responses_sent{{ip="{VIP4}"}}"#), &|v| v >= 3.0);
    expect(&format!(r#"metallb_layer2_gratuitous_sent{{ip="{VIP6}"}}"#), &|v| v >= 1.0);
    expect(
        &format!(r#"metallb_speaker_announced{{ip="{VIP6}",node="node-a",protocol="layer2",service="default/svc1"}}"#),
        &|v| v == 1.0,
    );
    expect("ferrolb_config_last_reload_successful", &|v| v == 1.0);
    expect("ferrolb_vips", &|v| v == 2.0);
    drop(speaker);
}

/// Debian's Prometheus in a namespace, on 127.0.0.1:9090 there; killed, and its data
/// removed, on drop.
struct Prometheus {
    ns: String,
    process: Option<KillOnDrop>,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(ns: &netns::Netns, config: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(netns::unique("ferrolb-prom"));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let process = KillOnDrop(
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "prometheus"])
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg("--web.listen-address=127.0.0.1:9090")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus (apt-get install prometheus)"),
        );
        Prometheus { ns: ns.name.clone(), process: Some(process), dir }
    }

    /// A GET of `/api/v1/{endpoint}`; `None` until Prometheus is up.
    fn api(&self, endpoint: &str, query: Option<&str>) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:9090/api/v1/{endpoint}");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "curl", "-s", "--max-time", "2", "-G", &url]);
        if let Some(q) = query {
            cmd.args(["--data-urlencode", &format!("query={q}")]);
        }
        serde_json::from_slice(&cmd.output().ok()?.stdout).ok()
    }

    /// The first sample of an instant query.
    fn value(&self, q: &str) -> Option<f64> {
        self.api("query", Some(q))?["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.process.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The controller's metrics after a mock-backed round (kube's tower-test service answers
/// every write), served inside a namespace made here, scraped by a real Prometheus that
/// also loads the shipped alert rules: the series arrive and the rules evaluate, firing
/// for the exhausted pool.
#[test]
fn prometheus_scrapes_the_controller_and_evaluates_the_alert_rules() {
    use std::sync::Arc;
    let ns = netns::Netns::new("fp");
    let path = format!("/run/netns/{}", ns.name);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    // The controller side: its own thread, inside the namespace, for the test's length.
    std::thread::spawn(move || {
        netns::enter(&path);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            use ferrolb_controller::reconcile::{Memory, Settings, Snapshot, plan};
            fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
                serde_saphyr::from_str(s).unwrap()
            }
            let snapshot = Snapshot {
                pools: vec![
                    yaml("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: tiny, namespace: metallb-system}\nspec: {addresses: [198.51.100.10/32]}\n"),
                    yaml("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: broken, namespace: metallb-system}\nspec: {addresses: [198.51.100.300/32]}\n"),
                ],
                services: ["a", "b"]
                    .iter()
                    .map(|n| yaml(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {n}, namespace: default}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n")))
                    .collect(),
                namespaces: Default::default(),
            };
            let writes = plan(&snapshot, &Settings { namespace: "metallb-system".into(), lb_class: None }, &mut Memory::default());
            let (service, mut handle) = tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
            tokio::spawn(async move {
                while let Some((req, send)) = handle.next_request().await {
                    let body = req.into_body().collect_bytes().await.unwrap();
                    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    v["apiVersion"] = "v1".into();
                    v["kind"] = "Service".into();
                    v["metadata"]["name"] = "a".into();
                    send.send_response(http::Response::new(kube::client::Body::from(serde_json::to_vec(&v).unwrap())));
                }
            });
            let metrics = Arc::new(ferrolb_controller::k8s::Metrics::default());
            let writer = ferrolb_controller::k8s::Writer::new(kube::Client::new(service, "default"), "metallb-system", metrics.clone());
            let _ = writer.apply(&writes).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:7473").await.unwrap();
            started_tx.send(()).unwrap();
            axum::serve(listener, ferrolb_runtime::http::router(Arc::new(metrics.registry()), Default::default())).await.unwrap();
        });
    });
    started_rx.recv_timeout(Duration::from_secs(10)).expect("controller metrics up");

    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/monitoring/prometheus/alerts.rules.yaml");
    let prometheus = Prometheus::start(
        &ns,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n- job_name: ferrolb-controller\n  static_configs:\n  - targets: ['127.0.0.1:7473']\n",
            rules.display()
        ),
    );
    let api = |endpoint: &str, query: Option<&str>| prometheus.api(endpoint, query);
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let value =
        |q: &str| -> Option<f64> { api("query", Some(q))?["data"]["result"][0]["value"][1].as_str()?.parse().ok() };
    wait("the controller scraped", &|| value(r#"up{job="ferrolb-controller"}"#) == Some(1.0));
    assert_eq!(value(r#"metallb_allocator_addresses_in_use_total{pool="tiny"}"#), Some(1.0));
    assert_eq!(value(r#"metallb_allocator_addresses_total{pool="tiny"}"#), Some(1.0));
    assert_eq!(value("metallb_k8s_client_config_stale_bool"), Some(1.0), "the broken pool");
    assert_eq!(value("metallb_k8s_client_config_loaded_bool"), Some(1.0));
    assert!(value("metallb_k8s_client_updates_total").is_some_and(|v| v >= 1.0));
    // Every shipped rule loads and evaluates; the exhausted pool's alert is on its way.
    wait("the rules evaluated", &|| {
        api("rules", None).is_some_and(|v| {
            let rules: Vec<&serde_json::Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            rules.len() >= 10 && rules.iter().all(|r| r["health"] == "ok")
        })
    });
    wait("MetalLBAddressPoolExhausted pending", &|| {
        value(r#"ALERTS{alertname="MetalLBAddressPoolExhausted",pool="tiny"}"#) == Some(1.0)
    });
    wait("MetalLBStaleConfig pending", &|| value(r#"ALERTS{alertname="MetalLBStaleConfig"}"#) == Some(1.0));
}
