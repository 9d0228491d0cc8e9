//! Network namespaces for packet-level tests and benches: namespaces, veth links,
//! a running speaker, and the kernel's own ARP/NDP clients. Everything it creates is
//! removed on drop, also when a test fails. Traffic stays inside the namespaces and uses
//! documentation addresses only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SERVER_MAC: &str = "02:fe:00:00:00:01";
pub const CLIENT_MAC: &str = "02:c1:00:00:00:02";
pub const SERVER_V4: &str = "198.51.100.2";
pub const CLIENT_V4: &str = "198.51.100.1";
pub const SERVER_V6: &str = "2001:db8:100::2";
pub const CLIENT_V6: &str = "2001:db8:100::1";

/// Packet-level tests need root for namespaces and raw sockets. They fail loudly rather
/// than skip, so CI (which runs as root) can never pass them silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "packet-level tests need root (network namespaces, raw sockets): run them as root, as CI does");
}

/// A name unique to this process and call, short enough for an interface (15 bytes).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn must(args: &[&str]) -> String {
    let out = run(Command::new(args[0]).args(&args[1..]));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted (with every process still in it) on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        require_root();
        let ns = Netns { name: unique(prefix) };
        must(&["ip", "netns", "add", &ns.name]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        must(&all)
    }

    /// A command run inside the namespace; its output whatever the exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("ip").args(["netns", "exec", &self.name]).args(args))
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        let out = self.exec(&["sysctl", "-qw", &format!("{key}={value}")]);
        assert!(out.status.success(), "sysctl {key}: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn ifindex(&self, ifname: &str) -> i32 {
        let json = self.ip(&["-j", "link", "show", ifname]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
        v[0]["ifindex"].as_i64().expect("ifindex") as i32
    }

    /// The kernel's neighbor entry for `ip`: link-layer address and NUD state.
    pub fn neighbor(&self, ip: &str, dev: &str) -> Option<(String, String)> {
        let json = self.ip(&["-j", "neigh", "show", "to", ip, "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(if json.trim().is_empty() { "[]" } else { &json }).ok()?;
        let e = v.as_array()?.first()?;
        let state = e["state"].as_array()?.first()?.as_str()?.to_string();
        Some((e["lladdr"].as_str().unwrap_or_default().to_string(), state))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Creates a veth pair between two namespaces; returns the two interface names.
pub fn veth(a: &Netns, b: &Netns) -> (String, String) {
    let (ia, ib) = (unique("va"), unique("vb"));
    must(&["ip", "link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns", &b.name]);
    (ia, ib)
}

/// A server namespace that will run the speaker, and a client on one LAN segment, with
/// the kernel's neighbor timers shortened so that NUD can be watched in a test.
#[derive(Debug)]
pub struct Lan {
    pub client: Netns,
    pub server: Netns,
    pub client_if: String,
    pub server_if: String,
}

impl Lan {
    // Not Default: it creates namespaces and links, which a default value should not.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Lan {
        let client = Netns::new("fc");
        let server = Netns::new("fs");
        let (server_if, client_if) = veth(&server, &client);
        server.ip(&["link", "set", &server_if, "address", SERVER_MAC, "up"]);
        client.ip(&["link", "set", &client_if, "address", CLIENT_MAC, "up"]);
        server.ip(&["addr", "add", &format!("{SERVER_V4}/24"), "dev", &server_if]);
        server.ip(&["addr", "add", &format!("{SERVER_V6}/64"), "dev", &server_if, "nodad"]);
        client.ip(&["addr", "add", &format!("{CLIENT_V4}/24"), "dev", &client_if]);
        client.ip(&["addr", "add", &format!("{CLIENT_V6}/64"), "dev", &client_if, "nodad"]);
        let lan = Lan { client, server, client_if, server_if };
        // Like kube-proxy in IPVS mode with strictARP: the node accepts traffic for the
        // VIPs (held on lo here, as LVS-DR does; kube-proxy uses a dummy device), and its
        // kernel answers ARP only for addresses on the receiving interface, so the
        // speaker is the only one answering.
        lan.server.sysctl("net.ipv4.conf.all.arp_ignore", "1");
        lan.server.sysctl("net.ipv4.conf.all.arp_announce", "2");
        lan
    }

    /// Makes the server's kernel accept packets for `ip` (as kube-proxy would) without
    /// answering ARP/NDP for it.
    pub fn accept_locally(&self, ip: &str) {
        let prefix = if ip.contains(':') { "128" } else { "32" };
        self.server.ip(&["addr", "add", &format!("{ip}/{prefix}"), "dev", "lo", "nodad"]);
    }

    /// `arping` from the client: the MAC that answered, if any.
    pub fn arping(&self, ip: &str, count: u32) -> Option<String> {
        arping_all(&self.client, &self.client_if, ip, count).into_iter().next()
    }

    /// `ndisc6` from the client: the target link-layer address advertised, if any.
    pub fn ndisc6(&self, ip: &str) -> Option<String> {
        ndisc6(&self.client, &self.client_if, ip)
    }

    pub fn ping(&self, ip: &str) -> bool {
        ping(&self.client, ip)
    }
}

/// Every MAC that answers `count` ARP requests for `ip` from `ns` (the kernel's `arping`).
pub fn arping_all(ns: &Netns, ifname: &str, ip: &str, count: u32) -> BTreeSet<String> {
    let out = ns.exec(&["arping", "-c", &count.to_string(), "-w", "2", "-I", ifname, ip]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.split("bytes from ").nth(1)?.split_whitespace().next().map(str::to_lowercase))
        .collect()
}

/// The target link-layer address `ndisc6` gets for `ip` from `ns`, if any.
pub fn ndisc6(ns: &Netns, ifname: &str, ip: &str) -> Option<String> {
    let out = ns.exec(&["ndisc6", "-1", "-r", "2", "-w", "500", ip, ifname]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.split("Target link-layer address: ").nth(1).map(|m| m.trim().to_lowercase()))
}

/// One `ping` (or `ping -6`) from `ns`.
pub fn ping(ns: &Netns, ip: &str) -> bool {
    let v6 = if ip.contains(':') { "-6" } else { "-4" };
    ns.exec(&["ping", v6, "-c", "1", "-W", "2", ip]).status.success()
}

/// A speaker process in a namespace, killed on drop, with its config file removed.
#[derive(Debug)]
pub struct Speaker {
    child: Child,
    ns: String,
    pub config: PathBuf,
    pub log: PathBuf,
}

pub const METRICS: &str = "127.0.0.1:7472";

/// The speaker under test: this build's, or `FERROLB_SPEAKER_BIN` (a bench comparing an
/// older build in the same run).
pub fn speaker_binary() -> String {
    std::env::var("FERROLB_SPEAKER_BIN").unwrap_or_else(|_| crate::binary("ferrolb-speaker").display().to_string())
}

impl Speaker {
    pub fn start(ns: &Netns, config: &str, extra: &[&str]) -> Speaker {
        Speaker::start_under(ns, &[], config, extra)
    }

    /// Starts the speaker under `wrapper` (a command that runs the rest of its arguments,
    /// such as `faketime`).
    pub fn start_under(ns: &Netns, wrapper: &[&str], config: &str, extra: &[&str]) -> Speaker {
        let id = unique("speaker");
        let path = std::env::temp_dir().join(format!("ferrolb-{id}.yaml"));
        let log = std::env::temp_dir().join(format!("ferrolb-{id}.log"));
        std::fs::write(&path, config).expect("write config");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(wrapper)
            .args([&speaker_binary(), "standalone"])
            .args(["--config", path.to_str().unwrap(), "--metrics-bind", METRICS])
            .args(if extra.contains(&"--node-name") { &[][..] } else { &["--node-name", "node-a"][..] })
            .args(["--gratuitous-interval-ms", "100", "--poll-ms", "200"])
            .args(if extra.contains(&"--log-level") { &[][..] } else { &["--log-level", "debug"][..] })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start speaker");
        let s = Speaker { child, ns: ns.name.clone(), config: path, log };
        s.wait_until("ready", || s.http("/readyz").is_some_and(|b| b == "ready"));
        s
    }

    /// The body of a GET to the speaker's HTTP endpoint, if it answered 200.
    pub fn http(&self, path: &str) -> Option<String> {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sf", "--max-time", "2"])
            .arg(format!("http://{METRICS}{path}")));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The value of one sample, by metric name and a label-set substring (`""` for none).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.http("/metrics").expect("metrics endpoint");
        sample(&text, name, labels).unwrap_or(0.0)
    }

    /// Sends a signal (`"KILL"`, `"TERM"`, …) to the speaker process.
    pub fn signal(&self, sig: &str) {
        must(&["kill", &format!("-{sig}"), &self.child.id().to_string()]);
    }

    /// Waits for the process to exit (after a signal).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        std::fs::write(&self.config, config).expect("write config");
        must(&["kill", "-HUP", &self.child.id().to_string()]);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `cond` for up to 10 s; fails the test with the speaker's log otherwise.
    pub fn wait_until(&self, what: &str, cond: impl FnMut() -> bool) {
        if !crate::wait::poll_every(Duration::from_secs(10), Duration::from_millis(50), cond) {
            panic!("timed out waiting for {what}; speaker log:\n{}", self.log_text());
        }
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds a sample in the text exposition format.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && rest.contains(labels)).then(|| value.parse().ok())?
    })
}

/// A config with one pool covering the documentation ranges used here, one
/// L2Advertisement (optionally limited to `interfaces`) and one Service per address.
pub fn config(ips: &[&str], interfaces: &[&str]) -> String {
    let mut s = String::from(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec:\n  addresses: [198.51.100.10-198.51.100.250, '2001:db8:100::10-2001:db8:100::ffff']\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: lan, namespace: metallb-system}\nspec:\n  ipAddressPools: [lan]\n",
    );
    if !interfaces.is_empty() {
        s.push_str(&format!("  interfaces: [{}]\n", interfaces.join(", ")));
    }
    for (i, ip) in ips.iter().enumerate() {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc{i}\n  namespace: default\n  annotations: {{metallb.io/loadBalancerIPs: '{ip}'}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n"
        ));
    }
    s
}

/// Sends raw frames out of `ifname` in namespace `ns`, from a thread that joins the
/// namespace (the rest of the test process stays where it is), in batches of 32 with
/// `pause` between batches.
pub fn inject(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>, pause: Duration) {
    let ifindex = ns.ifindex(ifname);
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        enter(&path);
        // Protocol 0: this socket only sends, it receives nothing.
        let sock = ferrolb_speaker::sys::PacketSocket::open(ifindex, 0, &ferrolb_speaker::bpf::arp_filter(&[]))
            .expect("packet socket");
        for chunk in frames.chunks(32) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let mut sent = 0;
            while sent < refs.len() {
                match sock.send_batch(&refs[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
            std::thread::sleep(pause);
        }
    })
    .join()
    .expect("injector thread");
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &str) {
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: the descriptor is valid for the call; CLONE_NEWNET moves only this thread.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

pub fn is_v6(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6())
}

/// A LAN of `n` speaker nodes and a client, all on one bridge (in a switch namespace), so
/// that a node's link can be cut at its switch port like a pulled cable.
#[derive(Debug)]
pub struct ClusterLan {
    pub client: Netns,
    pub client_if: String,
    pub nodes: Vec<Netns>,
    pub node_ifs: Vec<String>,
    /// The switch side of each node's link.
    pub ports: Vec<String>,
    /// Dropped last, after the hosts.
    pub switch: Netns,
    pub key_file: PathBuf,
}

pub fn node_mac(i: usize) -> String {
    format!("02:fe:00:00:00:{:02x}", i + 1)
}

pub fn node_v4(i: usize) -> String {
    format!("198.51.100.{}", 2 + i)
}

impl ClusterLan {
    pub fn new(n: usize) -> ClusterLan {
        let switch = Netns::new("fw");
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "br0", "up"]);
        let attach = |host: &Netns| {
            // No duplicate address detection: link-local addresses (the source of the
            // nodes' own solicitations) are usable at once, not a second later.
            host.sysctl("net.ipv6.conf.default.accept_dad", "0");
            host.sysctl("net.ipv6.conf.all.accept_dad", "0");
            let (port, ifname) = veth(&switch, host);
            switch.ip(&["link", "set", &port, "master", "br0", "up"]);
            (port, ifname)
        };
        let client = Netns::new("fc");
        let (client_port, client_if) = attach(&client);
        client.ip(&["link", "set", &client_if, "address", CLIENT_MAC, "up"]);
        client.ip(&["addr", "add", &format!("{CLIENT_V4}/24"), "dev", &client_if]);
        client.ip(&["addr", "add", &format!("{CLIENT_V6}/64"), "dev", &client_if, "nodad"]);
        let mut nodes = Vec::new();
        let mut node_ifs = Vec::new();
        let mut ports = vec![client_port];
        for i in 0..n {
            let ns = Netns::new("fn");
            let (port, ifname) = attach(&ns);
            ns.ip(&["link", "set", &ifname, "address", &node_mac(i), "up"]);
            ns.ip(&["addr", "add", &format!("{}/24", node_v4(i)), "dev", &ifname]);
            ns.ip(&["addr", "add", &format!("2001:db8:100::{}/64", 2 + i), "dev", &ifname, "nodad"]);
            ns.sysctl("net.ipv4.conf.all.arp_ignore", "1");
            ns.sysctl("net.ipv4.conf.all.arp_announce", "2");
            nodes.push(ns);
            node_ifs.push(ifname);
            ports.push(port);
        }
        ports.remove(0);
        let key_file = std::env::temp_dir().join(format!("ferrolb-{}.key", unique("key")));
        std::fs::write(&key_file, "a cluster secret for the tests\n").expect("key file");
        ClusterLan { client, client_if, nodes, node_ifs, ports, switch, key_file }
    }

    /// Every node accepts traffic for `ip` without its kernel answering ARP/NDP for it.
    pub fn accept_locally(&self, ip: &str) {
        let prefix = if ip.contains(':') { "128" } else { "32" };
        for ns in &self.nodes {
            ns.ip(&["addr", "add", &format!("{ip}/{prefix}"), "dev", "lo", "nodad"]);
        }
    }

    /// Starts the speaker of node `i` in the cluster (seeded with node 0).
    pub fn speaker(&self, i: usize, config: &str, extra: &[&str]) -> Speaker {
        self.speaker_under(i, &[], config, extra)
    }

    /// [`ClusterLan::speaker`] under `wrapper` (see [`Speaker::start_under`]).
    pub fn speaker_under(&self, i: usize, wrapper: &[&str], config: &str, extra: &[&str]) -> Speaker {
        let bind = format!("{}:7946", node_v4(i));
        let seed = format!("{}:7946", node_v4(0));
        let name = format!("node-{i}");
        let key = self.key_file.to_str().unwrap().to_string();
        let mut args = vec!["--node-name", &name, "--cluster-bind", &bind, "--cluster-join", &seed];
        if !extra.contains(&"--cluster-key-file") {
            args.extend(["--cluster-key-file", &key]);
        }
        args.extend_from_slice(extra);
        Speaker::start_under(&self.nodes[i], wrapper, config, &args)
    }

    /// Cuts (or restores) node `i`'s link at the switch.
    pub fn link(&self, i: usize, up: bool) {
        self.switch.ip(&["link", "set", &self.ports[i], if up { "up" } else { "down" }]);
    }

    pub fn arping(&self, ip: &str, count: u32) -> Option<String> {
        arping_all(&self.client, &self.client_if, ip, count).into_iter().next()
    }

    /// Every MAC that answers `count` ARP requests for `ip`.
    pub fn arping_all(&self, ip: &str, count: u32) -> BTreeSet<String> {
        arping_all(&self.client, &self.client_if, ip, count)
    }

    pub fn ndisc6(&self, ip: &str) -> Option<String> {
        ndisc6(&self.client, &self.client_if, ip)
    }

    pub fn ping(&self, ip: &str) -> bool {
        ping(&self.client, ip)
    }

    /// Drops `percent`% of each node's membership traffic, both ways, at random.
    pub fn gossip_loss(&self, percent: u32) {
        for i in 0..self.nodes.len() {
            self.gossip_loss_on(i, percent);
        }
    }

    /// Drops `percent`% of node `i`'s membership traffic, both ways (100: a partition of
    /// the gossip alone, the LAN still working).
    pub fn gossip_loss_on(&self, i: usize, percent: u32) {
        let m = if percent >= 100 { String::new() } else { format!("numgen random mod 100 < {percent} ") };
        let rule = format!("udp dport 7946 {m}drop");
        self.gossip_filter(i, &rule, &rule);
    }

    /// Installs nftables rules on node `i`: `input` and `output` are rule bodies for
    /// its input and output hooks (`""` for none), e.g. one-way loss or one broken link.
    pub fn gossip_filter(&self, i: usize, input: &str, output: &str) {
        let rules = format!(
            "table inet ferrolb_loss {{\n chain input {{ type filter hook input priority 0; {input}; }}\n chain output {{ type filter hook output priority 0; {output}; }}\n}}\n"
        );
        let path = std::env::temp_dir().join(format!("ferrolb-{}.nft", unique("nft")));
        std::fs::write(&path, rules).expect("nft file");
        let out = self.nodes[i].exec(&["nft", "-f", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Removes the loss rules of node `i`.
    pub fn gossip_heal(&self, i: usize) {
        let out = self.nodes[i].exec(&["nft", "delete", "table", "inet", "ferrolb_loss"]);
        assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A file in the temporary directory, removed when dropped (even when a test fails).
#[derive(Debug)]
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(prefix: &str, contents: &str) -> TempFile {
        let f = TempFile(std::env::temp_dir().join(format!("ferrolb-{}", unique(prefix))));
        f.write(contents);
        f
    }

    pub fn write(&self, contents: &str) {
        std::fs::write(&self.0, contents).expect("write a temporary file");
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Drop for ClusterLan {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key_file);
    }
}

/// What a client saw while probing one IPv4 address with ARP requests at a fixed rate:
/// the replies and the gratuitous ARPs, each with its time and MAC.
#[derive(Debug, Default)]
pub struct ArpTrace {
    pub start: Option<Instant>,
    pub replies: Vec<(Instant, String)>,
    pub gratuitous: Vec<(Instant, String)>,
}

impl ArpTrace {
    /// The longest time without a reply between `from` and the last reply.
    pub fn longest_silence(&self, from: Instant) -> Duration {
        let mut last = from;
        let mut worst = Duration::ZERO;
        for (t, _) in self.replies.iter().filter(|(t, _)| *t >= from) {
            worst = worst.max(t.duration_since(last));
            last = *t;
        }
        worst
    }

    /// The first reply (or gratuitous ARP) after `from` from a MAC other than `old`.
    pub fn first_from_other(list: &[(Instant, String)], from: Instant, old: &str) -> Option<(Instant, String)> {
        list.iter().find(|(t, m)| *t >= from && m != old).cloned()
    }
}

/// Probes `vip` from the client every `every` until `stop` is set; returns the trace.
pub fn arp_probe(
    lan: &ClusterLan,
    vip: &str,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<ArpTrace> {
    arp_probe_from(&lan.client, &lan.client_if, CLIENT_MAC, CLIENT_V4, vip, every, stop)
}

/// [`arp_probe`] from any client: its namespace, interface, MAC and IPv4 address.
pub fn arp_probe_from(
    client: &Netns,
    client_if: &str,
    client_mac: &str,
    client_ip: &str,
    vip: &str,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<ArpTrace> {
    use ferrolb_wire::{ArpOp, ArpPacket, ArpRepr, EtherType, EthernetFrame, MacAddr};
    let ifindex = client.ifindex(client_if);
    let path = format!("/run/netns/{}", client.name);
    let vip: std::net::Ipv4Addr = vip.parse().expect("IPv4 VIP");
    let client: MacAddr = client_mac.parse().expect("client MAC");
    let client_ip: std::net::Ipv4Addr = client_ip.parse().expect("client IPv4");
    std::thread::spawn(move || {
        enter(&path);
        let mut sock = ferrolb_speaker::sys::PacketSocket::open_with_ring(
            ifindex,
            EtherType::ARP,
            &ferrolb_speaker::bpf::accept_all(),
        )
        .expect("probe socket");
        let mut req = vec![0u8; 42];
        ArpRepr {
            op: ArpOp::Request,
            sender_mac: client,
            sender_ip: client_ip,
            target_mac: MacAddr::ZERO,
            target_ip: vip,
        }
        .emit_frame(&mut req, MacAddr::BROADCAST, client);
        let mut trace = ArpTrace { start: Some(Instant::now()), ..Default::default() };
        let mut next = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let now = Instant::now();
            if now >= next {
                let _ = sock.send_batch(&[&req]);
                next += every;
            }
            sock.for_each_ring_frame(usize::MAX, |frame, _| {
                let Ok(eth) = EthernetFrame::parse(frame) else { return };
                let Ok(arp) = ArpPacket::parse(eth.payload()) else { return };
                let at = Instant::now();
                let mac = arp.sender_mac().to_string();
                if arp.sender_ip() == vip && arp.target_ip() == vip {
                    trace.gratuitous.push((at, mac));
                } else if arp.op() == ArpOp::Reply && arp.sender_ip() == vip && arp.target_ip() == client_ip {
                    trace.replies.push((at, mac));
                }
            });
            std::thread::sleep(Duration::from_micros(200));
        }
        trace
    })
}

/// A CPU cgroup made for a test, weighted like a Kubernetes pod's CPU request, removed
/// (its processes moved back to the root group) when dropped. cgroup v1's `cpu`
/// controller, or v2's `cpu.weight` where v1 is absent.
#[derive(Debug)]
pub struct CpuGroup {
    dir: PathBuf,
    root: PathBuf,
}

impl CpuGroup {
    /// A group with the CPU weight the kubelet gives a pod requesting `millicpu`:
    /// shares = milli × 1024 / 1000 (at least 2), or v2's weight from those shares.
    pub fn new(prefix: &str, millicpu: u64) -> CpuGroup {
        let shares = (millicpu * 1024 / 1000).max(2);
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        let (root, v2) = if v1.join("cpu.shares").exists() {
            (v1, false)
        } else {
            let v2 = PathBuf::from("/sys/fs/cgroup");
            assert!(
                std::fs::read_to_string(v2.join("cgroup.controllers")).is_ok_and(|c| c.contains("cpu")),
                "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu and no v2 cpu controller at /sys/fs/cgroup"
            );
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            (v2, true)
        };
        let dir = root.join(unique(prefix));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let group = CpuGroup { dir, root };
        if v2 {
            // The kubelet's conversion (kubernetes/kubernetes pkg/kubelet/cm/cgroup_manager_linux.go).
            let weight = 1 + ((shares - 2) * 9999) / 262142;
            group.write("cpu.weight", &weight.to_string());
        } else {
            group.write("cpu.shares", &shares.to_string());
        }
        group
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    /// Moves process `pid`, every thread of it, into the group.
    pub fn add(&self, pid: u32) {
        self.write("cgroup.procs", &pid.to_string());
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `n` busy loops (`sh -c 'while :; do :; done'`), killed when dropped.
pub fn busy_loops(n: usize) -> Vec<KillOnDrop> {
    (0..n)
        .map(|_| {
            KillOnDrop(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("busy loop"),
            )
        })
        .collect()
}

/// User + system CPU seconds of a process so far.
pub fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let after_comm = stat.rsplit_once(')').expect("stat format").1;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

/// One speaker's CPU saturated, as on a busy node: pinned to CPU 0 in a cgroup weighted
/// like a pod requesting `request` millicpu, beside four busy loops in a cgroup weighted
/// like a pod requesting 2 CPUs, also pinned there. `others` (the other nodes' speakers)
/// are pinned to the remaining CPUs, as if on machines of their own. Undone when dropped.
#[derive(Debug)]
pub struct Starvation {
    _hogs: Vec<KillOnDrop>,
    _groups: [CpuGroup; 2],
}

impl Starvation {
    pub fn start(starved: u32, others: &[u32], request: u64) -> Starvation {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(cpus >= 2, "starving one speaker needs two CPUs: one starved, one for the other nodes");
        let rest = format!("1-{}", cpus - 1);
        must(&["taskset", "-a", "-cp", "0", &starved.to_string()]);
        for pid in others {
            must(&["taskset", "-a", "-cp", &rest, &pid.to_string()]);
        }
        let speaker = CpuGroup::new("ferrolb-speaker", request);
        speaker.add(starved);
        let hog = CpuGroup::new("ferrolb-hog", 2000);
        let hogs = busy_loops(4);
        for h in &hogs {
            must(&["taskset", "-cp", "0", &h.0.id().to_string()]);
            hog.add(h.0.id());
        }
        Starvation { _hogs: hogs, _groups: [speaker, hog] }
    }
}

/// The largest bucket bound of `ferrolb_cluster_heartbeat_interval_seconds` that saw an
/// observation (the longest interval between heartbeats, to the histogram's precision).
pub fn longest_heartbeat_interval(metrics: &str) -> Option<f64> {
    let mut last = (None, 0.0);
    for l in metrics.lines().filter(|l| l.starts_with("ferrolb_cluster_heartbeat_interval_seconds_bucket{le=")) {
        let le = l.split('"').nth(1)?;
        let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
        if count > last.1 {
            last = (Some(le.parse().unwrap_or(f64::INFINITY)), count);
        }
    }
    last.0
}

/// The configuration serving `ips`, which every node accepts locally.
pub fn serve(lan: &ClusterLan, ips: &[String]) -> String {
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    for ip in &refs {
        lan.accept_locally(ip);
    }
    config(&refs, &[])
}

/// A speaker on every node of `lan` serving `ips`, all settled.
pub fn cluster(lan: &ClusterLan, ips: &[String], extra: &[&str]) -> Vec<Speaker> {
    let cfg = serve(lan, ips);
    let speakers: Vec<Speaker> = (0..lan.nodes.len()).map(|i| lan.speaker(i, &cfg, extra)).collect();
    for s in &speakers {
        s.wait_until("three settled members", || {
            s.metric("ferrolb_cluster_members", "state=\"settled\"") == lan.nodes.len() as f64
        });
    }
    speakers
}

/// Documentation addresses 198.51.100.10 and up, `n` of them.
pub fn vips(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("198.51.100.{}", 10 + i)).collect()
}

/// Which node (index) each VIP is announced by, from the speakers' metrics; fails if an
/// address is announced by two or by none.
/// One scrape per speaker, so that a call is quick next to the hold-down windows timed here.
pub fn owners(speakers: &[Option<&Speaker>], ips: &[String]) -> BTreeMap<String, usize> {
    let scrapes: Vec<Option<String>> =
        speakers.iter().map(|s| s.map(|s| s.http("/metrics").expect("metrics endpoint"))).collect();
    let mut out = BTreeMap::new();
    for ip in ips {
        let by: Vec<usize> = scrapes
            .iter()
            .enumerate()
            .filter_map(|(i, text)| {
                let text = text.as_deref()?;
                (sample(text, "metallb_speaker_announced", &format!("ip=\"{ip}\"")) == Some(1.0)).then_some(i)
            })
            .collect();
        assert_eq!(by.len(), 1, "{ip} is announced by nodes {by:?}");
        out.insert(ip.clone(), by[0]);
    }
    out
}
