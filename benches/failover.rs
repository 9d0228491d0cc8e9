//! Failover bench (root): three nodes and a client on one bridge, one VIP probed by the
//! client with an ARP request every 10 ms. The VIP's owner is crashed (SIGKILL), cut off
//! (its switch port down) or stopped (SIGTERM), 20 times each, and from the client's side
//! we time the first gratuitous ARP from the new MAC and the first answer from it. The
//! same run does the same to keepalived (VRRPv3, 100 ms adverts) on the same topology.
//!
//!     sudo cargo bench -p ferrolb-speaker --bench failover [-- ferrolb|keepalived] [-- reps=N]
//!
//! `-- starve [secs=N]` instead saturates one speaker's CPU (see `netns::Starvation`) for N
//! seconds (default 60) at each of several CPU requests, and reports its longest interval
//! between heartbeats and the ownership changes it caused: what the DaemonSet's CPU request
//! is sized from.
//!
//! Traffic stays in namespaces made here, on documentation addresses.

use ferrolb_testkit::netns;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netns::{ArpTrace, ClusterLan, Speaker, arp_probe, config, node_mac};

const VIP: &str = "198.51.100.10";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Crash,
    LinkDown,
    Graceful,
}

trait Cluster {
    fn name(&self) -> &'static str;
    /// The node answering for the VIP, once exactly one does.
    fn owner(&mut self) -> usize;
    fn fault(&mut self, node: usize, fault: Fault);
    fn restore(&mut self, node: usize, fault: Fault);
}

struct Ferrolb<'a> {
    lan: &'a ClusterLan,
    cfg: String,
    speakers: Vec<Option<Speaker>>,
}

const FERROLB_ARGS: [&str; 4] = ["--cluster-hold-down-ms", "500", "--log-level", "warn"];

impl Ferrolb<'_> {
    fn new(lan: &ClusterLan) -> Ferrolb<'_> {
        lan.accept_locally(VIP);
        let cfg = config(&[VIP], &[]);
        let speakers = (0..3).map(|i| Some(lan.speaker(i, &cfg, &FERROLB_ARGS))).collect();
        Ferrolb { lan, cfg, speakers }
    }
}

impl Cluster for Ferrolb<'_> {
    fn name(&self) -> &'static str {
        "FerroLB"
    }

    fn owner(&mut self) -> usize {
        let start = Instant::now();
        loop {
            let owners: Vec<usize> = (0..3)
                .filter(|i| {
                    self.speakers[*i].as_ref().is_some_and(|s| {
                        s.metric("ferrolb_cluster_members", "state=\"settled\"") == 3.0
                            && s.metric("metallb_speaker_announced", &format!("ip=\"{VIP}\"")) == 1.0
                    })
                })
                .collect();
            if owners.len() == 1 {
                return owners[0];
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no single settled owner");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fault(&mut self, node: usize, fault: Fault) {
        match fault {
            Fault::Crash => self.speakers[node].as_ref().unwrap().signal("KILL"),
            Fault::Graceful => self.speakers[node].as_ref().unwrap().signal("TERM"),
            Fault::LinkDown => self.lan.link(node, false),
        }
    }

    fn restore(&mut self, node: usize, fault: Fault) {
        match fault {
            Fault::LinkDown => self.lan.link(node, true),
            Fault::Crash | Fault::Graceful => {
                self.speakers[node] = None;
                self.speakers[node] = Some(self.lan.speaker(node, &self.cfg, &FERROLB_ARGS));
            }
        }
        // Past the restored node's hold-down, so the next round starts settled.
        std::thread::sleep(Duration::from_millis(800));
    }
}

struct Keepalived<'a> {
    lan: &'a ClusterLan,
    procs: Vec<Option<Child>>,
    dir: std::path::PathBuf,
}

impl Keepalived<'_> {
    fn new(lan: &ClusterLan) -> Keepalived<'_> {
        let dir = std::env::temp_dir().join(netns::unique("keepalived"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut k = Keepalived { lan, procs: (0..3).map(|_| None).collect(), dir };
        for i in 0..3 {
            k.start(i);
        }
        k
    }

    fn start(&mut self, i: usize) {
        let conf = self.dir.join(format!("node{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  router_id node{i}\n  vrrp_version 3\n}}\nvrrp_instance VI {{\n  state BACKUP\n  interface {}\n  virtual_router_id 51\n  priority {}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {VIP}/32\n  }}\n}}\n",
                self.lan.node_ifs[i],
                100 + 10 * i
            ),
        )
        .unwrap();
        let pid = |n: &str| self.dir.join(format!("node{i}-{n}.pid")).to_str().unwrap().to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.lan.nodes[i].name, "keepalived", "--dont-fork", "--vrrp", "--log-console"])
            .args(["-f", conf.to_str().unwrap(), "-p", &pid("main"), "-r", &pid("vrrp"), "-i", &format!("node{i}")])
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options().create(true).append(true).open(self.dir.join(format!("node{i}.log"))).unwrap(),
            )
            .spawn()
            .expect("keepalived (apt-get install keepalived)");
        self.procs[i] = Some(child);
    }

    fn holds_vip(&self, i: usize) -> bool {
        self.lan.nodes[i].ip(&["-4", "addr", "show", "dev", &self.lan.node_ifs[i]]).contains(&format!("{VIP}/32"))
    }
}

impl Cluster for Keepalived<'_> {
    fn name(&self) -> &'static str {
        "keepalived"
    }

    fn owner(&mut self) -> usize {
        let start = Instant::now();
        loop {
            let owners: Vec<usize> = (0..3).filter(|i| self.holds_vip(*i)).collect();
            if owners.len() == 1 {
                return owners[0];
            }
            if start.elapsed() > Duration::from_secs(15) {
                let logs: Vec<String> = (0..3)
                    .map(|i| std::fs::read_to_string(self.dir.join(format!("node{i}.log"))).unwrap_or_default())
                    .collect();
                panic!("no single VRRP master: holders {owners:?}\n{}", logs.join("\n----\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fault(&mut self, node: usize, fault: Fault) {
        let pid = self.procs[node].as_ref().unwrap().id().to_string();
        match fault {
            // A crash of the node: every keepalived process in the namespace frozen at
            // once, then killed. (Killing the parent first would let the VRRP child see
            // it go and shut down gracefully, sending a priority-0 advert.)
            Fault::Crash => {
                let out = Command::new("ip").args(["netns", "pids", &self.lan.nodes[node].name]).output().unwrap();
                let pids: Vec<String> =
                    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
                for sig in ["-STOP", "-KILL"] {
                    let _ = Command::new("kill").arg(sig).args(&pids).status();
                }
            }
            Fault::Graceful => {
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
            }
            Fault::LinkDown => self.lan.link(node, false),
        }
    }

    fn restore(&mut self, node: usize, fault: Fault) {
        match fault {
            Fault::LinkDown => self.lan.link(node, true),
            Fault::Crash | Fault::Graceful => {
                if let Some(mut c) = self.procs[node].take() {
                    let _ = c.wait();
                }
                // A killed keepalived leaves its pid files (whose processes may linger as
                // zombies, which keepalived takes for a running daemon) and its address.
                for n in ["main", "vrrp"] {
                    let _ = std::fs::remove_file(self.dir.join(format!("node{node}-{n}.pid")));
                }
                let _ = self.lan.nodes[node].exec(&[
                    "ip",
                    "addr",
                    "del",
                    &format!("{VIP}/32"),
                    "dev",
                    &self.lan.node_ifs[node],
                ]);
                self.start(node);
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
}

impl Drop for Keepalived<'_> {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Sample {
    garp: Option<Duration>,
    answer: Option<Duration>,
}

fn one_round(c: &mut dyn Cluster, lan: &ClusterLan, fault: Fault) -> Sample {
    let owner = c.owner();
    let old = node_mac(owner);
    let stop = Arc::new(AtomicBool::new(false));
    let probe = arp_probe(lan, VIP, Duration::from_millis(10), stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    c.fault(owner, fault);
    std::thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Release);
    let trace = probe.join().unwrap();
    if std::env::var_os("FAILOVER_DEBUG").is_some() {
        eprintln!(
            "{fault:?} owner {owner}: {} replies, garps {:?}",
            trace.replies.len(),
            trace.gratuitous.iter().map(|(t, m)| (t.saturating_duration_since(t0), m.clone())).collect::<Vec<_>>()
        );
        eprintln!(
            "  replies by mac: {:?}",
            trace
                .replies
                .iter()
                .map(|(t, m)| (t.saturating_duration_since(t0).as_millis(), m.clone()))
                .filter(|(t, _)| *t > 0)
                .take(5)
                .collect::<Vec<_>>()
        );
    }
    c.restore(owner, fault);
    Sample {
        garp: ArpTrace::first_from_other(&trace.gratuitous, t0, &old).map(|(t, _)| t - t0),
        answer: ArpTrace::first_from_other(&trace.replies, t0, &old).map(|(t, _)| t - t0),
    }
}

fn stats(mut v: Vec<Duration>, missing: usize) -> String {
    if v.is_empty() {
        return format!("none of {missing}");
    }
    v.sort();
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    format!(
        "p50 {:6.1} ms  p95 {:6.1} ms  max {:6.1} ms{}",
        pct(0.5),
        pct(0.95),
        pct(1.0),
        if missing > 0 { format!("  ({missing} never)") } else { String::new() }
    )
}

/// One speaker starved at each CPU request: its longest heartbeat interval, and the
/// ownership changes and lost members the others saw.
fn starve(secs: u64) {
    println!("one of three speakers starved for {secs} s beside four busy loops weighted 2000m on its CPU");
    for request in [20, 50, 100, 250] {
        let lan = ClusterLan::new(3);
        lan.accept_locally(VIP);
        let ips: Vec<String> = (10..19).map(|i| format!("198.51.100.{i}")).collect();
        let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
        for ip in &refs[1..] {
            lan.accept_locally(ip);
        }
        let cfg = config(&refs, &[]);
        let speakers: Vec<Speaker> = (0..3).map(|i| lan.speaker(i, &cfg, &["--log-level", "warn"])).collect();
        for s in &speakers {
            s.wait_until("three settled", || s.metric("ferrolb_cluster_members", "state=\"settled\"") == 3.0);
        }
        let changes = |s: &[Speaker]| s.iter().map(|s| s.metric("ferrolb_ownership_changes_total", "")).sum::<f64>();
        let before = changes(&speakers);
        let cpu = netns::process_cpu(speakers[0].pid());
        let starved = netns::Starvation::start(speakers[0].pid(), &[speakers[1].pid(), speakers[2].pid()], request);
        let mut lowest = 3.0f64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            for s in &speakers[1..] {
                lowest = lowest.min(s.metric("ferrolb_cluster_members", "state=\"settled\""));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let cpu = netns::process_cpu(speakers[0].pid()) - cpu;
        drop(starved);
        let metrics = speakers[0].http("/metrics").expect("metrics");
        let late = netns::sample(&metrics, "ferrolb_cluster_heartbeat_interval_seconds_count", "").unwrap_or(0.0)
            - netns::sample(&metrics, "ferrolb_cluster_heartbeat_interval_seconds_bucket", "le=\"0.1\"").unwrap_or(0.0);
        println!(
            "request {request:4}m: longest heartbeat interval <= {:?} s, {late} over 100 ms, ownership changes {}, fewest settled members seen {lowest}, speaker CPU {:.1} millicpu",
            netns::longest_heartbeat_interval(&metrics),
            changes(&speakers) - before,
            cpu * 1000.0 / secs as f64
        );
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    netns::require_root();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args.iter().any(|a| a == "starve") {
        return starve(args.iter().find_map(|a| a.strip_prefix("secs=")?.parse().ok()).unwrap_or(60));
    }
    let reps: usize = args.iter().find_map(|a| a.strip_prefix("reps=")?.parse().ok()).unwrap_or(20);
    let wants =
        |part: &str| !args.iter().any(|a| a == "ferrolb" || a == "keepalived") || args.iter().any(|a| a == part);
    println!("failover from the client's side, {reps} rounds each (probe every 10 ms)");
    for which in ["ferrolb", "keepalived"] {
        if !wants(which) {
            continue;
        }
        let lan = ClusterLan::new(3);
        let mut cluster: Box<dyn Cluster> =
            if which == "ferrolb" { Box::new(Ferrolb::new(&lan)) } else { Box::new(Keepalived::new(&lan)) };
        for fault in [Fault::Crash, Fault::LinkDown, Fault::Graceful] {
            let samples: Vec<Sample> = (0..reps).map(|_| one_round(cluster.as_mut(), &lan, fault)).collect();
            let garp: Vec<Duration> = samples.iter().filter_map(|s| s.garp).collect();
            let answer: Vec<Duration> = samples.iter().filter_map(|s| s.answer).collect();
            println!(
                "{:10} {:9}  first GARP: {}\n{:10} {:9}  answered:   {}",
                cluster.name(),
                format!("{fault:?}"),
                stats(garp.clone(), reps - garp.len()),
                "",
                "",
                stats(answer.clone(), reps - answer.len())
            );
        }
    }
}
