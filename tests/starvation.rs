//! A speaker starved of CPU, as on a busy node, in a test binary of its own: the busy
//! loops it runs would slow whatever ran beside it.

use ferrolb_testkit::netns;

use std::time::{Duration, Instant};

use netns::{ClusterLan, Speaker, cluster, owners, vips};

/// Issue 12 (9), starved nodes: for 60 s the owner's CPU is saturated by busy loops in
/// a cgroup weighted like a pod requesting 2 CPUs, while its speaker sits in a cgroup
/// weighted like the DaemonSet's CPU request (see [`netns::Starvation`]). Nothing may
/// move: no ownership change, no conflict, three settled members throughout.
#[test]
fn a_minute_of_cpu_starvation_moves_nothing() {
    let lan = ClusterLan::new(3);
    let ips = vips(9);
    let speakers = cluster(&lan, &ips, &[]);
    let all: Vec<Option<&Speaker>> = speakers.iter().map(Some).collect();
    let before = owners(&all, &ips);
    let changes: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_ownership_changes_total", "")).collect();
    let request = speaker_cpu_request_millicpu();
    let starved = netns::Starvation::start(speakers[0].pid(), &[speakers[1].pid(), speakers[2].pid()], request);
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < Duration::from_secs(60) {
        // The starved node is scraped every 5 s, the others every 0.5 s: each scrape costs
        // the starved speaker CPU it is short of (a Prometheus scrapes every 15-30 s), and
        // a death it missed would show in its ownership changes below anyway.
        for (i, s) in speakers.iter().enumerate().filter(|(i, _)| *i != 0 || round % 10 == 0) {
            let settled = s.metric("ferrolb_cluster_members", "state=\"settled\"");
            assert_eq!(settled, 3.0, "node {i} lost a member after {:?} of starvation at {request}m", start.elapsed());
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(starved);
    let after: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_ownership_changes_total", "")).collect();
    assert_eq!(changes, after, "ownership changed while node 0 was starved");
    assert_eq!(owners(&all, &ips), before);
    let conflicts: Vec<f64> = speakers.iter().map(|s| s.metric("ferrolb_conflicts_total", "")).collect();
    assert_eq!(conflicts, vec![0.0; 3]);
    let longest = netns::longest_heartbeat_interval(&speakers[0].http("/metrics").expect("metrics"));
    eprintln!("starved at {request}m: heartbeats at most {longest:?} s apart");
    assert!(longest.is_some_and(|s| s <= 0.15), "the starved speaker's heartbeats came up to {longest:?} s apart");
}

/// The speaker DaemonSet's CPU request, in millicpu, from manifests/speaker.yaml.
fn speaker_cpu_request_millicpu() -> u64 {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/speaker.yaml")).unwrap();
    let at = text.find("requests: {cpu: ").expect("a CPU request in manifests/speaker.yaml") + "requests: {cpu: ".len();
    let milli = text[at..].split('m').next().unwrap();
    milli.parse().expect("the request in millicpu")
}
