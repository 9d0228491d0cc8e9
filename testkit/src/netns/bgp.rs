//! BGP in namespaces: FRR's daemons beside a node's speaker (the engine it drives), and
//! routers we did not write (BIRD 2, GoBGP) with a client behind them.

#[allow(unused_imports)]
use super::*;
use std::path::Path;

/// Where a client behind the router lives, and the router's side of that link.
pub const ROUTER_WAN_V4: &str = "203.0.113.1";
pub const CLIENT_WAN_V4: &str = "203.0.113.2";
pub const ROUTER_WAN_V6: &str = "2001:db8:203::1";
pub const CLIENT_WAN_V6: &str = "2001:db8:203::2";
/// The router's AS and the nodes' (eBGP, as in MetalLB's configsamples).
pub const ROUTER_ASN: u32 = 64512;
pub const NODE_ASN: u32 = 64513;

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ferrolb-{}", unique(prefix)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// FRR's zebra, bgpd and bfdd in a node's namespace, with their sockets, pid files and
/// logs in a directory of their own (not /etc/frr, not /var/run/frr): as the FRR
/// container beside the speaker, or a host's FRR in standalone mode.
#[derive(Debug)]
pub struct Frr {
    ns: String,
    pub dir: TempDir,
}

const FRR_DAEMONS: [&str; 3] = ["zebra", "bgpd", "bfdd"];

impl Frr {
    pub fn start(ns: &Netns) -> Frr {
        let dir = TempDir::new("frr");
        // FRR's daemons drop to the `frr` user: the directory must be theirs to write.
        must(&["chown", "frr:frr", dir.0.to_str().unwrap()]);
        let frr = Frr { ns: ns.name.clone(), dir };
        for d in FRR_DAEMONS {
            frr.start_daemon(d);
        }
        frr
    }

    fn start_daemon(&self, daemon: &str) {
        let bin = format!("/usr/lib/frr/{daemon}");
        assert!(Path::new(&bin).exists(), "{bin} is missing: install Debian's frr (CI's .ci/run does)");
        let (pid, log, zserv) = (
            self.dir.join(&format!("{daemon}.pid")),
            self.dir.join(&format!("{daemon}.log")),
            self.dir.join("zserv.api"),
        );
        let vty = self.dir.0.display().to_string();
        let mut args = vec![bin.as_str(), "-d", "-f", "/dev/null", "--vty_socket", &vty, "-i", &pid, "-z", &zserv];
        let log_arg = format!("file:{log}");
        args.extend(["-u", "frr", "-g", "frr", "--log", &log_arg]);
        let out = Command::new("ip").args(["netns", "exec", &self.ns]).args(&args).output().expect("start FRR");
        assert!(out.status.success(), "{daemon}: {}", String::from_utf8_lossy(&out.stderr));
        let sock = self.dir.0.join(format!("{daemon}.vty"));
        let start = Instant::now();
        while !sock.exists() {
            assert!(start.elapsed() < Duration::from_secs(10), "{daemon} did not open {}", sock.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The speaker's arguments to drive this FRR.
    pub fn speaker_args(&self) -> Vec<String> {
        vec![
            "--frr-config".into(),
            self.dir.join("frr.conf"),
            "--frr-vty-socket".into(),
            self.dir.0.display().to_string(),
            "--frr-poll-ms".into(),
            "500".into(),
        ]
    }

    /// `vtysh -c command` against these daemons.
    pub fn vtysh(&self, command: &str) -> String {
        let vty = self.dir.0.display().to_string();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "vtysh", "--vty_socket", &vty, "-c", command])
            .output()
            .expect("vtysh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills one daemon as a crash would (SIGKILL) and starts it again, with no
    /// configuration: the speaker must give it its own again.
    pub fn crash_and_restart(&self, daemon: &str) {
        self.kill(daemon);
        let _ = std::fs::remove_file(self.dir.0.join(format!("{daemon}.vty")));
        self.start_daemon(daemon);
    }

    /// Kills one daemon as a crash would (SIGKILL).
    pub fn kill(&self, daemon: &str) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.0.join(format!("{daemon}.pid"))) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
    }

    /// The daemons' logs, for a failure's message.
    pub fn logs(&self) -> String {
        FRR_DAEMONS
            .iter()
            .map(|d| {
                format!("--- {d}\n{}", std::fs::read_to_string(self.dir.0.join(format!("{d}.log"))).unwrap_or_default())
            })
            .collect()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        for d in FRR_DAEMONS {
            self.kill(d);
        }
    }
}

/// Which router implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    /// Debian's `bird2`: routes into the router's kernel table, ECMP merged.
    Bird,
    /// Debian's `gobgpd`: its own RIB (no kernel), read with the `gobgp` client.
    Gobgp,
}

/// A router peering with every node of a [`ClusterLan`] from the LAN's client namespace
/// (198.51.100.1, 2001:db8:100::1), with a client of its own behind it on another link.
#[derive(Debug)]
pub struct Router {
    pub kind: RouterKind,
    pub client: Netns,
    pub dir: TempDir,
    lan_ns: String,
    daemon: Option<Child>,
    bfd: bool,
    password: Option<String>,
    nodes: usize,
}

impl Router {
    /// Starts the router in `lan`'s client namespace, peering with its `nodes` (IPv4
    /// sessions carrying both families); `bfd` asks for BFD on every session.
    pub fn start(lan: &ClusterLan, kind: RouterKind, bfd: bool, password: Option<&str>) -> Router {
        let client = Netns::new("fwc");
        let (wan, client_if) = veth(&lan.client, &client);
        lan.client.ip(&["link", "set", &wan, "up"]);
        lan.client.ip(&["addr", "add", &format!("{ROUTER_WAN_V4}/24"), "dev", &wan]);
        lan.client.ip(&["addr", "add", &format!("{ROUTER_WAN_V6}/64"), "dev", &wan, "nodad"]);
        lan.client.sysctl("net.ipv4.ip_forward", "1");
        lan.client.sysctl("net.ipv6.conf.all.forwarding", "1");
        // ECMP spreads flows by their ports too, as a router's hashing does.
        lan.client.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        lan.client.sysctl("net.ipv6.fib_multipath_hash_policy", "1");
        client.ip(&["link", "set", &client_if, "up"]);
        client.ip(&["addr", "add", &format!("{CLIENT_WAN_V4}/24"), "dev", &client_if]);
        client.ip(&["addr", "add", &format!("{CLIENT_WAN_V6}/64"), "dev", &client_if, "nodad"]);
        client.ip(&["route", "add", "default", "via", ROUTER_WAN_V4]);
        client.ip(&["-6", "route", "add", "default", "via", ROUTER_WAN_V6]);
        // The nodes answer the client through the router.
        for ns in &lan.nodes {
            ns.ip(&["route", "add", "203.0.113.0/24", "via", CLIENT_V4]);
            ns.ip(&["-6", "route", "add", "2001:db8:203::/64", "via", CLIENT_V6]);
        }
        let mut router = Router {
            kind,
            client,
            dir: TempDir::new("router"),
            lan_ns: lan.client.name.clone(),
            daemon: None,
            bfd,
            password: password.map(str::to_string),
            nodes: lan.nodes.len(),
        };
        router.run();
        router
    }

    fn run(&mut self) {
        match self.kind {
            RouterKind::Bird => {
                assert!(
                    Path::new("/usr/sbin/bird").exists(),
                    "bird is missing: install Debian's bird2 (CI's .ci/run does)"
                );
                let conf = self.dir.join("bird.conf");
                std::fs::write(&conf, self.bird_config()).expect("bird.conf");
                let child = Command::new("ip")
                    .args(["netns", "exec", &self.lan_ns, "bird", "-f", "-c", &conf, "-s", &self.dir.join("bird.ctl")])
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(self.dir.join("bird.out")).expect("log"))
                    .spawn()
                    .expect("start bird");
                self.daemon = Some(child);
            }
            RouterKind::Gobgp => {
                assert!(
                    Path::new("/usr/bin/gobgpd").exists(),
                    "gobgpd is missing: install Debian's gobgpd (CI's .ci/run does)"
                );
                let conf = self.dir.join("gobgpd.toml");
                std::fs::write(&conf, self.gobgp_config()).expect("gobgpd.toml");
                let child = Command::new("ip")
                    .args(["netns", "exec", &self.lan_ns, "gobgpd", "-t", "toml", "-f", &conf])
                    .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"])
                    .stdout(std::fs::File::create(self.dir.join("gobgpd.log")).expect("log"))
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start gobgpd");
                self.daemon = Some(child);
            }
        }
    }

    fn bird_config(&self) -> String {
        let mut c = format!(
            "router id {CLIENT_V4};\nlog \"{}\" all;\nprotocol device {{}}\nprotocol direct {{ ipv4; ipv6; }}\n",
            self.dir.join("bird.log")
        );
        // Every node's path kept: the kernel gets one route with a next hop per node.
        c += "protocol kernel { ipv4 { export where source = RTS_BGP; }; merge paths on limit 16; }\n";
        c += "protocol kernel { ipv6 { export where source = RTS_BGP; }; merge paths on limit 16; }\n";
        if self.bfd {
            c += "protocol bfd { interface \"*\" { interval 300 ms; multiplier 3; }; }\n";
        }
        for i in 0..self.nodes {
            c += &format!(
                "protocol bgp node{i} {{\n  local {CLIENT_V4} as {ROUTER_ASN};\n  neighbor {} as {NODE_ASN};\n  hold time 3;\n  keepalive time 1;\n  connect retry time 1;\n  error wait time 1, 2;\n{}{}  ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}\n",
                node_v4(i),
                if self.bfd { "  bfd on;\n" } else { "" },
                self.password.as_ref().map(|p| format!("  password \"{p}\";\n")).unwrap_or_default(),
            );
            // And an IPv6 session with every node, for BGPPeers with an IPv6 address (idle
            // while the nodes have none).
            c += &format!(
                "protocol bgp node{i}v6 {{\n  local {CLIENT_V6} as {ROUTER_ASN};\n  neighbor 2001:db8:100::{} as {NODE_ASN};\n  hold time 3;\n  keepalive time 1;\n  connect retry time 1;\n  error wait time 1, 2;\n  ipv6 {{ import all; export none; }};\n}}\n",
                2 + i
            );
        }
        c
    }

    fn gobgp_config(&self) -> String {
        let mut c = format!(
            "[global.config]\n  as = {ROUTER_ASN}\n  router-id = \"{CLIENT_V4}\"\n  local-address-list = [\"{CLIENT_V4}\"]\n"
        );
        for i in 0..self.nodes {
            c += &format!(
                "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {NODE_ASN}\n{}  [neighbors.timers.config]\n    hold-time = 3\n    keepalive-interval = 1\n    connect-retry = 1\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n",
                node_v4(i),
                self.password.as_ref().map(|p| format!("    auth-password = \"{p}\"\n")).unwrap_or_default(),
            );
        }
        c
    }

    /// The next hops the router holds for `prefix` (`203.0.113.5/32`): from the kernel's
    /// table for BIRD, from GoBGP's RIB (every path, best or not) for GoBGP. Sorted.
    pub fn next_hops(&self, prefix: &str) -> Vec<String> {
        let v6 = prefix.contains(':');
        match self.kind {
            RouterKind::Bird => {
                let out = Command::new("ip")
                    .args(["-n", &self.lan_ns, "-j", if v6 { "-6" } else { "-4" }, "route", "show", "exact", prefix])
                    .output()
                    .expect("ip route");
                let routes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let mut hops: Vec<String> = Vec::new();
                for r in routes.as_array().into_iter().flatten() {
                    if let Some(g) = r["gateway"].as_str() {
                        hops.push(g.to_string());
                    }
                    for h in r["nexthops"].as_array().into_iter().flatten() {
                        if let Some(g) = h["gateway"].as_str() {
                            hops.push(g.to_string());
                        }
                    }
                }
                hops.sort();
                hops
            }
            RouterKind::Gobgp => {
                let family = if v6 { "ipv6" } else { "ipv4" };
                let out = Command::new("ip")
                    .args(["netns", "exec", &self.lan_ns, "gobgp", "-u", "127.0.0.1", "-p", "50051"])
                    .args(["global", "rib", "-a", family, prefix, "-j"])
                    .output()
                    .expect("gobgp");
                let rib: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let mut hops: Vec<String> = Vec::new();
                for paths in rib.as_object().into_iter().flat_map(|m| m.values()) {
                    for p in paths.as_array().into_iter().flatten() {
                        // NEXT_HOP (IPv4) or MP_REACH_NLRI's next hop (IPv6).
                        if let Some(n) = p["attrs"].as_array().into_iter().flatten().find_map(|a| a["nexthop"].as_str())
                        {
                            hops.push(n.to_string());
                        }
                    }
                }
                hops.sort();
                hops.dedup();
                hops
            }
        }
    }

    /// BIRD's routes in the router's kernel table (one family): destination -> how many next
    /// hops. One `ip` call, for benches counting many routes.
    pub fn kernel_routes(&self, v6: bool) -> BTreeMap<String, usize> {
        let out = Command::new("ip")
            .args(["-n", &self.lan_ns, "-j", if v6 { "-6" } else { "-4" }, "route", "show", "proto", "bird"])
            .output()
            .expect("ip route");
        let routes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        routes
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let hops = r["nexthops"].as_array().map_or(usize::from(r["gateway"].is_string()), Vec::len);
                Some((r["dst"].as_str()?.to_string(), hops))
            })
            .collect()
    }

    /// The attributes the router shows for `prefix` (communities, local preference), as
    /// its own client prints them.
    pub fn show_route(&self, prefix: &str) -> String {
        let out = match self.kind {
            RouterKind::Bird => Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.lan_ns,
                    "birdc",
                    "-s",
                    &self.dir.join("bird.ctl"),
                    "show",
                    "route",
                    "for",
                    prefix,
                    "all",
                ])
                .output()
                .and_then(|mut routes| {
                    let protocols = Command::new("birdc")
                        .args(["-s", &self.dir.join("bird.ctl"), "show", "protocols", "all", "node0"])
                        .output()?;
                    routes.stdout.extend(protocols.stdout);
                    Ok(routes)
                }),
            RouterKind::Gobgp => Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.lan_ns,
                    "gobgp",
                    "-u",
                    "127.0.0.1",
                    "-p",
                    "50051",
                    "global",
                    "rib",
                    prefix,
                ])
                .output(),
        }
        .expect("router client");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The router's log, for a failure's message.
    pub fn log(&self) -> String {
        ["bird.log", "bird.out", "gobgpd.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.0.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `curl` from the client behind the router: the body, if the fetch worked.
    pub fn fetch(&self, url: &str) -> Option<String> {
        let out = self.client.exec(&["curl", "-sf", "--max-time", "2", "-g", url]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(c) = &mut self.daemon {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A web server answering `body` on port 80 of every address of a namespace (python3's
/// http.server), stopped on drop.
#[derive(Debug)]
pub struct WebServer {
    _child: KillOnDrop,
    _root: TempDir,
}

impl WebServer {
    pub fn start(ns: &Netns, body: &str) -> WebServer {
        let root = TempDir::new("www");
        std::fs::write(root.0.join("index.html"), body).expect("index.html");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-m", "http.server", "80", "--bind", "::"])
            .arg("--directory")
            .arg(&root.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server");
        WebServer { _child: KillOnDrop(child), _root: root }
    }
}
