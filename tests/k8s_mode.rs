//! The speaker in Kubernetes mode (`ferrolb-speaker run`, as the DaemonSet starts it),
//! in a network namespace, against a mock API server (plain HTTP, in the same namespace)
//! that serves realistic objects: a LoadBalancer Service with its address in its status,
//! its EndpointSlice, a pool, an L2Advertisement, the Node, the speaker pod, and a
//! kube-proxy in IPVS mode without strictARP; its writes are slow (a second each). The
//! kernel's arping on the client side must get the speaker's MAC, the speaker must write
//! what a cluster would see, and the slow writes must not hold up its heartbeats.

use ferrolb_testkit::netns;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, StatusCode, Uri};
use netns::{KillOnDrop, Lan, SERVER_MAC, SERVER_V4};
use serde_json::{Value, json};

const VIP: &str = "198.51.100.10";
const API: &str = "127.0.0.1:18080";

type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items})
}

/// What the mock API server answers, by request.
fn answer(method: &Method, path: &str, query: &str, body: &Value, server_if: &str) -> (StatusCode, Option<Value>) {
    let _ = server_if;
    if query.contains("watch=true") {
        return (StatusCode::OK, None); // held open, no events
    }
    let meta = |name: &str, ns: Option<&str>| {
        let mut m = json!({"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"});
        if let Some(ns) = ns {
            m["namespace"] = ns.into();
        }
        m
    };
    let v = match (method.clone(), path) {
        (Method::GET, "/api/v1/namespaces/kube-system/configmaps") if query.contains("metadata.name%3Dkube-proxy") => {
            list(
                "ConfigMap",
                vec![json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("kube-proxy", Some("kube-system")),
                "data": {"config.conf": "mode: ipvs\nipvs:\n  strictARP: false\n"}})],
            )
        }
        (Method::GET, "/api/v1/services") => list(
            "Service",
            vec![json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta("web", Some("default")),
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "ports": [{"port": 80}], "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": VIP}]}}})],
        ),
        (Method::GET, "/apis/discovery.k8s.io/v1/endpointslices") => list(
            "EndpointSlice",
            vec![json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": [{"addresses": ["10.42.0.7"], "nodeName": "node-a", "conditions": {"ready": true}}]})],
        ),
        (Method::GET, "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools") => list(
            "IPAddressPool",
            vec![json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": meta("lan", Some("metallb-system")),
            "spec": {"addresses": ["198.51.100.10-198.51.100.20"]}})],
        ),
        (Method::GET, "/apis/metallb.io/v1beta1/namespaces/metallb-system/l2advertisements") => list(
            "L2Advertisement",
            vec![json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": meta("lan", Some("metallb-system")),
            "spec": {"ipAddressPools": ["lan"]}})],
        ),
        (Method::GET, "/api/v1/nodes") => list(
            "Node",
            vec![json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "labels": {"kubernetes.io/hostname": "node-a"}},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}, {"type": "Ready", "status": "True"}]}})],
        ),
        // The speaker itself, and a peer at 127.0.0.1 where the test listens to the
        // heartbeats it is sent.
        (Method::GET, "/api/v1/namespaces/metallb-system/pods") => list(
            "Pod",
            vec![
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("ferrolb-speaker-x", Some("metallb-system")),
                       "status": {"podIP": SERVER_V4}}),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("ferrolb-speaker-y", Some("metallb-system")),
                       "status": {"podIP": "127.0.0.1"}}),
            ],
        ),
        (Method::GET, "/apis/metallb.io/v1beta1/namespaces/metallb-system/servicel2statuses") => {
            list("ServiceL2Status", vec![])
        }
        (Method::POST, _) | (Method::PATCH, _) => {
            let mut v = body.clone();
            v["apiVersion"] = v.get("apiVersion").cloned().unwrap_or("v1".into());
            if path.contains("servicel2statuses") {
                v["apiVersion"] = "metallb.io/v1beta1".into();
                v["kind"] = "ServiceL2Status".into();
                v["metadata"]["name"] = path.trim_end_matches("/status").rsplit('/').next().unwrap().into();
            }
            return (StatusCode::CREATED, Some(v));
        }
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Some(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"}),
                ),
            );
        }
    };
    (StatusCode::OK, Some(v))
}

/// Serves the mock API from a thread inside the namespace, recording every write.
fn mock_api(ns: &netns::Netns, server_if: String, seen: Seen) {
    let path = format!("/run/netns/{}", ns.name);
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        netns::enter(&path);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: axum::body::Bytes| {
                let seen = seen.clone();
                let server_if = server_if.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if method != Method::GET {
                        seen.lock().unwrap().push((method.to_string(), uri.path().to_string(), v.clone()));
                        // A slow API server: writes take a second.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    match answer(&method, uri.path(), uri.query().unwrap_or(""), &v, &server_if) {
                        (_, None) => axum::response::Response::new(Body::from_stream(futures::stream::pending::<
                            Result<axum::body::Bytes, std::io::Error>,
                        >())),
                        (code, Some(v)) => axum::response::Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Body::from(serde_json::to_vec(&v).unwrap()))
                            .unwrap(),
                    }
                }
            });
            let listener = tokio::net::TcpListener::bind(API).await.unwrap();
            up_tx.send(()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    up_rx.recv_timeout(Duration::from_secs(10)).expect("mock API up");
}

#[test]
fn the_speaker_in_kubernetes_mode_answers_for_what_the_api_says_and_reports_it() {
    let lan = Lan::new();
    lan.accept_locally(VIP);
    let seen: Seen = Arc::default();
    mock_api(&lan.server, lan.server_if.clone(), seen.clone());
    // The heartbeats the speaker sends its peer at 127.0.0.1:7946, timed.
    let heartbeats: Arc<Mutex<Vec<Instant>>> = Arc::default();
    {
        let (path, heartbeats) = (format!("/run/netns/{}", lan.server.name), heartbeats.clone());
        std::thread::spawn(move || {
            netns::enter(&path);
            let sock = std::net::UdpSocket::bind("127.0.0.1:7946").expect("peer socket");
            let mut buf = [0u8; 2048];
            while sock.recv(&mut buf).is_ok() {
                heartbeats.lock().unwrap().push(Instant::now());
            }
        });
    }
    let dir = std::env::temp_dir().join(netns::unique("ferrolb-k8s"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: mock, cluster: {{server: 'http://{API}'}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: mock, user: u, namespace: metallb-system}}}}]\ncurrent-context: c\n"),
    )
    .unwrap();
    let key = dir.join("secretkey");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let log = dir.join("speaker.log");
    let _speaker = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &lan.server.name, "env"])
            .arg(format!("KUBECONFIG={}", kubeconfig.display()))
            .args(["NODE_NAME=node-a", "POD_NAMESPACE=metallb-system", &format!("POD_IP={SERVER_V4}")])
            .arg(ferrolb_testkit::binary("ferrolb-speaker"))
            .args([
                "--log-level",
                "debug",
                "--cluster-key-file",
                key.to_str().unwrap(),
                "--metrics-bind",
                netns::METRICS,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("speaker"),
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}; speaker log:\n{}",
                log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The kernel's ARP client on the LAN gets the speaker's MAC for the Service's address.
    wait("the address answered", &|| lan.arping(VIP, 1).as_deref() == Some(SERVER_MAC));
    assert!(lan.ping(VIP));
    let writes = || seen.lock().unwrap().clone();
    let event = |reason: &str| {
        writes().into_iter().find(|(m, p, b)| m == "POST" && p.ends_with("/events") && b["reason"] == reason)
    };
    wait("the events", &|| event("nodeAssigned").is_some() && event("StrictARPMissing").is_some());
    let assigned = event("nodeAssigned").unwrap();
    assert_eq!(assigned.2["regarding"]["name"], "web");
    assert!(assigned.2["note"].as_str().unwrap().contains(VIP));
    let strict = event("StrictARPMissing").unwrap();
    assert_eq!(strict.2["regarding"]["kind"], "Node");
    assert_eq!(strict.2["type"], "Warning");
    wait("the ServiceL2Status", &|| {
        writes().iter().any(|(m, p, _)| m == "PATCH" && p.contains("servicel2statuses") && p.ends_with("/status"))
    });
    let status = writes().into_iter().find(|(m, p, _)| m == "PATCH" && p.ends_with("/status")).unwrap();
    assert_eq!(status.2["status"]["node"], "node-a");
    assert_eq!(status.2["status"]["serviceName"], "web");
    assert_eq!(status.2["status"]["interfaces"][0]["name"], lan.server_if.as_str());
    // What Prometheus would scrape from this speaker.
    let metrics = lan.server.exec(&["curl", "-sf", &format!("http://{}/metrics", netns::METRICS)]);
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert_eq!(netns::sample(&text, "ferrolb_kube_proxy_strict_arp_missing", ""), Some(1.0));
    assert_eq!(
        netns::sample(
            &text,
            "metallb_speaker_announced",
            &format!("ip=\"{VIP}\",node=\"node-a\",protocol=\"layer2\",service=\"default/web\"")
        ),
        Some(1.0)
    );
    assert_eq!(netns::sample(&text, "ferrolb_cluster_members", "state=\"settled\""), Some(1.0));
    // The slow writes (a second each, several of them by now) never held up the
    // heartbeats: no gap the other speakers would take for a death.
    let times = heartbeats.lock().unwrap().clone();
    assert!(times.len() > 20, "{} heartbeats", times.len());
    let worst = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(worst < Duration::from_millis(190), "heartbeats stopped for {worst:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
