//! Network namespaces for packet-level tests and benches: namespaces, veth links,
//! a running speaker, and the kernel's own ARP/NDP clients. Everything it creates is
//! removed on drop, also when a test fails. Traffic stays inside the namespaces and uses
//! documentation addresses only.
//!
//! Here: namespaces, links and the LANs built of them; [`speaker`]: the speaker process and
//! its clusters; [`probe`]: the kernel's clients, injected frames, ARP traces; [`starve`]:
//! CPU starvation; [`bgp`]: FRR beside a node, routers we did not write, a client behind.

mod bgp;
mod probe;
mod speaker;
mod starve;

pub use bgp::*;
pub use probe::*;
pub use speaker::*;
pub use starve::*;

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
