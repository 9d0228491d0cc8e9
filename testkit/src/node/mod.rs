//! The rest of a real cluster around [`apiserver::Cluster`]: kube-controller-manager and
//! kube-scheduler beside the API server, and in every node namespace its own containerd,
//! kubelet and kube-proxy (iptables mode), so that FerroLB runs from its image as real Pods,
//! the real EndpointSlice controller writes the endpoints, and kube-proxy carries the
//! client's packets from the VIP to a backend Pod. kind does this with containers; this
//! does it with network namespaces on one LAN bridge.
//!
//! Binaries: `FERROLB_KUBE_APISERVERS` names the folder `../shared/k8s/unpack` fills
//! (`kubelet-1.32`, `kube-controller-manager-1.32`, `kube-scheduler-1.32`, `kube-proxy-1.30`
//! beside the API servers); Debian's `containerd`, `runc`, `containernetworking-plugins`,
//! `iptables`, `conntrack`, `buildah` and `busybox-static`. Missing ones fail the test in CI
//! and skip it loudly elsewhere.
//!
//! What it took (each found by failing; `../shared/k8s/README.md`): containerd and the
//! kubelet entered with `nsenter --net` (not `ip netns exec`, whose fresh `/sys` hides the
//! cgroup mounts); a runc wrapper clamping the negative `oom_score_adj` the kubelet asks for
//! (no CAP_SYS_RESOURCE here); cgroup v1 with the cgroupfs driver and a cgroup root per
//! node; a pause image built here; kube-proxy without the global conntrack settings.
//!
//! Addresses (documentation ranges only): the LAN and Services as in [`apiserver`]; node
//! `i`'s Pods on 203.0.113.(32 i)/27 and 2001:db8:200:i::/64, routed by the other nodes and
//! the API namespace through its LAN address (a flat routed Pod network, as host-gw
//! flannel or kube-router make). The namespaces have no default route: nothing leaves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod images;
mod member;

pub use images::{ferrolb_image, test_images};
pub use member::Node;
use member::make_cgroup;

use crate::apiserver::{self, Cluster, node_name, node_v4, node_v6, wait_for};
use crate::netns::{KillOnDrop, must, unique};

/// The pause image every Pod sandbox runs (built here: nothing can be pulled).
pub const PAUSE_IMAGE: &str = "localhost/ferrolb-test/pause:1";
/// A small HTTP server answering with its Pod's name on port 8080 (busybox httpd).
pub const HTTPD_IMAGE: &str = "localhost/ferrolb-test/httpd:1";

/// Node `i`'s Pod ranges.
pub fn pod_v4_range(i: usize) -> String {
    format!("203.0.113.{}/27", 32 * i)
}
pub fn pod_v6_range(i: usize) -> String {
    format!("2001:db8:200:{i}::/64")
}

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// What a real cluster needs that this machine lacks, if anything.
fn missing() -> Vec<String> {
    let mut out = Vec::new();
    match std::env::var_os("FERROLB_KUBE_APISERVERS") {
        None => out.push("FERROLB_KUBE_APISERVERS is not set (`$(../shared/k8s/unpack)`)".to_string()),
        Some(dir) => {
            for b in ["kubelet-1.32", "kube-controller-manager-1.32", "kube-scheduler-1.32", "kube-proxy-1.30"] {
                if !Path::new(&dir).join(b).is_file() {
                    out.push(format!("{b} is not in {} (`../shared/k8s/unpack`)", Path::new(&dir).display()));
                }
            }
        }
    }
    for (cmd, pkg) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("iptables", "iptables"),
        ("conntrack", "conntrack"),
        ("buildah", "buildah"),
        ("busybox", "busybox-static"),
        ("nsenter", "util-linux"),
        ("gcc", "gcc"),
    ] {
        let found =
            Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().is_ok_and(|o| o.status.success());
        if !found {
            out.push(format!("{cmd} is missing (apt-get install {pkg})"));
        }
    }
    // The kubelet here runs with the cgroupfs driver on cgroup v1 hierarchies.
    let cgroup_fs = Command::new("stat").args(["-fc", "%T", "/sys/fs/cgroup"]).output();
    if cgroup_fs.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "cgroup2fs") {
        out.push("/sys/fs/cgroup is cgroup v2 only; the real-cluster harness sets the kubelets up on cgroup v1".into());
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        out.push("/usr/lib/cni/bridge is missing (apt-get install containernetworking-plugins)".into());
    }
    out
}

/// True where a real cluster can run; false (after saying so loudly) where it cannot,
/// outside CI. In CI a missing piece fails the test.
pub fn available() -> bool {
    let missing = missing();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("real cluster test cannot run: {}", missing.join("; "));
    assert!(!ci(), "{msg}");
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    false
}

fn kube_binary(name: &str) -> PathBuf {
    Path::new(&std::env::var_os("FERROLB_KUBE_APISERVERS").expect("FERROLB_KUBE_APISERVERS")).join(name)
}

/// How quickly Kubernetes notices a dead node: its defaults, or what the README suggests
/// to users whose `Cluster`-policy Services must recover sooner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeMonitoring {
    /// kube-controller-manager's and the kubelet's defaults (a node is unreachable after
    /// `--node-monitor-grace-period`, 40-50 s).
    Default,
    /// `--node-monitor-grace-period=16s` and the kubelet's `nodeStatusUpdateFrequency: 4s`.
    Fast,
}

impl NodeMonitoring {
    fn controller_manager_flags(self) -> Vec<&'static str> {
        match self {
            NodeMonitoring::Default => Vec::new(),
            NodeMonitoring::Fast => vec!["--node-monitor-grace-period=16s", "--node-monitor-period=2s"],
        }
    }

    fn kubelet_status_update(self) -> &'static str {
        match self {
            NodeMonitoring::Default => "10s",
            NodeMonitoring::Fast => "4s",
        }
    }
}

/// The host-wide sysctls a kubelet sets for itself (its `protectKernelDefaults: false`):
/// the network namespace does not hold them, so they are put back when the cluster goes.
const KUBELET_SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

fn read_sysctls() -> Vec<(&'static str, String)> {
    KUBELET_SYSCTLS
        .iter()
        .filter_map(|k| Some((*k, std::fs::read_to_string(format!("/proc/sys/{k}")).ok()?.trim().to_string())))
        .collect()
}

/// A whole cluster: the control plane and `n` kubelet nodes on the LAN, a client beside.
#[derive(Debug)]
pub struct RealCluster {
    pub nodes: Vec<Node>,
    control: Vec<KillOnDrop>,
    cni_netns_before: BTreeSet<String>,
    host_sysctls: Vec<(&'static str, String)>,
    /// The API server, the LAN, the client (dropped last).
    pub api: Cluster,
}

fn cni_netns() -> BTreeSet<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("cni-"))
        .map(String::from)
        .collect()
}

impl RealCluster {
    /// Starts the control plane and `n` nodes with `images` (OCI archives) in every node's
    /// containerd, and waits for every node to be Ready. None where pieces are missing,
    /// outside CI.
    pub fn start(n: usize, images: &[PathBuf]) -> Option<RealCluster> {
        RealCluster::start_tuned(n, images, NodeMonitoring::Default)
    }

    /// [`RealCluster::start`] with the node monitoring a user may tune.
    pub fn start_tuned(n: usize, images: &[PathBuf], monitoring: NodeMonitoring) -> Option<RealCluster> {
        if !available() {
            return None;
        }
        let node_tokens: Vec<String> = (0..n).map(|i| format!("node-token-{}-{i}", unique("t"))).collect();
        let token_lines: Vec<String> = node_tokens
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{t},system:node:{},uid-{},system:nodes", node_name(i), node_name(i)))
            .collect();
        let api = Cluster::start_with(
            "1.32",
            n,
            &token_lines,
            &["--kubelet-preferred-address-types=InternalIP", "--allow-privileged=true"],
        )?;
        let mut cluster = RealCluster {
            nodes: Vec::new(),
            control: Vec::new(),
            cni_netns_before: cni_netns(),
            host_sysctls: read_sysctls(),
            api,
        };
        let dir = cluster.api.dir.clone();
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");

        // The runc the kubelet's sandboxes need here: no CAP_SYS_RESOURCE, so a negative
        // oom_score_adj (-998 for sandboxes) is clamped to 0 before runc reads it.
        let wrapper = dir.join("runc-wrapper");
        std::fs::write(
            &wrapper,
            "#!/bin/sh\nbundle=\nprev=\nfor a in \"$@\"; do [ \"$prev\" = --bundle ] || [ \"$prev\" = -b ] && bundle=$a; prev=$a; done\n\
             if [ -n \"$bundle\" ] && [ -f \"$bundle/config.json\" ]; then\n  sed -i 's/\"oomScoreAdj\":-[0-9]*/\"oomScoreAdj\":0/' \"$bundle/config.json\"\nfi\n\
             exec /usr/sbin/runc \"$@\"\n",
        )
        .unwrap();
        must(&["chmod", "755", wrapper.to_str().unwrap()]);

        // The Pod network: each node routes the others' Pod ranges through their LAN
        // address, and so does the API namespace (the API server answers Pods).
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                cluster.api.nodes[i].ip(&["route", "add", &pod_v4_range(j), "via", &node_v4(j)]);
                cluster.api.nodes[i].ip(&["-6", "route", "add", &pod_v6_range(j), "via", &node_v6(j)]);
            }
            cluster.api.api.ip(&["route", "add", &pod_v4_range(i), "via", &node_v4(i)]);
            cluster.api.api.ip(&["-6", "route", "add", &pod_v6_range(i), "via", &node_v6(i)]);
            let ns = &cluster.api.nodes[i];
            ns.sysctl("net.ipv4.ip_forward", "1");
            ns.sysctl("net.ipv6.conf.all.forwarding", "1");
        }

        // The control plane's other half, beside the API server.
        let admin = cluster.api.admin.display().to_string();
        let d = |f: &str| dir.join(f).display().to_string();
        cluster.control.push(KillOnDrop(
            Command::new("ip")
                .args(["netns", "exec", &cluster.api.api.name])
                .arg(kube_binary("kube-controller-manager-1.32"))
                .args([&format!("--kubeconfig={admin}"), "--leader-elect=false", "--secure-port=0"])
                .arg(format!("--service-account-private-key-file={}", d("sa.key")))
                .arg(format!("--root-ca-file={}", d("certs/apiserver.crt")))
                .args([
                    "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service,-route",
                    "--use-service-account-credentials=false",
                ])
                .args(monitoring.controller_manager_flags())
                .stdout(Stdio::null())
                .stderr(log("kube-controller-manager.log"))
                .spawn()
                .expect("start kube-controller-manager"),
        ));
        cluster.control.push(KillOnDrop(
            Command::new("ip")
                .args(["netns", "exec", &cluster.api.api.name])
                .arg(kube_binary("kube-scheduler-1.32"))
                .args([&format!("--kubeconfig={admin}"), "--leader-elect=false", "--secure-port=0"])
                .stdout(Stdio::null())
                .stderr(log("kube-scheduler.log"))
                .spawn()
                .expect("start kube-scheduler"),
        ));

        let mut all_images = test_images();
        all_images.extend_from_slice(images);
        for (i, token) in node_tokens.iter().enumerate() {
            let node = cluster.start_node(i, token, &wrapper, &all_images, monitoring);
            cluster.nodes.push(node);
        }
        wait_for(
            &format!("{n} nodes Ready"),
            Duration::from_secs(120),
            || cluster.ready_nodes().len() == n,
            || {
                format!(
                    "ready: {:?}\nkubelet node-0:\n{}",
                    cluster.ready_nodes(),
                    tail(&cluster.nodes[0].dir.join("kubelet.log"), 40)
                )
            },
        );
        // The default ServiceAccount exists before any Pod asks for it.
        wait_for(
            "the default ServiceAccount",
            Duration::from_secs(60),
            || cluster.api.kubectl_ok(&["get", "serviceaccount", "default", "-n", "default"]).is_ok(),
            || tail(&cluster.api.dir.join("kube-controller-manager.log"), 40),
        );
        Some(cluster)
    }

    fn start_node(&self, i: usize, token: &str, runc: &Path, images: &[PathBuf], monitoring: NodeMonitoring) -> Node {
        let name = node_name(i);
        let dir = self.api.dir.join(&name);
        std::fs::create_dir_all(dir.join("cni")).unwrap();
        let cgroup = unique("ferrolb-node");
        make_cgroup(&cgroup);
        let mut node = Node {
            index: i,
            name: name.clone(),
            netns: self.api.nodes[i].name.clone(),
            dir: dir.clone(),
            cgroup,
            containerd: None,
            kubelet: None,
            kube_proxy: None,
        };
        let p = |f: &str| dir.join(f).display().to_string();
        std::fs::write(
            dir.join("cni/10-ferrolb-test.conflist"),
            serde_json::json!({
                "cniVersion": "0.4.0",
                "name": "ferrolb-test",
                "plugins": [
                    {"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "hairpinMode": true,
                     "ipam": {"type": "host-local", "dataDir": p("cni-ipam"),
                              "ranges": [[{"subnet": pod_v4_range(i)}], [{"subnet": pod_v6_range(i)}]]}},
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("containerd.toml"),
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{sock}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = "{runc}"
      SystemdCgroup = false
"#,
                root = p("containerd/root"),
                state = p("containerd/state"),
                sock = p("containerd.sock"),
                cni = p("cni"),
                runc = runc.display(),
            ),
        )
        .unwrap();
        node.containerd = Some(KillOnDrop(
            node.enter()
                .args(["containerd", "--config", &p("containerd.toml")])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
                .spawn()
                .expect("start containerd"),
        ));
        wait_for(
            &format!("containerd of {name}"),
            Duration::from_secs(30),
            || {
                Command::new("ctr")
                    .args(["-a", &p("containerd.sock"), "version"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
            || tail(&dir.join("containerd.log"), 30),
        );
        for image in images {
            node.import(image);
        }

        let kubeconfig = dir.join("kubelet.kubeconfig");
        self.api.write_kubeconfig(&kubeconfig, token);
        std::fs::write(
            dir.join("kubelet.yaml"),
            format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {addr}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
containerRuntimeEndpoint: unix://{sock}
# The API server reaches the kubelet (`kubectl logs`) without a client certificate here:
# anonymous and allowed, on a LAN of the test's own.
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
readOnlyPort: 0
failSwapOn: false
resolvConf: ""
podLogsDir: {logs}
# No disk eviction: "0%" switches a threshold off (a CI machine once had under 1 % of its disk
# free, and the kubelet tainted every node with DiskPressure and evicted the web Pods).
evictionHard: {{memory.available: "1Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%", imagefs.inodesFree: "0%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: {update}
"#,
                update = monitoring.kubelet_status_update(),
                addr = node_v4(i),
                cgroup = node.cgroup,
                sock = p("containerd.sock"),
                logs = p("pod-logs"),
            ),
        )
        .unwrap();
        node.kubelet = Some(KillOnDrop(
            node.enter()
                .arg(kube_binary("kubelet-1.32"))
                .arg(format!("--config={}", p("kubelet.yaml")))
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .arg(format!("--root-dir={}", p("kubelet")))
                .arg(format!("--cert-dir={}", p("pki")))
                .arg(format!("--hostname-override={name}"))
                .arg(format!("--node-ip={},{}", node_v4(i), node_v6(i)))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("kubelet.log")).unwrap())
                .spawn()
                .expect("start kubelet"),
        ));
        node.kube_proxy = Some(KillOnDrop(
            node.enter()
                .arg(kube_binary("kube-proxy-1.30"))
                .arg(format!("--kubeconfig={}", self.api.admin.display()))
                .arg(format!("--hostname-override={name}"))
                .args(["--proxy-mode=iptables", "--cluster-cidr=203.0.113.0/24,2001:db8:200::/56"])
                // A namespace cannot raise the global conntrack limits.
                .args([
                    "--conntrack-max-per-core=0",
                    "--conntrack-tcp-timeout-established=0",
                    "--conntrack-tcp-timeout-close-wait=0",
                ])
                .args(["--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("kube-proxy.log")).unwrap())
                .spawn()
                .expect("start kube-proxy"),
        ));
        node
    }

    /// Node `i` loses its power: every process of it killed at once ([`Node::kill`]) and its
    /// link down, so that its kernel forwards nothing either (its iptables rules would
    /// still carry traffic sent to its MAC otherwise).
    pub fn power_off(&mut self, i: usize) {
        self.api.switch.ip(&["link", "set", &self.api.ports[i], "down"]);
        self.nodes[i].kill();
    }

    /// The names of the nodes whose Ready condition is True.
    pub fn ready_nodes(&self) -> Vec<String> {
        let Ok(text) = self.api.kubectl_ok(&["get", "nodes", "-o", "json"]) else { return Vec::new() };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
            .collect()
    }

    /// The logs a failing wait should show: the control plane's and each node's tails.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for f in ["kube-controller-manager.log", "kube-scheduler.log"] {
            out += &format!("--- {f}\n{}\n", tail(&self.api.dir.join(f), 15));
        }
        for n in &self.nodes {
            for f in ["kubelet.log", "containerd.log", "kube-proxy.log"] {
                out += &format!("--- {} {f}\n{}\n", n.name, tail(&n.dir.join(f), 15));
            }
        }
        out += &self.api.kubectl_ok(&["get", "pods", "-A", "-o", "wide"]).unwrap_or_default();
        out
    }

    /// Waits until every Pod of a namespace matching `selector` is Running and Ready, and
    /// there are `n`; returns their (name, node).
    pub fn wait_pods_ready(&self, namespace: &str, selector: &str, n: usize, limit: Duration) -> Vec<(String, String)> {
        let mut pods = Vec::new();
        wait_for(
            &format!("{n} ready Pods {selector} in {namespace}"),
            limit,
            || {
                pods = self.ready_pods(namespace, selector);
                pods.len() == n
            },
            || self.diagnostics(),
        );
        pods
    }

    /// (name, node) of the Running and Ready Pods matching `selector`, not being deleted.
    pub fn ready_pods(&self, namespace: &str, selector: &str) -> Vec<(String, String)> {
        let Ok(text) = self.api.kubectl_ok(&["get", "pods", "-n", namespace, "-l", selector, "-o", "json"]) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running")
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    p["spec"]["nodeName"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// One HTTP GET from the client (IPv6 addresses bracketed): the body, if it answered.
    pub fn fetch(&self, ip: &str, timeout: Duration) -> Option<String> {
        let url = if ip.contains(':') { format!("http://[{ip}]/") } else { format!("http://{ip}/") };
        let out =
            self.api.client.exec(&["curl", "-sf", "-g", "--max-time", &format!("{:.1}", timeout.as_secs_f64()), &url]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits until the client fetches a page through `ip`; returns it.
    pub fn wait_fetch(&self, ip: &str, limit: Duration) -> String {
        let mut page = None;
        wait_for(
            &format!("the client to fetch a page through {ip}"),
            limit,
            || {
                page = self.fetch(ip, Duration::from_secs(2));
                page.is_some()
            },
            || self.diagnostics(),
        );
        page.unwrap()
    }

    /// The MACs answering ARP (IPv4) or NDP (IPv6) for `ip` on the client's LAN.
    pub fn answering(&self, ip: &str) -> BTreeSet<String> {
        if ip.contains(':') { self.api.ndisc6(ip).into_iter().collect() } else { self.api.arping_all(ip, 1) }
    }

    /// A node's index from a MAC on the LAN.
    pub fn node_of_mac(&self, mac: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| apiserver::node_mac(i) == mac)
    }

    /// A GET from the client to a node's address and port (the speaker's metrics).
    pub fn node_http(&self, i: usize, port: u16, path: &str) -> Option<String> {
        let url = format!("http://{}:{port}{path}", node_v4(i));
        let out = self.api.client.exec(&["curl", "-sf", "--max-time", "2", &url]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for RealCluster {
    /// Nodes first (kubelets before their Pods, so nothing restarts them), then the
    /// controllers, the Pod namespaces CNI left, and the API server and LAN last.
    fn drop(&mut self) {
        self.nodes.clear();
        self.control.clear();
        for ns in cni_netns().difference(&self.cni_netns_before) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for (key, value) in &self.host_sysctls {
            let _ = std::fs::write(format!("/proc/sys/{key}"), value);
        }
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
