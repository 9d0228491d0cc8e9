//! Packet-level tests of cluster mode: three speakers and a client on one bridge, all in
//! namespaces made here. Ownership is checked from the client's side with the kernel's
//! ARP/NDP clients and its neighbor table, and from each speaker's metrics.

use ferrolb_testkit::netns;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_speaker::cluster::wire::Key;
use netns::{
    ArpTrace, ClusterLan, Speaker, TempFile, arp_probe, cluster, config, node_mac, node_v4, owners, serve, vips,
};

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

#[test]
fn each_of_thirty_vips_is_answered_by_exactly_one_node_and_they_spread_evenly() {
    let lan = ClusterLan::new(3);
    let ips = vips(30);
    let speakers = cluster(&lan, &ips, &[]);
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let owners = owners(&all, &ips);
    // Conflicts seen while the cluster formed (the first node held everything for a moment).
    let conflicts: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_conflicts_total", "")).collect();
    let mut per_node = [0usize; 3];
    for (ip, node) in &owners {
        per_node[*node] += 1;
        // From the client: two requests, one MAC, the owner's.
        let macs = lan.arping_all(ip, 2);
        assert_eq!(macs.into_iter().collect::<Vec<_>>(), vec![node_mac(*node)], "{ip}");
    }
    assert!(per_node.iter().all(|c| (8..=12).contains(c)), "spread {per_node:?} is not within 2 of 10");
    let now: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_conflicts_total", "")).collect();
    assert_eq!(conflicts, now, "another MAC announced an address once the cluster had settled");
}

/// Kills (or cuts off) the owner of a VIP and checks that another node answers and the
/// client's neighbor entries, IPv4 and IPv6, move to it.
fn owner_loss_moves_the_vip(cut_link: bool) {
    let lan = ClusterLan::new(3);
    let ips = vec!["198.51.100.10".to_string(), "2001:db8:100::10".to_string()];
    let mut speakers = cluster(&lan, &ips, &[]);
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    let v4_owner = before["198.51.100.10"];
    let v6_owner = before["2001:db8:100::10"];
    assert!(lan.ping("198.51.100.10"), "ping before");
    assert!(lan.ping("2001:db8:100::10"), "ping -6 before");
    assert_eq!(
        lan.client.neighbor("198.51.100.10", &lan.client_if).map(|n| n.0),
        Some(node_mac(v4_owner)),
        "the client's entry before"
    );
    // The kernel ignores neighbor updates within locktime (1 s) of the last one.
    std::thread::sleep(Duration::from_millis(1100));
    let victim = v4_owner;
    if cut_link {
        lan.link(victim, false);
    } else {
        speakers[victim].signal("KILL");
        speakers[victim].wait_exit();
    }
    let survivors: Vec<Option<&Speaker>> =
        speakers.iter().enumerate().map(|(i, s)| (i != victim).then_some(s)).collect();
    wait_for("a survivor to announce both VIPs", Duration::from_secs(5), || {
        ips.iter().all(|ip| {
            survivors.iter().flatten().any(|s| s.metric("metallb_speaker_announced", &format!("ip=\"{ip}\"")) == 1.0)
        })
    });
    let after = owners(&survivors, &ips);
    assert_ne!(after["198.51.100.10"], victim);
    // The gratuitous ARP / unsolicited NA moved the client's existing entries, before
    // any new request from the client.
    wait_for("the client's IPv4 entry to move", Duration::from_secs(3), || {
        lan.client.neighbor("198.51.100.10", &lan.client_if).map(|n| n.0) == Some(node_mac(after["198.51.100.10"]))
    });
    if v6_owner == victim {
        wait_for("the client's IPv6 entry to move", Duration::from_secs(3), || {
            lan.client.neighbor("2001:db8:100::10", &lan.client_if).map(|n| n.0)
                == Some(node_mac(after["2001:db8:100::10"]))
        });
    }
    assert_eq!(lan.arping("198.51.100.10", 1), Some(node_mac(after["198.51.100.10"])));
    assert_eq!(lan.ndisc6("2001:db8:100::10"), Some(node_mac(after["2001:db8:100::10"])));
    assert!(lan.ping("198.51.100.10") && lan.ping("2001:db8:100::10"));
    for s in survivors.iter().flatten() {
        assert_eq!(s.metric("ferrolb_cluster_members", "state=\"settled\""), 2.0);
    }
    let taken_over = survivors.iter().flatten().map(|s| s.metric("ferrolb_failover_seconds_count", "")).sum::<f64>();
    assert!(taken_over >= 1.0, "the failover histogram recorded the takeover");
}

#[test]
fn sigkill_of_the_owner_moves_its_vips_and_the_clients_neighbor_entries() {
    owner_loss_moves_the_vip(false);
}

#[test]
fn cutting_the_owners_link_moves_its_vips_and_the_clients_neighbor_entries() {
    owner_loss_moves_the_vip(true);
}

#[test]
fn sigterm_hands_over_with_no_unanswered_gap_over_fifty_ms() {
    let lan = ClusterLan::new(3);
    let ips = vips(3);
    let mut speakers = cluster(&lan, &ips, &[]);
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let vip = ips[0].clone();
    let owner = owners(&all, &ips)[&vip];
    let stop = Arc::new(AtomicBool::new(false));
    let probe = arp_probe(&lan, &vip, Duration::from_millis(10), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let at = Instant::now();
    speakers[owner].signal("TERM");
    assert!(speakers[owner].wait_exit().success(), "graceful exit");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    let trace = probe.join().expect("probe");
    let old = node_mac(owner);
    let (first, mac) = ArpTrace::first_from_other(&trace.replies, at, &old).expect("a new owner answered");
    assert_ne!(mac, old);
    let silence = trace.longest_silence(at - Duration::from_millis(100));
    assert!(silence <= Duration::from_millis(50), "longest unanswered stretch {silence:?}");
    assert!(
        first.duration_since(at) < Duration::from_millis(100),
        "first answer from the new owner after {:?}",
        first - at
    );
    assert!(trace.replies.iter().all(|(t, m)| *t < first || *m != old), "the old owner answered after the handover");
}

#[test]
fn a_restarted_node_takes_nothing_back_during_hold_down_then_its_share() {
    let lan = ClusterLan::new(3);
    let ips = vips(12);
    let hold = ["--cluster-hold-down-ms", "4000"];
    let mut speakers = cluster(&lan, &ips, &hold);
    // Members that join within hold-down of the cluster's start are founders and wait for
    // nothing; let the cluster get older than that first.
    std::thread::sleep(Duration::from_millis(4200));
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    let victim = 1;
    let cfg = std::fs::read_to_string(&speakers[victim].config).unwrap();
    speakers[victim].signal("KILL");
    speakers[victim].wait_exit();
    let survivors: Vec<Option<&Speaker>> =
        speakers.iter().enumerate().map(|(i, s)| (i != victim).then_some(s)).collect();
    wait_for("the survivors to take over", Duration::from_secs(5), || {
        survivors.iter().flatten().map(|s| s.metric("ferrolb_vips", "")).sum::<f64>() == ips.len() as f64
    });
    let during_outage = owners(&survivors, &ips);
    let changes = |speakers: &[Speaker]| -> f64 {
        [0, 2].iter().map(|i| speakers[*i].metric("ferrolb_ownership_changes_total", "")).sum()
    };
    let changes_before = changes(&speakers);
    speakers[victim] = lan.speaker(victim, &cfg, &hold);
    let back = Instant::now();
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    wait_for(
        &format!(
            "the restarted node to be seen settling {:?}",
            all.iter()
                .flatten()
                .map(|s| (
                    s.metric("ferrolb_cluster_members", "state=\"settling\""),
                    s.metric("ferrolb_cluster_members", "state=\"settled\"")
                ))
                .collect::<Vec<_>>()
        ),
        Duration::from_secs(3),
        || all.iter().flatten().all(|s| s.metric("ferrolb_cluster_members", "state=\"settling\"") == 1.0),
    );
    // Hold-down: for 4 s after the restart it announces nothing and nothing moves. Checked
    // until well before it ends: on a loaded machine one round of scrapes can take a while.
    while back.elapsed() < Duration::from_millis(2500) {
        assert_eq!(speakers[victim].metric("ferrolb_vips", ""), 0.0, "took addresses during hold-down");
        assert_eq!(owners(&all, &ips), during_outage);
        assert_eq!(changes_before, changes(&speakers), "ownership changed during hold-down");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for("its share back after hold-down", Duration::from_secs(5), || {
        speakers[victim].metric("ferrolb_vips", "") > 0.0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(owners(&all, &ips), before, "the same owners as before the crash");
}

#[test]
fn a_speaker_with_the_wrong_key_is_not_admitted_and_changes_nothing() {
    let lan = ClusterLan::new(4);
    let ips = vips(12);
    let cfg = serve(&lan, &ips);
    let speakers: Vec<Speaker> = (0..3).map(|i| lan.speaker(i, &cfg, &[])).collect();
    for s in &speakers {
        s.wait_until("three settled", || s.metric("ferrolb_cluster_members", "state=\"settled\"") == 3.0);
    }
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    let changes: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_ownership_changes_total", "")).collect();
    let wrong_key = std::env::temp_dir().join(format!("ferrolb-{}.key", netns::unique("wrong")));
    std::fs::write(&wrong_key, "not the cluster's secret at all\n").unwrap();
    let intruder = lan.speaker(3, &cfg, &["--cluster-key-file", wrong_key.to_str().unwrap()]);
    let _ = std::fs::remove_file(&wrong_key);
    std::thread::sleep(Duration::from_secs(2));
    // The intruder knows only the seed, node 0.
    assert!(speakers[0].metric("ferrolb_cluster_packets_rejected_total", "reason=\"bad_tag\"") > 0.0);
    for s in &speakers {
        assert_eq!(s.metric("ferrolb_cluster_members", "state=\"settled\""), 3.0);
        assert_eq!(s.metric("ferrolb_cluster_members", "state=\"settling\""), 0.0);
    }
    let after: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_ownership_changes_total", "")).collect();
    assert_eq!(changes, after);
    assert_eq!(owners(&all, &ips), before);
    assert_eq!(intruder.metric("ferrolb_vips", ""), 0.0, "the intruder announces nothing");
    assert!(intruder.log_text().contains("fail authentication"), "{}", intruder.log_text());
    for ip in &ips {
        assert_eq!(lan.arping_all(ip, 1).len(), 1, "{ip} answered by more than one MAC");
    }
}

/// The documented rotation, one node at a time as a Secret update reaches kubelets: the
/// new key second, then first, then alone. No packet is refused and nothing moves; the
/// retired key no longer gets in; a broken key file keeps the last good keys.
#[test]
fn a_key_rotated_node_by_node_moves_nothing_and_retires_the_old_key() {
    const OLD: &str = "the cluster secret of last year";
    const NEW: &str = "the cluster secret of this year";
    let lan = ClusterLan::new(4);
    let ips = vips(6);
    let cfg = serve(&lan, &ips);
    let files: Vec<TempFile> = (0..3).map(|_| TempFile::new("key", OLD)).collect();
    let speakers: Vec<Speaker> =
        (0..3).map(|i| lan.speaker(i, &cfg, &["--cluster-key-file", files[i].path()])).collect();
    let settled = |s: &Speaker| s.metric("ferrolb_cluster_members", "state=\"settled\"") == 3.0;
    for s in &speakers {
        s.wait_until("three settled", || settled(s));
    }
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    let changes = || -> Vec<f64> { speakers.iter().map(|s| s.metric("ferrolb_ownership_changes_total", "")).collect() };
    let changes_before = changes();
    let refused = || -> f64 {
        speakers.iter().map(|s| s.metric("ferrolb_cluster_packets_rejected_total", "reason=\"bad_tag\"")).sum()
    };
    let fingerprint = |secret: &str| Key::from_secret(secret.as_bytes()).unwrap().fingerprint();
    let steps =
        [(format!("{OLD}\n{NEW}\n"), OLD, 2.0), (format!("{NEW}\n{OLD}\n"), NEW, 2.0), (format!("{NEW}\n"), NEW, 1.0)];
    for (keys, primary, count) in steps {
        let primary = format!("primary=\"{}\"", fingerprint(primary));
        for (i, s) in speakers.iter().enumerate() {
            files[i].write(&keys);
            s.wait_until("the keys reloaded", || {
                let m = s.http("/metrics").expect("metrics endpoint");
                netns::sample(&m, "ferrolb_cluster_keys", "") == Some(count)
                    && netns::sample(&m, "ferrolb_cluster_key_info", &primary) == Some(1.0)
            });
            std::thread::sleep(Duration::from_millis(300));
            assert!(speakers.iter().all(settled), "a member dropped out after node-{i} took {keys:?}");
            assert_eq!(refused(), 0.0, "a packet was refused after node-{i} took {keys:?}");
        }
    }
    assert_eq!(changes(), changes_before, "ownership moved during the rotation");
    assert_eq!(owners(&all, &ips), before);
    // While node-0 sent with the new key and the others had it second, they took it as such.
    assert!(speakers[1].metric("ferrolb_cluster_packets_accepted_total", "key=\"secondary\"") > 0.0);
    for s in &speakers {
        assert!(s.log_text().contains("keys reloaded"), "{}", s.log_text());
    }

    let retired = TempFile::new("key", OLD);
    let intruder = lan.speaker(3, &cfg, &["--cluster-key-file", retired.path()]);
    speakers[0].wait_until("the retired key refused", || refused() > 0.0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(speakers.iter().all(settled), "the old key got a member in");
    assert_eq!(intruder.metric("ferrolb_vips", ""), 0.0, "the old key announces nothing");

    files[0].write("short\n");
    speakers[0]
        .wait_until("the bad key file reported", || speakers[0].metric("ferrolb_cluster_key_stale_bool", "") == 1.0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(speakers.iter().all(settled), "a bad key file broke membership");
    assert_eq!(speakers[0].metric("ferrolb_cluster_keys", ""), 1.0, "the last good key stays");
    assert!(speakers[0].log_text().contains("line 1: a key must be at least 16 bytes"), "{}", speakers[0].log_text());
    assert_eq!(changes(), changes_before);
}

#[test]
fn five_percent_gossip_loss_moves_nothing_for_a_minute() {
    let lan = ClusterLan::new(3);
    let ips = vips(30);
    let speakers = cluster(&lan, &ips, &[]);
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    let changes: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_ownership_changes_total", "")).collect();
    lan.gossip_loss(5);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(61) {
        std::thread::sleep(Duration::from_secs(5));
        for s in &speakers {
            assert_eq!(s.metric("ferrolb_cluster_members", "state=\"settled\""), 3.0, "{}", s.log_text());
        }
    }
    let after: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_ownership_changes_total", "")).collect();
    assert_eq!(changes, after, "ownership changed under 5% loss");
    assert_eq!(owners(&all, &ips), before);
    // The loss was real: heartbeats did go missing.
    let out = lan.nodes[0].exec(&["nft", "list", "table", "inet", "ferrolb_loss"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("drop"), "the loss rules are in place");
}

#[test]
fn a_gossip_partition_is_a_visible_conflict_and_healing_puts_the_clients_right() {
    let lan = ClusterLan::new(3);
    let ips = vec!["198.51.100.10".to_string()];
    let speakers = cluster(&lan, &ips, &[]);
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let owner = owners(&all, &ips)["198.51.100.10"];
    let cut = (owner + 1) % 3;
    assert!(lan.ping("198.51.100.10"));
    std::thread::sleep(Duration::from_millis(1100));
    // The cut-off node's membership traffic is dropped, the LAN still works: it believes
    // it is alone and claims the address too. The owner sees it and counts a conflict.
    lan.gossip_loss_on(cut, 100);
    speakers[owner].wait_until("the split brain to be counted", || {
        speakers[owner].metric("ferrolb_conflicts_total", "ip=\"198.51.100.10\"") > 0.0
    });
    assert_eq!(speakers[cut].metric("metallb_speaker_announced", "ip=\"198.51.100.10\""), 1.0);
    assert_eq!(lan.client.neighbor("198.51.100.10", &lan.client_if).map(|n| n.0), Some(node_mac(cut)));
    lan.gossip_heal(cut);
    speakers[cut]
        .wait_until("the cut-off node to rejoin and let go", || speakers[cut].metric("ferrolb_vips", "") == 0.0);
    // The owner re-announced when the member came back: the client's cache follows.
    wait_for("the client's entry back on the owner", Duration::from_secs(3), || {
        lan.client.neighbor("198.51.100.10", &lan.client_if).map(|n| n.0) == Some(node_mac(owner))
    });
    assert_eq!(owners(&all, &ips)["198.51.100.10"], owner);
    assert_eq!(lan.arping_all("198.51.100.10", 2).into_iter().collect::<Vec<_>>(), vec![node_mac(owner)]);
}

#[test]
fn members_with_different_configuration_files_are_reported() {
    let lan = ClusterLan::new(2);
    lan.accept_locally("198.51.100.10");
    let a = lan.speaker(0, &config(&["198.51.100.10"], &[]), &[]);
    let b = lan.speaker(1, &config(&["198.51.100.10", "198.51.100.11"], &[]), &[]);
    for s in [&a, &b] {
        s.wait_until("the mismatch reported", || s.metric("ferrolb_cluster_config_mismatch", "") == 1.0);
    }
    assert!(a.log_text().contains("another configuration"), "{}", a.log_text());
    // The same file everywhere: the report clears.
    b.reload(&config(&["198.51.100.10"], &[]));
    for s in [&a, &b] {
        s.wait_until("the mismatch cleared", || s.metric("ferrolb_cluster_config_mismatch", "") == 0.0);
    }
}

#[test]
fn a_stopped_owner_is_replaced_and_on_resuming_takes_nothing_back_during_hold_down() {
    let lan = ClusterLan::new(3);
    let ips = vips(6);
    let hold = ["--cluster-hold-down-ms", "4000"];
    let speakers = cluster(&lan, &ips, &hold);
    std::thread::sleep(Duration::from_millis(4200)); // past the founders' window
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    let victim = before["198.51.100.10"];
    // Frozen (a stopped process, a starved VM): neither answering nor sending heartbeats.
    speakers[victim].signal("STOP");
    std::thread::sleep(Duration::from_millis(600));
    let others: Vec<Option<&Speaker>> = speakers.iter().enumerate().map(|(i, s)| (i != victim).then_some(s)).collect();
    let during = owners(&others, &ips);
    assert_ne!(during["198.51.100.10"], victim);
    speakers[victim].signal("CONT");
    speakers[victim].wait_until("the resumed speaker to let go", || speakers[victim].metric("ferrolb_vips", "") == 0.0);
    let resumed = Instant::now();
    assert_eq!(lan.arping_all("198.51.100.10", 1).len(), 1, "one MAC answers");
    while resumed.elapsed() < Duration::from_millis(2000) {
        assert_eq!(owners(&all, &ips), during, "ownership moved back during hold-down");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = speakers[victim].log_text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(log.contains("silent longer than dead_after"), "{warnings:#?}");
    // On resuming it reads what queued up before judging anyone: nobody is evicted.
    assert!(!log.contains("member lost"), "{warnings:#?}");
}

/// Issue 12: heartbeats never wait behind the speaker's other work. Node 0 reloads a
/// 10,000-Service file again and again (parsing and allocating it blocks the speaker's
/// main loop for a while each time), and each load claims 200 more addresses (a burst of
/// gratuitous ARP for its share); node 1 must never lose it, nothing of the first four
/// addresses moves, and node 0's own heartbeats stay within 2.5 intervals of each other.
#[test]
fn heavy_reloads_never_delay_heartbeats() {
    let lan = ClusterLan::new(2);
    let small = serve(&lan, &vips(4));
    let mut big = small.clone();
    for i in 0..200u32 {
        big.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: claimed{i}\n  namespace: default\n  annotations: {{metallb.io/loadBalancerIPs: '198.51.100.{}'}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n",
            20 + i
        ));
    }
    for i in 0..10_000u32 {
        big.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: bulk{i}, namespace: default}}\nspec: {{type: LoadBalancer, loadBalancerClass: example.com/other, ports: [{{port: 80}}]}}\n"
        ));
    }
    let busy = lan.speaker(0, &small, &[]);
    let other = lan.speaker(1, &small, &[]);
    wait_for("both members settled", Duration::from_secs(15), || {
        other.metric("ferrolb_cluster_members", "state=\"settled\"") == 2.0
            && busy.metric("ferrolb_cluster_members", "state=\"settled\"") == 2.0
    });
    let changes_before = other.metric("ferrolb_ownership_changes", "");
    let claimed_garps = || -> f64 {
        let metrics = busy.http("/metrics").expect("metrics");
        (20..220)
            .filter_map(|i| {
                netns::sample(&metrics, "metallb_layer2_gratuitous_sent", &format!("ip=\"198.51.100.{i}\""))
            })
            .sum()
    };
    let mut garps: f64 = 0.0;
    for i in 0..6 {
        busy.reload(if i % 2 == 0 { &big } else { &small });
        std::thread::sleep(Duration::from_millis(700));
        garps = garps.max(claimed_garps());
    }
    busy.reload(&small);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !other.log_text().contains("member lost"),
        "node 1 lost node 0 while it reloaded:\n{}",
        other.log_text().lines().filter(|l| l.contains("member")).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(other.metric("ferrolb_ownership_changes", ""), changes_before, "addresses moved");
    let metrics = busy.http("/metrics").expect("metrics");
    assert!(garps >= 100.0, "the loads claimed addresses and announced them ({garps} gratuitous ARPs)");
    let longest = netns::longest_heartbeat_interval(&metrics);
    assert!(longest.is_some_and(|s| s <= 0.1), "node 0's heartbeats came up to {longest:?} s apart");
}

/// Every address with more than one announcer, from the speakers' metrics (none: an
/// address may also have no owner for a moment, as while a cluster forms).
fn announced_twice(speakers: &[&Speaker], ips: &[String]) -> Vec<(String, Vec<usize>)> {
    let scrapes: Vec<String> = speakers.iter().map(|s| s.http("/metrics").expect("metrics endpoint")).collect();
    ips.iter()
        .filter_map(|ip| {
            let by: Vec<usize> = (0..scrapes.len())
                .filter(|i| {
                    netns::sample(&scrapes[*i], "metallb_speaker_announced", &format!("ip=\"{ip}\"")) == Some(1.0)
                })
                .collect();
            (by.len() > 1).then(|| (ip.clone(), by))
        })
        .collect()
}

/// Whether the owners are now `expected`. Never two announcers of one address; none for
/// a moment is allowed (a handover releases before the new owner claims).
fn owners_are(speakers: &[Option<&Speaker>], ips: &[String], expected: &BTreeMap<String, usize>) -> bool {
    let present: Vec<&Speaker> = speakers.iter().flatten().copied().collect();
    let twice = announced_twice(&present, ips);
    assert!(twice.is_empty(), "announced twice: {twice:?}");
    ips.iter().all(|ip| {
        let owner = expected[ip];
        speakers[owner].is_some_and(|s| s.metric("metallb_speaker_announced", &format!("ip=\"{ip}\"")) == 1.0)
    })
}

/// The addresses of `ips` that `node` owns in `owners`.
fn owned_by(owners: &BTreeMap<String, usize>, node: usize) -> Vec<String> {
    owners.iter().filter(|(_, n)| **n == node).map(|(ip, _)| ip.clone()).collect()
}

/// Issue 12 (1), one-way loss: node 1's heartbeats are dropped on their way out (an
/// egress rule), while it still hears the others. They take its addresses over; it must
/// learn it was evicted and let go rather than answer beside the takers. Readmitted, it
/// claims its share back with gratuitous ARP: the client's entries follow at once.
#[test]
fn one_way_loss_of_a_nodes_heartbeats_never_leaves_an_address_with_two_owners() {
    let lan = ClusterLan::new(3);
    let ips = vips(9);
    let speakers = cluster(&lan, &ips, &["--cluster-hold-down-ms", "2000"]);
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    let theirs = owned_by(&before, 1);
    assert!(!theirs.is_empty(), "node 1 owns some of {before:?}");
    lan.gossip_filter(1, "", "udp dport 7946 drop");
    speakers[1]
        .wait_until("node 1 to learn it was evicted and let go", || speakers[1].metric("ferrolb_vips", "") == 0.0);
    for _ in 0..10 {
        let now = owners(&all, &ips);
        assert!(owned_by(&now, 1).is_empty(), "node 1 still announces during the loss: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for ip in &theirs {
        assert!(lan.ping(ip), "{ip} answers during the loss");
    }
    // The kernel ignores neighbor updates within locktime (1 s) of the last one.
    std::thread::sleep(Duration::from_millis(1100));
    lan.gossip_heal(1);
    speakers[1].wait_until("node 1's share back after its hold-down", || owners_are(&all, &ips, &before));
    wait_for("the client's entries back on node 1", Duration::from_secs(3), || {
        theirs.iter().all(|ip| lan.client.neighbor(ip, &lan.client_if).map(|n| n.0) == Some(node_mac(1)))
    });
}

/// Issue 12 (3), views that never converge: node 1 and node 2 cannot reach each other's
/// membership port (a host firewall, a broken path), from the start and across a restart
/// of node 2; node 0 hears both. Every view must count all three alike: otherwise node
/// 1's and node 2's shares are each announced twice.
#[test]
fn nodes_that_cannot_reach_each_other_directly_are_counted_alike_by_all() {
    let lan = ClusterLan::new(3);
    let ips = vips(12);
    let peer = node_v4(2);
    lan.gossip_filter(
        1,
        &format!("ip saddr {peer} udp dport 7946 drop"),
        &format!("ip daddr {peer} udp dport 7946 drop"),
    );
    let hold = ["--cluster-hold-down-ms", "2000"];
    let mut speakers = cluster(&lan, &ips, &hold);
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    for node in 0..3 {
        assert!(!owned_by(&before, node).is_empty(), "node {node} owns some of {before:?}");
    }
    for (ip, node) in &before {
        assert_eq!(lan.arping_all(ip, 2).into_iter().collect::<Vec<_>>(), vec![node_mac(*node)], "{ip}");
    }
    let cfg = std::fs::read_to_string(&speakers[2].config).unwrap();
    speakers[2].signal("KILL");
    speakers[2].wait_exit();
    for s in &speakers[..2] {
        s.wait_until("node 2 gone", || s.metric("ferrolb_cluster_members", "state=\"settled\"") == 2.0);
    }
    speakers[2] = lan.speaker(2, &cfg, &hold);
    for s in &speakers {
        s.wait_until("node 2 back and settled in every view", || {
            s.metric("ferrolb_cluster_members", "state=\"settled\"") == 3.0
        });
    }
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    wait_for("the owners from before the restart", Duration::from_secs(3), || owners_are(&all, &ips, &before));
}

/// Issue 12 (2), heartbeat size: node 2 carries forty long labels (Node Feature
/// Discovery's, say), about 4 KB of them. Its heartbeats must still fit one datagram and
/// authenticate, or it is never admitted while it announces its share.
#[test]
fn a_node_with_forty_long_labels_is_admitted() {
    let lan = ClusterLan::new(3);
    let ips = vips(9);
    let cfg = serve(&lan, &ips);
    let labels: Vec<String> = (0..40)
        .map(|i| {
            format!("feature.node.kubernetes.io/cpu-cpuid.AVX512-extension-{i:02}=true-with-a-longer-value-{i:02}")
        })
        .flat_map(|l| ["--node-label".to_string(), l])
        .collect();
    let heavy: Vec<&str> = labels.iter().map(String::as_str).collect();
    let speakers: Vec<Speaker> = (0..3).map(|i| lan.speaker(i, &cfg, if i == 2 { &heavy } else { &[] })).collect();
    for s in &speakers {
        s.wait_until("three settled members", || s.metric("ferrolb_cluster_members", "state=\"settled\"") == 3.0);
    }
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    assert!(!owned_by(&owners(&all, &ips), 2).is_empty());
    for s in &speakers[..2] {
        for reason in ["bad_tag", "malformed"] {
            assert_eq!(s.metric("ferrolb_cluster_packets_rejected_total", &format!("reason=\"{reason}\"")), 0.0);
        }
    }
}

/// Issue 12 (5), clock steps: node 1 restarts with its clock 10 s behind its previous
/// life's (an NTP correction, a VM snapshot restored), run under libfaketime. Its new
/// incarnation is lower than the last; it must be admitted, not refused as a replay.
#[test]
fn a_node_restarted_with_its_clock_stepped_back_is_admitted() {
    let lan = ClusterLan::new(2);
    let ips = vips(6);
    let hold = ["--cluster-hold-down-ms", "2000"];
    let mut speakers = cluster(&lan, &ips, &hold);
    let cfg = std::fs::read_to_string(&speakers[1].config).unwrap();
    speakers[1].signal("KILL");
    speakers[1].wait_exit();
    speakers[0].wait_until("node 1 gone", || speakers[0].metric("ferrolb_cluster_members", "state=\"settled\"") == 1.0);
    let stepped_back = ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", "-10s"];
    // The wrapper really steps the clock back for what it runs.
    let unix = |wrapper: &[&str]| -> i64 {
        let args: Vec<&str> = wrapper.iter().copied().chain(["date", "+%s"]).collect();
        let out = lan.nodes[1].exec(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().unwrap_or_else(|e| {
            panic!("{args:?} printed {text:?} ({e}): {}", String::from_utf8_lossy(&out.stderr).trim())
        })
    };
    let step = unix(&[]) - unix(&stepped_back);
    assert!((9..=11).contains(&step), "faketime stepped the clock by {step} s");
    speakers[1] = lan.speaker_under(1, &stepped_back, &cfg, &hold);
    for s in &speakers {
        s.wait_until("both settled again", || s.metric("ferrolb_cluster_members", "state=\"settled\"") == 2.0);
    }
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    wait_for("node 1's share back", Duration::from_secs(3), || speakers[1].metric("ferrolb_vips", "") > 0.0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!owned_by(&owners(&all, &ips), 1).is_empty());
}

/// Issue 12 (7): a host on the LAN without the key (the client) sends "refused" packets
/// to a lone speaker's membership port. Refusals that echo none of its packets, from no
/// peer it knows, are counted and ignored: it keeps answering.
#[test]
fn a_forged_refusal_from_a_host_without_the_key_keeps_nobody_dark() {
    let lan = ClusterLan::new(1);
    let ips = vips(2);
    let speakers = cluster(&lan, &ips, &[]);
    let s = &speakers[0];
    s.wait_until("both addresses announced", || s.metric("ferrolb_vips", "") == 2.0);
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let (stop, path, to) =
            (stop.clone(), format!("/run/netns/{}", lan.client.name), format!("{}:7946", node_v4(0)));
        std::thread::spawn(move || {
            netns::enter(&path);
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
            let mut n = 0u8;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                let guess = [n; 64];
                sock.send_to(&ferrolb_speaker::cluster::wire::refusal(&guess), &to).expect("send");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(s.metric("ferrolb_vips", ""), 2.0, "went dark under forged refusals");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lan.arping("198.51.100.10", 1), Some(node_mac(0)));
    stop.store(true, Ordering::Relaxed);
    forger.join().expect("forger");
    assert!(s.metric("ferrolb_cluster_packets_rejected_total", "reason=\"forged_refusal\"") > 10.0);
}

/// Issue 12 (10), cold start: three speakers started at the same moment (a new cluster,
/// a rollout with maxUnavailable > 1). At no point may two of them announce one address:
/// checked from their metrics while they form, and from the conflicts each one counts
/// (another MAC's announcement of an address it announces).
#[test]
fn speakers_started_together_never_announce_an_address_twice() {
    let lan = ClusterLan::new(3);
    let ips = vips(12);
    let cfg = serve(&lan, &ips);
    let speakers: Vec<Speaker> = std::thread::scope(|scope| {
        let started: Vec<_> = (0..3)
            .map(|i| {
                scope.spawn({
                    let (lan, cfg) = (&lan, &cfg);
                    move || lan.speaker(i, cfg, &[])
                })
            })
            .collect();
        started.into_iter().map(|h| h.join().expect("speaker start")).collect()
    });
    let refs: Vec<&Speaker> = speakers.iter().collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let twice = announced_twice(&refs, &ips);
        assert!(twice.is_empty(), "announced twice while forming: {twice:?}");
    }
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    owners(&all, &ips);
    let conflicts: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_conflicts_total", "")).collect();
    assert_eq!(conflicts, vec![0.0; 3], "conflicts counted while forming");
}

/// A blip: node 1's heartbeats are dropped on their way out for about a third of a
/// second (longer than dead_after, so the others take its addresses; it never stalled,
/// so it cannot tell by itself). Told by their next heartbeats, it rejoins through its
/// hold-down in every view instead of taking its addresses straight back.
#[test]
fn a_node_dropped_by_a_blip_waits_its_hold_down_before_taking_anything_back() {
    let lan = ClusterLan::new(3);
    let ips = vips(9);
    let speakers = cluster(&lan, &ips, &["--cluster-hold-down-ms", "3000"]);
    // Older than the founders' window, so that a member back is held down.
    std::thread::sleep(Duration::from_millis(3200));
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    assert!(!owned_by(&before, 1).is_empty());
    lan.gossip_filter(1, "", "udp dport 7946 drop");
    std::thread::sleep(Duration::from_millis(320));
    lan.gossip_heal(1);
    let back = Instant::now();
    for s in &speakers {
        s.wait_until("node 1 settling in every view", || {
            s.metric("ferrolb_cluster_members", "state=\"settling\"") == 1.0
        });
    }
    // Told by the others (or, on a slow machine where the blip outlasts eviction's grace,
    // having seen itself unlisted).
    let log = speakers[1].log_text();
    assert!(log.contains("declared us dead") || log.contains("no longer list it"), "{log}");
    while back.elapsed() < Duration::from_millis(2000) {
        assert_eq!(speakers[1].metric("ferrolb_vips", ""), 0.0, "took addresses back during its hold-down");
        std::thread::sleep(Duration::from_millis(200));
    }
    speakers[1].wait_until("its share back after hold-down", || owners_are(&all, &ips, &before));
}

/// A rollout that changes `--cluster-hold-down-ms` node by node: node 1 restarts with a
/// 1 s hold-down beside two nodes with 4 s. Judged by the others against their own 4 s,
/// it would claim its share after 1 s while they still answered for it: two owners for
/// 3 s. Each node is judged against its own hold-down, so the share moves once, with
/// one owner throughout.
#[test]
fn a_rollout_changing_the_hold_down_never_announces_an_address_twice() {
    let lan = ClusterLan::new(3);
    let ips = vips(12);
    let mut speakers = cluster(&lan, &ips, &["--cluster-hold-down-ms", "4000"]);
    // Older than the hold-down: a node restarted now is no founder.
    std::thread::sleep(Duration::from_millis(4200));
    let cfg = std::fs::read_to_string(&speakers[1].config).unwrap();
    speakers[1].signal("TERM");
    speakers[1].wait_exit();
    speakers[1] = lan.speaker(1, &cfg, &["--cluster-hold-down-ms", "1000"]);
    let restarted = Instant::now();
    let mut back = None;
    while restarted.elapsed() < Duration::from_millis(5000) {
        let present: Vec<&Speaker> = speakers.iter().collect();
        let twice = announced_twice(&present, &ips);
        assert!(twice.is_empty(), "{:?} after the restart, announced twice: {twice:?}", restarted.elapsed());
        if back.is_none() && speakers[1].metric("ferrolb_vips", "") > 0.0 {
            back = Some(restarted.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = back.expect("node 1 took its share back");
    assert!(back < Duration::from_millis(3000), "node 1 waited {back:?}: judged by the others' 4 s, not its own 1 s");
}
