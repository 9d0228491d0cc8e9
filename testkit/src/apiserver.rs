//! A real Kubernetes control plane for tests: etcd and a real kube-apiserver in a network
//! namespace of their own, on a bridge shared with node namespaces (the speakers) and a
//! client. FerroLB is installed with `kubectl apply -k manifests/`; the controller and the
//! speakers run as the real binaries with kubeconfigs that hold their service accounts'
//! tokens, so the shipped RBAC authorises every call. The test writes what the missing
//! components (kubelet, scheduler, kube-controller-manager) would: Nodes, the speaker Pods
//! with `status.podIP`, EndpointSlices.
//!
//! Binaries: `FERROLB_KUBE_APISERVERS` names a directory holding `kube-apiserver-1.30` and
//! `kube-apiserver-1.32` (`.ci/run` points it at `../shared/k8s/unpack`'s output); `etcd`
//! comes from PATH (Debian's `etcd-server`). Without them a test skips loudly, except in
//! CI (`CI` set), where it fails.
//!
//! Addresses: everything is on 198.51.100.0/24 and 2001:db8:100::/64. The API listens on
//! 198.51.100.1; its Service ranges (198.51.100.128/25, 2001:db8:100::1:0/112: a dual-stack
//! cluster) are on the same bridge, and the API
//! namespace has no default route, so nothing it dials (MetalLB's webhook Services) can
//! leave the test topology.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::netns::{KillOnDrop, Netns, must, unique, veth};

pub const API_V4: &str = "198.51.100.1";
pub const API_PORT: u16 = 6443;
pub const CLIENT_V4: &str = "198.51.100.200";
pub const CLIENT_V6: &str = "2001:db8:100::200";
pub const CLIENT_MAC: &str = "02:c1:00:00:00:c8";
pub const NAMESPACE: &str = "metallb-system";

pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}
pub fn node_v4(i: usize) -> String {
    format!("198.51.100.{}", 10 + i)
}
pub fn node_v6(i: usize) -> String {
    format!("2001:db8:100::{}", 10 + i)
}
pub fn node_mac(i: usize) -> String {
    format!("02:fe:00:00:01:{:02x}", i + 10)
}

pub use crate::root;

/// The kube-apiserver binary of `version` ("1.30", "1.32"), or None (after saying so
/// loudly) where there is none outside CI. In CI a missing binary fails the test.
pub fn apiserver_binary(version: &str) -> Option<PathBuf> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let problem = match std::env::var_os("FERROLB_KUBE_APISERVERS") {
        None => "FERROLB_KUBE_APISERVERS is not set".to_string(),
        Some(dir) => {
            let bin = Path::new(&dir).join(format!("kube-apiserver-{version}"));
            if bin.is_file() {
                if Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success()) {
                    return Some(bin);
                }
                "etcd is not on PATH (apt-get install etcd-server)".to_string()
            } else {
                format!("{} does not exist", bin.display())
            }
        }
    };
    let msg = format!(
        "real API server test for Kubernetes {version} cannot run: {problem}. Point FERROLB_KUBE_APISERVERS at a \
         directory with kube-apiserver-1.30 and kube-apiserver-1.32 (e.g. `$(../shared/k8s/unpack)`)"
    );
    assert!(!ci, "{msg}");
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    None
}

pub use crate::wait::{poll, wait_for};

/// A control plane and a LAN: API namespace, `n` node namespaces, a client, one bridge.
#[derive(Debug)]
pub struct Cluster {
    pub version: String,
    pub dir: PathBuf,
    pub admin: PathBuf,
    pub client: Netns,
    pub client_if: String,
    pub nodes: Vec<Netns>,
    pub node_ifs: Vec<String>,
    /// The switch side of each node's link.
    pub ports: Vec<String>,
    processes: Vec<KillOnDrop>,
    pub api: Netns,
    pub switch: Netns,
}

impl Cluster {
    /// Starts etcd and the API server of `version` with `n` node namespaces; None where the
    /// binaries are missing outside CI.
    pub fn start(version: &str, n: usize) -> Option<Cluster> {
        Cluster::start_with(version, n, &[], &[])
    }

    /// [`Cluster::start`] with more lines in the API server's `tokens.csv` (kubelets' node
    /// identities) and more API server flags.
    pub fn start_with(version: &str, n: usize, tokens: &[String], flags: &[&str]) -> Option<Cluster> {
        let bin = apiserver_binary(version)?;
        crate::netns::require_root();
        let dir = std::env::temp_dir().join(format!("ferrolb-{}", unique("api")));
        std::fs::create_dir_all(&dir).expect("test directory");
        let switch = Netns::new("fw");
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "br0", "up"]);
        let mut ports = Vec::new();
        let mut attach = |host: &Netns, mac: &str, v4: &str, v6: &str| {
            host.sysctl("net.ipv6.conf.default.accept_dad", "0");
            host.sysctl("net.ipv6.conf.all.accept_dad", "0");
            let (port, ifname) = veth(&switch, host);
            switch.ip(&["link", "set", &port, "master", "br0", "up"]);
            host.ip(&["link", "set", &ifname, "address", mac, "up"]);
            host.ip(&["addr", "add", &format!("{v4}/24"), "dev", &ifname]);
            host.ip(&["addr", "add", &format!("{v6}/64"), "dev", &ifname, "nodad"]);
            ports.push(port);
            ifname
        };
        let api = Netns::new("fa");
        attach(&api, "02:a0:00:00:00:01", API_V4, "2001:db8:100::1");
        let client = Netns::new("fc");
        let client_if = attach(&client, CLIENT_MAC, CLIENT_V4, CLIENT_V6);
        let mut nodes = Vec::new();
        let mut node_ifs = Vec::new();
        for i in 0..n {
            let ns = Netns::new("fn");
            node_ifs.push(attach(&ns, &node_mac(i), &node_v4(i), &node_v6(i)));
            // kube-proxy in IPVS mode with strictARP: the kernel answers ARP only for
            // addresses on the receiving interface.
            ns.sysctl("net.ipv4.conf.all.arp_ignore", "1");
            ns.sysctl("net.ipv4.conf.all.arp_announce", "2");
            nodes.push(ns);
        }
        ports.drain(..2);

        let token = format!("admin-{}", unique("t"));
        let mut lines = format!("{token},admin,admin,system:masters\n");
        for t in tokens {
            lines.push_str(t);
            lines.push('\n');
        }
        std::fs::write(dir.join("tokens.csv"), lines).expect("tokens");
        must(&["openssl", "genrsa", "-out", dir.join("sa.key").to_str().unwrap(), "2048"]);
        must(&[
            "openssl",
            "rsa",
            "-in",
            dir.join("sa.key").to_str().unwrap(),
            "-pubout",
            "-out",
            dir.join("sa.pub").to_str().unwrap(),
        ]);
        // What FerroLB's service accounts ask of the API server, one line a request.
        std::fs::write(
            dir.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  userGroups: ['system:serviceaccounts:metallb-system']\n- level: None\n",
        )
        .expect("audit policy");
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
        let mut processes = Vec::new();
        // etcd on the API namespace's own loopback: parallel tests never share a port.
        processes.push(KillOnDrop(
            Command::new("ip")
                .args(["netns", "exec", &api.name, "etcd", "--data-dir"])
                .arg(dir.join("etcd"))
                .args(["--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls"])
                .args(["http://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380"])
                .args(["--unsafe-no-fsync"])
                .stdout(Stdio::null())
                .stderr(log("etcd.log"))
                .spawn()
                .expect("start etcd"),
        ));
        let d = |f: &str| format!("{}", dir.join(f).display());
        processes.push(KillOnDrop(
            Command::new("ip")
                .args(["netns", "exec", &api.name])
                .arg(&bin)
                .args(["--etcd-servers=http://127.0.0.1:2379", &format!("--bind-address={API_V4}")])
                .arg(format!("--secure-port={API_PORT}"))
                .arg(format!("--cert-dir={}", d("certs")))
                .arg(format!("--service-account-key-file={}", d("sa.pub")))
                .arg(format!("--service-account-signing-key-file={}", d("sa.key")))
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg(format!("--token-auth-file={}", d("tokens.csv")))
                .arg(format!("--audit-policy-file={}", d("audit-policy.yaml")))
                .arg(format!("--audit-log-path={}", d("audit.log")))
                .args([
                    "--authorization-mode=Node,RBAC",
                    "--service-cluster-ip-range=198.51.100.128/25,2001:db8:100::1:0/112",
                ])
                .args(flags)
                .stdout(Stdio::null())
                .stderr(log("apiserver.log"))
                .spawn()
                .expect("start kube-apiserver"),
        ));
        let admin = dir.join("admin.kubeconfig");
        let cluster = Cluster {
            version: version.into(),
            admin: admin.clone(),
            dir,
            client,
            client_if,
            nodes,
            node_ifs,
            ports,
            processes,
            api,
            switch,
        };
        // The serving certificate appears first, then the API answers.
        wait_for(
            "the API server's certificate",
            Duration::from_secs(60),
            || cluster.dir.join("certs/apiserver.crt").exists(),
            || cluster.log("apiserver.log"),
        );
        cluster.write_kubeconfig(&admin, &token);
        wait_for(
            "the API server to be ready",
            Duration::from_secs(90),
            || cluster.kubectl_ok(&["get", "--raw", "/readyz"]).is_ok(),
            || cluster.log("apiserver.log"),
        );
        Some(cluster)
    }

    pub fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A kubeconfig at `path` that authenticates with `token` (the API's own CA bundle).
    pub fn write_kubeconfig(&self, path: &Path, token: &str) {
        let ca = self.dir.join("certs/apiserver.crt");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://{API_V4}:{API_PORT}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: test, user: u}}\ncurrent-context: c\n",
            ca.display()
        );
        std::fs::write(path, text).expect("kubeconfig");
    }

    /// `kubectl ARGS` as the admin, from the API namespace; stdout, or stderr as the error.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let out = self.run_kubectl(args, stdin);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `kubectl ARGS` as the admin, from the API namespace, with `stdin` fed to it.
    fn run_kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.api.name, "kubectl", "--kubeconfig"]).arg(&self.admin).args(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(text) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to kubectl");
        }
        child.wait_with_output().expect("kubectl")
    }

    /// `kubectl ARGS`, which must succeed.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_ok(args).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    /// `kubectl apply -f -` of `yaml`, which must succeed; returns stdout and stderr
    /// (where the API server's warnings are).
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.run_kubectl(&["apply", "-f", "-"], Some(yaml));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl apply failed:\n{text}\n--- of:\n{yaml}");
        text
    }

    /// A JSON object (`kubectl get -o json`).
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl JSON")
    }

    /// Installs FerroLB as a user does: `kubectl apply -k manifests/`.
    pub fn install(&self) {
        let dir = root().join("manifests");
        self.kubectl(&["apply", "-k", dir.to_str().unwrap()]);
    }

    /// Installs FerroLB as a Helm user does (`helm template ... | kubectl apply -f -`, the
    /// namespace created first, as `helm install --create-namespace` does, and labelled
    /// for the speakers' host network as the README says). `FERROLB_HELM` names Helm.
    pub fn install_with_helm(&self) {
        let helm = std::env::var_os("FERROLB_HELM").map(PathBuf::from).filter(|p| p.is_file());
        let helm = helm.expect("FERROLB_HELM names no Helm binary (../shared/tools/helm)");
        self.kubectl(&["create", "namespace", NAMESPACE]);
        self.kubectl(&["label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=privileged"]);
        let out = Command::new(helm)
            .args(["template", "ferrolb"])
            .arg(root().join("charts/ferrolb"))
            .args(["-n", NAMESPACE, "--include-crds", "--kube-version", &format!("{}.0", self.version)])
            .output()
            .expect("helm template");
        assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
        self.apply(&String::from_utf8_lossy(&out.stdout));
    }

    /// A Node object as a kubelet registers it, Ready.
    pub fn add_node(&self, i: usize, labels: &[(&str, &str)]) {
        let name = node_name(i);
        let mut l = serde_json::json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
        for (k, v) in labels {
            l[*k] = (*v).into();
        }
        let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": l}});
        self.apply(&node.to_string());
        let status = serde_json::json!({"status": {
            "addresses": [{"type": "InternalIP", "address": node_v4(i)}, {"type": "InternalIP", "address": node_v6(i)}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        self.kubectl(&["patch", "node", &name, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
    }

    /// The speaker Pod of node `i`, Running with its host-network address (what the
    /// DaemonSet controller, the scheduler and the kubelet would write). Returns its uid.
    pub fn add_speaker_pod(&self, i: usize) -> String {
        let name = format!("ferrolb-speaker-{}", node_name(i));
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": "ferrolb", "app.kubernetes.io/component": "speaker"}},
            "spec": {"nodeName": node_name(i), "hostNetwork": true, "serviceAccountName": "ferrolb-speaker",
                "containers": [{"name": "speaker", "image": "ghcr.io/ferrolb/ferrolb:0.1.0"}]}});
        self.apply(&pod.to_string());
        let status = serde_json::json!({"status": {"phase": "Running", "podIP": node_v4(i), "podIPs": [{"ip": node_v4(i)}, {"ip": node_v6(i)}], "hostIP": node_v4(i)}});
        self.kubectl(&[
            "patch",
            "pod",
            "-n",
            NAMESPACE,
            &name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
        self.kubectl(&["get", "pod", "-n", NAMESPACE, &name, "-o", "jsonpath={.metadata.uid}"])
    }

    /// A kubeconfig holding a token of service account `sa` (as its Pod would mount).
    pub fn service_account_kubeconfig(&self, sa: &str) -> PathBuf {
        let token = self.kubectl(&["create", "token", "-n", NAMESPACE, sa, "--duration=2h"]);
        let path = self.dir.join(format!("{}.kubeconfig", unique(sa)));
        self.write_kubeconfig(&path, token.trim());
        path
    }

    /// Starts the controller (in the API namespace), authorised as its service account.
    pub fn controller(&self, pod_name: &str) -> Process {
        let kubeconfig = self.service_account_kubeconfig("ferrolb-controller");
        let bin = crate::binary("ferrolb-controller");
        let log = self.dir.join(format!("{}.log", unique(pod_name)));
        // Replicas share the API namespace: a port each.
        static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(17472);
        let port = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.api.name])
            .arg(bin)
            .args(["run", "--log-level", &log_level(), "--metrics-bind", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_NAME", pod_name);
        Process::spawn(cmd, log, self.api.name.clone(), port)
    }

    /// Requests FerroLB's service accounts made, by user and verb (from the audit log).
    pub fn requests(&self) -> std::collections::BTreeMap<(String, String), usize> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        let mut out = std::collections::BTreeMap::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let user =
                v["user"]["username"].as_str().unwrap_or_default().rsplit(':').next().unwrap_or_default().to_string();
            let verb = v["verb"].as_str().unwrap_or_default().to_string();
            *out.entry((user, verb)).or_insert(0) += 1;
        }
        out
    }

    /// The membership key as the controller created it (the Secret the speakers mount).
    pub fn memberlist_key_file(&self) -> PathBuf {
        let path = self.dir.join("memberlist-secretkey");
        let mut b64 = String::new();
        wait_for(
            "the controller to create the memberlist Secret",
            Duration::from_secs(30),
            || {
                b64 = self
                    .kubectl_ok(&[
                        "get",
                        "secret",
                        "-n",
                        NAMESPACE,
                        "ferrolb-memberlist",
                        "-o",
                        "jsonpath={.data.secretkey}",
                    ])
                    .unwrap_or_default();
                !b64.is_empty()
            },
            String::new,
        );
        let out = Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
        let mut child = out.expect("base64");
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b64.as_bytes()).unwrap();
        }
        let key = child.wait_with_output().expect("base64").stdout;
        std::fs::write(&path, key).expect("key file");
        path
    }

    /// Starts the speaker of node `i` in its namespace (`ferrolb-speaker run`, as the
    /// DaemonSet does), authorised as the speaker service account.
    pub fn speaker(&self, i: usize, key_file: &Path, extra: &[&str]) -> Process {
        let kubeconfig = self.service_account_kubeconfig("ferrolb-speaker");
        let log = self.dir.join(format!("{}.log", unique("speaker")));
        let pod = format!("ferrolb-speaker-{}", node_name(i));
        let uid = self.kubectl(&["get", "pod", "-n", NAMESPACE, &pod, "-o", "jsonpath={.metadata.uid}"]);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.nodes[i].name])
            .arg(crate::binary("ferrolb-speaker"))
            .args(["run", "--log-level", &log_level(), "--gratuitous-interval-ms", "100"])
            .arg("--cluster-key-file")
            .arg(key_file)
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("NODE_NAME", node_name(i))
            .env("POD_NAME", &pod)
            .env("POD_UID", uid)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_IP", node_v4(i));
        Process::spawn(cmd, log, self.nodes[i].name.clone(), 7472)
    }

    /// Every MAC that answers ARP for `ip` from the client.
    pub fn arping_all(&self, ip: &str, count: u32) -> std::collections::BTreeSet<String> {
        crate::netns::arping_all(&self.client, &self.client_if, ip, count)
    }

    pub fn ndisc6(&self, ip: &str) -> Option<String> {
        crate::netns::ndisc6(&self.client, &self.client_if, ip)
    }

    /// The addresses in a Service's `status.loadBalancer.ingress`.
    pub fn ingress(&self, ns: &str, name: &str) -> Vec<String> {
        let v = self.get_json(&["service", "-n", ns, name]);
        v["status"]["loadBalancer"]["ingress"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["ip"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    /// Waits until the Service has `n` addresses; returns them.
    pub fn wait_ingress(&self, ns: &str, name: &str, n: usize, controller: &Process) -> Vec<String> {
        let mut got = Vec::new();
        wait_for(
            &format!("{n} addresses for {ns}/{name}"),
            Duration::from_secs(30),
            || {
                got = self.ingress(ns, name);
                got.len() == n
            },
            || format!("controller log:\n{}", controller.log_tail()),
        );
        got
    }

    /// (node, service namespace/name) of every ServiceL2Status.
    pub fn l2_statuses(&self) -> Vec<(String, String)> {
        let v = self.get_json(&["servicel2statuses.metallb.io", "-n", NAMESPACE]);
        let mut out: Vec<(String, String)> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let s = &o["status"];
                (
                    s["node"].as_str().unwrap_or_default().to_string(),
                    format!(
                        "{}/{}",
                        s["serviceNamespace"].as_str().unwrap_or_default(),
                        s["serviceName"].as_str().unwrap_or_default()
                    ),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Events with `reason` (events.k8s.io/v1 and core/v1 alike) as (regarding name, note).
    pub fn events(&self, ns: &str, reason: &str) -> Vec<(String, String)> {
        let v = self.get_json(&["events", "-n", ns]);
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == reason)
            .map(|e| {
                (
                    e["involvedObject"]["name"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Cluster {
    /// etcd and the API server stop first, then their files go (also when a test fails);
    /// the namespaces go with the fields.
    fn drop(&mut self) {
        self.processes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The FerroLB processes' log level: debug, or `FERROLB_TEST_LOG_LEVEL` (a measurement
/// wants production's `info`).
fn log_level() -> String {
    std::env::var("FERROLB_TEST_LOG_LEVEL").unwrap_or_else(|_| "debug".into())
}

/// A FerroLB process (controller or speaker), killed on drop, with its log.
#[derive(Debug)]
pub struct Process {
    child: Option<KillOnDrop>,
    pub log: PathBuf,
    /// The namespace it runs in and its HTTP port.
    ns: String,
    port: u16,
}

impl Process {
    fn spawn(mut cmd: Command, log: PathBuf, ns: String, port: u16) -> Process {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd.stdout(Stdio::null()).stderr(file).spawn().expect("start a FerroLB binary");
        Process { child: Some(KillOnDrop(child)), log, ns, port }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").0.id()
    }

    /// Peak resident memory (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Sends a signal and waits for the exit.
    pub fn stop(&mut self, sig: &str) {
        if let Some(mut c) = self.child.take() {
            must(&["kill", &format!("-{sig}"), &c.0.id().to_string()]);
            let _ = c.0.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// GET on its HTTP port in its namespace: status code and body.
    pub fn http(&self, path: &str) -> (u16, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-s", "--max-time", "2", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn ready(&self) -> bool {
        self.http("/readyz").0 == 200
    }

    /// One sample of its metrics (0 when absent).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        crate::netns::sample(&self.http("/metrics").1, name, labels).unwrap_or(0.0)
    }
}
