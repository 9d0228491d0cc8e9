use super::*;

const T0: u64 = 1_790_000_000_000;
const MS: Duration = Duration::from_millis(1);

const SECRET: &str = "a shared secret for tests";

fn key() -> Keyring {
    Keyring::parse(SECRET.as_bytes()).unwrap()
}

/// What a packet told, or why it was dropped.
fn note(r: Result<Received, Rejected>) -> Result<Option<Note>, Rejected> {
    r.map(|r| r.note)
}

fn settings() -> Settings {
    Settings { hold_down: Duration::from_secs(5), ..Settings::default() }
}

/// A simulated cluster: members exchange heartbeats every 40 ms of simulated time,
/// with links that can be cut.
struct Sim {
    nodes: Vec<Membership>,
    up: Vec<bool>,
    /// `cut[a][b]`: a's packets don't reach b.
    cut: Vec<Vec<bool>>,
    start: Instant,
    now: Duration,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::new([198, 51, 100, 1 + i as u8].into(), 7946)
}

impl Sim {
    fn new(n: usize) -> Sim {
        let start = Instant::now();
        let nodes = (0..n).map(|i| Sim::node(i, n, start, T0)).collect();
        Sim { nodes, up: vec![true; n], cut: vec![vec![false; n]; n], start, now: Duration::ZERO }
    }

    fn node(i: usize, n: usize, now: Instant, unix: u64) -> Membership {
        Sim::node_with(i, n, now, unix, settings())
    }

    fn node_with(i: usize, n: usize, now: Instant, unix: u64, settings: Settings) -> Membership {
        let me = Me { name: format!("node-{i}"), labels: BTreeMap::new() };
        Membership::new(me, key(), settings, (0..n).map(addr).collect(), now, unix)
    }

    fn restart(&mut self, i: usize) {
        self.restart_with(i, settings());
    }

    fn restart_with(&mut self, i: usize, settings: Settings) {
        let (now, unix) = (self.start + self.now, T0 + self.now.as_millis() as u64);
        self.nodes[i] = Sim::node_with(i, self.nodes.len(), now, unix, settings);
        self.up[i] = true;
    }

    /// Runs for `d`, one heartbeat round per 40 ms.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += 40 * MS;
            let (now, unix) = (self.start + self.now, T0 + self.now.as_millis() as u64);
            let n = self.nodes.len();
            for a in 0..n {
                if !self.up[a] {
                    continue;
                }
                let pkt = self.nodes[a].heartbeat(now, unix);
                for b in 0..n {
                    if b != a && self.up[b] && !self.cut[a][b] {
                        let _ = self.nodes[b].receive(&pkt, addr(a), now, unix);
                    }
                }
            }
            for (i, m) in self.nodes.iter_mut().enumerate() {
                if self.up[i] {
                    m.tick(now);
                }
            }
        }
    }

    fn view(&self, i: usize) -> Vec<(String, bool)> {
        self.nodes[i].members(self.start + self.now).into_iter().map(|m| (m.name, m.settled)).collect()
    }

    fn names(&self, i: usize) -> Vec<String> {
        self.view(i).into_iter().map(|m| m.0).collect()
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_cluster_starting_together_settles_at_once_and_agrees() {
    let mut sim = Sim::new(3);
    sim.run(200 * MS);
    for i in 0..3 {
        assert_eq!(sim.view(i), vec![("node-0".into(), true), ("node-1".into(), true), ("node-2".into(), true)]);
    }
}

#[test]
fn a_crashed_member_is_dead_within_dead_after_for_everyone() {
    let mut sim = Sim::new(3);
    sim.run(400 * MS);
    sim.up[2] = false;
    sim.run(160 * MS);
    assert_eq!(sim.names(0).len(), 3, "not before dead_after");
    sim.run(80 * MS);
    assert_eq!(sim.names(0), names(&["node-0", "node-1"]));
    assert_eq!(sim.names(1), names(&["node-0", "node-1"]));
}

#[test]
fn a_leave_is_acted_on_at_once() {
    let mut sim = Sim::new(3);
    sim.run(400 * MS);
    let now = sim.start + sim.now;
    let bye = sim.nodes[2].leave(now, T0 + sim.now.as_millis() as u64);
    sim.up[2] = false;
    for i in 0..2 {
        let left = note(sim.nodes[i].receive(&bye, addr(2), now, T0 + sim.now.as_millis() as u64));
        assert_eq!(left, Ok(Some(Note::Left("node-2".into()))));
        assert_eq!(sim.names(i), names(&["node-0", "node-1"]));
    }
    // A report from a member that has not yet seen the leave does not bring it back.
    sim.run(40 * MS);
    assert_eq!(sim.names(0), names(&["node-0", "node-1"]));
}

#[test]
fn one_broken_link_does_not_split_the_view() {
    let mut sim = Sim::new(3);
    sim.run(400 * MS);
    sim.cut[2][0] = true; // node-2's packets no longer reach node-0
    sim.run(2000 * MS);
    for i in 0..3 {
        assert_eq!(sim.names(i).len(), 3, "node-{i} lost a member through one bad link");
    }
}

#[test]
fn a_member_cut_off_and_back_waits_its_hold_down_and_the_others_agree() {
    let mut sim = Sim::new(3);
    sim.run(6000 * MS);
    for b in 0..3 {
        sim.cut[0][b] = true;
        sim.cut[b][0] = true;
    }
    sim.run(1000 * MS);
    assert_eq!(sim.names(1), names(&["node-1", "node-2"]));
    assert_eq!(sim.names(0), names(&["node-0"]), "alone, node-0 serves by itself");
    for b in 0..3 {
        sim.cut[0][b] = false;
        sim.cut[b][0] = false;
    }
    sim.run(200 * MS);
    for i in 0..3 {
        assert_eq!(
            sim.view(i),
            vec![("node-0".into(), false), ("node-1".into(), true), ("node-2".into(), true)],
            "node-{i}'s view right after the rejoin"
        );
    }
    sim.run(5000 * MS);
    for i in 0..3 {
        assert!(sim.view(i).iter().all(|m| m.1), "node-{i}: everyone settled after hold-down");
    }
}

#[test]
fn a_restarted_member_waits_its_hold_down() {
    let mut sim = Sim::new(3);
    sim.run(6000 * MS);
    sim.up[1] = false;
    sim.run(1000 * MS);
    sim.restart(1);
    // At no step, not even while the news of its return spreads, is it settled.
    for _ in 0..8 {
        sim.run(40 * MS);
        for i in 0..3 {
            let view = sim.view(i);
            assert!(!view.iter().any(|m| m.0 == "node-1" && m.1), "node-{i} sees node-1 settled: {view:?}");
        }
    }
    for i in 0..3 {
        assert_eq!(sim.view(i)[1], ("node-1".into(), false), "node-{i}");
        assert!(sim.view(i)[0].1 && sim.view(i)[2].1);
    }
}

#[test]
fn a_lone_survivor_keeps_serving_when_a_member_comes_back() {
    let mut sim = Sim::new(2);
    sim.run(6000 * MS);
    sim.up[1] = false;
    sim.run(3000 * MS);
    sim.restart(1);
    sim.run(300 * MS);
    for i in 0..2 {
        assert_eq!(sim.view(i), vec![("node-0".into(), true), ("node-1".into(), false)], "node-{i}");
    }
}

#[test]
fn replays_forgeries_old_packets_and_name_clashes_are_rejected() {
    let now = Instant::now();
    let mut a = Sim::node(0, 2, now, T0);
    let mut b = Sim::node(1, 2, now, T0);
    let pkt = b.heartbeat(now, T0);
    assert_eq!(note(a.receive(&pkt, addr(1), now, T0)), Ok(None));
    assert_eq!(note(a.receive(&pkt, addr(1), now, T0)), Err(Rejected::Replay));
    let later = b.heartbeat(now, T0 + 100_000);
    assert_eq!(note(a.receive(&later, addr(1), now, T0)), Err(Rejected::Clock));
    let mut forged = b.heartbeat(now, T0);
    forged[20] ^= 1;
    assert_eq!(note(a.receive(&forged, addr(1), now, T0)), Err(Rejected::BadTag));
    let stranger = Membership::new(
        Me { name: "node-9".into(), labels: BTreeMap::new() },
        Keyring::parse(b"not the cluster's secret").unwrap(),
        settings(),
        vec![],
        now,
        T0,
    )
    .heartbeat(now, T0);
    assert_eq!(note(a.receive(&stranger, addr(9), now, T0)), Err(Rejected::BadTag));
    assert_eq!(a.members(now).len(), 2, "the stranger did not join");
    let twin = Sim::node(0, 2, now, T0 + 1).heartbeat(now, T0);
    assert_eq!(note(a.receive(&twin, addr(5), now, T0)), Err(Rejected::DuplicateName));
    let own = a.heartbeat(now, T0);
    assert_eq!(note(a.receive(&own, addr(0), now, T0)), Ok(None));
}

#[test]
fn members_are_discovered_through_a_seed() {
    // node-2 knows only node-0; node-1 knows only node-0.
    let start = Instant::now();
    let mut nodes: Vec<Membership> = (0..3)
        .map(|i| {
            let me = Me { name: format!("node-{i}"), labels: BTreeMap::new() };
            Membership::new(me, key(), settings(), vec![addr(0)], start, T0)
        })
        .collect();
    for round in 1..10u64 {
        let now = start + Duration::from_millis(40 * round);
        let unix = T0 + 40 * round;
        for a in 0..3 {
            let pkt = nodes[a].heartbeat(now, unix);
            for target in nodes[a].targets() {
                let b = (target.ip().to_string().rsplit('.').next().unwrap().parse::<usize>().unwrap()) - 1;
                if b != a {
                    let _ = nodes[b].receive(&pkt, addr(a), now, unix);
                }
            }
        }
    }
    let now = start + Duration::from_millis(400);
    assert_eq!(nodes[1].members(now).len(), 3);
    assert_eq!(nodes[2].members(now).len(), 3);
}

#[test]
fn a_node_holds_back_while_starting_and_when_refused_alone() {
    let now = Instant::now();
    let mut a = Sim::node(0, 2, now, T0);
    assert_eq!(a.wait(now), Some(Wait::Starting), "seeds known, nobody heard yet");
    assert_eq!(a.wait(now + 250 * MS), None, "nobody answered: the first node of a cluster serves");
    // A refusal echoes the packet it refuses: a forged one (no packet of ours, or not
    // from a peer we know) makes the lone node hold back no more than nothing would.
    let sent = a.heartbeat(now, T0);
    let refusal = super::super::wire::refusal(&sent);
    let stranger = SocketAddr::new([198, 51, 100, 99].into(), 7946);
    assert_eq!(note(a.receive(&refusal, stranger, now, T0)), Err(Rejected::ForgedRefusal));
    let blind = super::super::wire::refusal(&[0u8; 64]);
    assert_eq!(note(a.receive(&blind, addr(1), now, T0)), Err(Rejected::ForgedRefusal));
    assert_eq!(a.wait(now + 250 * MS), None, "forged refusals change nothing");
    assert_eq!(note(a.receive(&refusal, addr(1), now, T0)), Err(Rejected::Refused));
    assert_eq!(a.wait(now + 10 * MS), Some(Wait::KeyMismatch));
    assert_eq!(a.wait(now + 3000 * MS), Some(Wait::KeyMismatch), "still, between two refusals");
    // With a live member, a refusal (perhaps forged) changes nothing.
    let mut b = Sim::node(1, 2, now, T0);
    let _ = a.receive(&b.heartbeat(now, T0), addr(1), now, T0);
    assert_eq!(a.wait(now + 10 * MS), None);
    assert_eq!(Sim::node(0, 0, now, T0).wait(now), None, "no seeds: nothing to wait for");
}

#[test]
fn members_with_another_plan_are_named() {
    let mut sim = Sim::new(3);
    for m in &mut sim.nodes {
        m.set_plan(7);
    }
    sim.run(200 * MS);
    assert!(sim.nodes[0].plan_mismatch(sim.start + sim.now).is_empty());
    sim.nodes[2].set_plan(8);
    sim.run(80 * MS);
    assert_eq!(sim.nodes[0].plan_mismatch(sim.start + sim.now), vec!["node-2".to_string()]);
    assert_eq!(sim.nodes[2].plan_mismatch(sim.start + sim.now), vec!["node-0".to_string(), "node-1".to_string()]);
}

#[test]
fn the_plan_digest_changes_with_what_ownership_depends_on() {
    let load = |extra: &str| {
        let text = format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: lan, namespace: metallb-system}}\nspec: {{addresses: [198.51.100.0/24]}}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2, namespace: metallb-system}}\nspec: {{{extra}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        );
        let config = ferrolb_model::config::load("t.yaml", &text).unwrap().config;
        plan_digest(&ferrolb_model::config::Plan::new(&config, &ferrolb_model::allocate_all(&config, None).assigned))
    };
    assert_eq!(load(""), load(""));
    assert_ne!(load(""), load("nodeSelectors: [{matchLabels: {lb: 'yes'}}]"));
    assert_ne!(load(""), load("interfaces: [eth1]"));
}

#[test]
fn a_member_that_stalled_past_dead_after_rejoins_through_hold_down() {
    let mut sim = Sim::new(3);
    sim.run(6000 * MS);
    // Stopped (SIGSTOP, a starved VM) for 400 ms: neither sending nor reading.
    sim.up[1] = false;
    sim.run(400 * MS);
    assert_eq!(sim.names(0), names(&["node-0", "node-2"]));
    sim.up[1] = true;
    for _ in 0..6 {
        sim.run(40 * MS);
        for i in 0..3 {
            let view = sim.view(i);
            assert!(!view.iter().any(|m| m.0 == "node-1" && m.1), "node-{i} sees node-1 settled: {view:?}");
        }
    }
    assert!(sim.nodes[1].take_stall().is_some_and(|gap| gap >= 400 * MS), "the stall is reported");
    assert!(sim.nodes[1].take_stall().is_none(), "once");
}

/// A key rotated one member at a time, in the three documented steps, never splits the
/// cluster; a member that skips a step drops out until the others catch up.
#[test]
fn a_key_rotated_member_by_member_keeps_everyone_in() {
    const NEW: &str = "the next shared secret";
    let mut sim = Sim::new(3);
    sim.run(400 * MS);
    let all = names(&["node-0", "node-1", "node-2"]);
    let steps = [format!("{SECRET}\n{NEW}"), format!("{NEW}\n{SECRET}"), NEW.to_string()];
    for step in &steps {
        for i in 0..3 {
            sim.nodes[i].set_keys(Keyring::parse(step.as_bytes()).unwrap());
            sim.run(400 * MS);
            for j in 0..3 {
                assert_eq!(sim.names(j), all, "node-{j} after node-{i} took {step:?}");
            }
        }
    }
    // Skipping the first step: the new key alone is not accepted by members on the old one.
    let mut sim = Sim::new(3);
    sim.run(400 * MS);
    sim.nodes[2].set_keys(Keyring::parse(NEW.as_bytes()).unwrap());
    sim.run(400 * MS);
    assert_eq!(sim.names(0), names(&["node-0", "node-1"]));
}

/// Issue 12, two-node restart race: the survivor, alone, reports `stable_ms = 0`; the
/// restarted node must not take itself for a founder and claim its share for a round.
/// Its own view and the survivor's agree: it waits its hold-down.
#[test]
fn a_restart_in_a_two_node_cluster_waits_its_hold_down_in_every_view() {
    let mut sim = Sim::new(2);
    sim.run(200 * MS);
    sim.up[1] = false;
    sim.run(20_000 * MS);
    sim.restart(1);
    for _ in 0..5 {
        sim.run(40 * MS);
        assert_eq!(sim.view(1), vec![("node-0".into(), true), ("node-1".into(), false)], "node-1's own view");
        assert_eq!(sim.view(0), vec![("node-0".into(), true), ("node-1".into(), false)], "node-0's view");
    }
    sim.run(5_100 * MS);
    assert_eq!(sim.view(1), vec![("node-0".into(), true), ("node-1".into(), true)]);
}

/// Issue 12, clock steps: a member restarted after its clock stepped back has a lower
/// incarnation than its previous life. Once that life is dead it is admitted (and waits
/// its hold-down), not refused as a replay forever; while the old life is alive, a lower
/// incarnation is still a replay.
#[test]
fn a_restart_after_the_clock_stepped_back_is_admitted() {
    let mut sim = Sim::new(2);
    sim.run(6_000 * MS);
    let now = sim.start + sim.now;
    // Replayed traffic of a lower incarnation while node-1 lives: refused.
    let mut older = Sim::node(1, 2, now, T0 - 1);
    let pkt = older.heartbeat(now, T0 + sim.now.as_millis() as u64);
    assert_eq!(note(sim.nodes[0].receive(&pkt, addr(1), now, T0 + sim.now.as_millis() as u64)), Err(Rejected::Replay));
    sim.up[1] = false;
    sim.run(400 * MS);
    // node-1 comes back with an incarnation from a clock 10 s behind its last life's.
    let (now, unix) = (sim.start + sim.now, T0 + sim.now.as_millis() as u64);
    sim.nodes[1] = Sim::node(1, 2, now, unix - 10_000);
    sim.up[1] = true;
    sim.run(200 * MS);
    assert_eq!(sim.names(0), names(&["node-0", "node-1"]), "admitted again");
    assert_eq!(sim.view(0)[1], ("node-1".to_string(), false), "and waits its hold-down");
}

/// Issue 12, one-way loss: node-1's heartbeats stop reaching the others, while it still
/// hears them. They evict it; it must learn so from their heartbeats (which stop listing
/// it) and announce nothing, instead of keeping its share: two owners. Back, it waits its
/// hold-down in every view.
#[test]
fn a_member_whose_heartbeats_are_lost_one_way_learns_it_was_evicted() {
    let mut sim = Sim::new(3);
    sim.run(6000 * MS);
    sim.cut[1][0] = true;
    sim.cut[1][2] = true;
    sim.run(400 * MS);
    assert_eq!(sim.names(0), names(&["node-0", "node-2"]));
    sim.run(240 * MS);
    let now = sim.start + sim.now;
    assert_eq!(sim.nodes[1].wait(now), Some(Wait::Evicted), "within 2 x dead_after of being dropped");
    sim.cut[1][0] = false;
    sim.cut[1][2] = false;
    sim.run(200 * MS);
    let now = sim.start + sim.now;
    assert_eq!(sim.nodes[1].wait(now), None);
    for i in 0..3 {
        assert_eq!(
            sim.view(i),
            vec![("node-0".into(), true), ("node-1".into(), false), ("node-2".into(), true)],
            "node-{i}'s view after the loss ends"
        );
    }
}

/// Issue 12, cold start: node-1 starts 300 ms after node-0, well within the founders'
/// window. The moment it hears node-0, node-0 has not heard it yet and still answers for
/// everything: node-1 must not claim its share until node-0 lists it.
#[test]
fn a_founder_claims_nothing_until_the_others_have_heard_it() {
    let start = Instant::now();
    let mut a = Sim::node(0, 2, start, T0);
    let mut t = Duration::ZERO;
    while t < 300 * MS {
        t += 40 * MS;
        let _ = a.heartbeat(start + t, T0 + t.as_millis() as u64);
        a.tick(start + t);
    }
    let (now, unix) = (start + t, T0 + t.as_millis() as u64);
    let mut b = Sim::node(1, 2, now, unix);
    let from_a = a.heartbeat(now, unix);
    b.receive(&from_a, addr(0), now, unix).unwrap();
    b.tick(now);
    let settled = |m: &Membership, at| m.members(at).into_iter().map(|m| (m.name, m.settled)).collect::<Vec<_>>();
    assert_eq!(settled(&b, now), vec![("node-0".into(), true), ("node-1".into(), false)], "before node-0 heard node-1");
    // node-0 hears node-1, then lists it: now node-1 is a founder like the others.
    let now = now + 5 * MS;
    a.receive(&b.heartbeat(now, unix + 5), addr(1), now, unix + 5).unwrap();
    b.receive(&a.heartbeat(now, unix + 5), addr(0), now, unix + 5).unwrap();
    b.tick(now);
    // Listed: a founder like the others, once node-0 has had two heartbeats to let go.
    assert_eq!(settled(&b, now), vec![("node-0".into(), true), ("node-1".into(), false)], "just listed");
    let now = now + 80 * MS;
    assert_eq!(settled(&b, now), vec![("node-0".into(), true), ("node-1".into(), true)]);
}

/// Issue 12, views that never converge: node-2 (re)starts while its direct link to
/// node-1 is broken both ways. node-0 hears both and reports each to the other in every
/// heartbeat; all three views must agree (same members, same hold-down), or node-1's and
/// node-2's shares are owned twice. Both after a crash and after a graceful leave (a
/// rolling update), where node-1 saw node-2 leave.
#[test]
fn a_member_restarted_while_its_link_to_one_peer_is_broken_is_seen_alike_by_all() {
    for graceful in [false, true] {
        let mut sim = Sim::new(3);
        sim.run(6000 * MS);
        if graceful {
            let (now, unix) = (sim.start + sim.now, T0 + sim.now.as_millis() as u64);
            let bye = sim.nodes[2].leave(now, unix);
            for i in 0..2 {
                sim.nodes[i].receive(&bye, addr(2), now, unix).unwrap();
            }
        }
        sim.up[2] = false;
        sim.run(1000 * MS);
        sim.cut[2][1] = true;
        sim.cut[1][2] = true;
        sim.restart(2);
        sim.run(1000 * MS);
        let expected = vec![("node-0".into(), true), ("node-1".into(), true), ("node-2".into(), false)];
        for i in 0..3 {
            assert_eq!(sim.view(i), expected, "graceful: {graceful}, node-{i}'s view while node-2 waits");
        }
        sim.run(5000 * MS);
        for i in 0..3 {
            assert!(sim.view(i).iter().all(|m| m.1), "graceful: {graceful}, node-{i}: {:?}", sim.view(i));
            assert_eq!(sim.names(i).len(), 3, "graceful: {graceful}, node-{i}");
        }
    }
}

/// A member declared dead without noticing it (its heartbeats were lost on the way for
/// 280 ms: more than dead_after, less than eviction's grace; its own sending never
/// stalled). The others took its addresses; readmitted, it must wait its hold-down in
/// every view like any member that comes back, or each such blip moves its addresses away
/// and straight back (a node with intermittently late heartbeats would flap them).
#[test]
fn a_member_dropped_without_noticing_waits_its_hold_down_in_every_view() {
    let mut sim = Sim::new(3);
    sim.run(6000 * MS);
    sim.cut[1][0] = true;
    sim.cut[1][2] = true;
    sim.run(280 * MS);
    assert_eq!(sim.names(0), names(&["node-0", "node-2"]), "dropped by the others");
    sim.cut[1][0] = false;
    sim.cut[1][2] = false;
    sim.run(200 * MS);
    for i in 0..3 {
        assert_eq!(
            sim.view(i),
            vec![("node-0".into(), true), ("node-1".into(), false), ("node-2".into(), true)],
            "node-{i}'s view after the blip"
        );
    }
    sim.run(5000 * MS);
    for i in 0..3 {
        assert!(sim.view(i).iter().all(|m| m.1), "node-{i}: settled again after hold-down: {:?}", sim.view(i));
    }
}

/// The other side of the same rule: after a partition into two halves that both carried
/// on, neither half is the one that dropped out. Both see each other's members as they
/// report themselves, so every view agrees, and nobody is sent into hold-down (that would
/// leave no settled member to announce anything).
#[test]
fn after_a_partition_into_halves_every_view_agrees() {
    let mut sim = Sim::new(4);
    sim.run(6000 * MS);
    for a in [0, 1] {
        for b in [2, 3] {
            sim.cut[a][b] = true;
            sim.cut[b][a] = true;
        }
    }
    sim.run(1000 * MS);
    assert_eq!(sim.names(0), names(&["node-0", "node-1"]));
    for a in [0, 1] {
        for b in [2, 3] {
            sim.cut[a][b] = false;
            sim.cut[b][a] = false;
        }
    }
    sim.run(400 * MS);
    let view = sim.view(0);
    assert_eq!(view.len(), 4);
    assert!(view.iter().all(|m| m.1), "{view:?}");
    for i in 1..4 {
        assert_eq!(sim.view(i), view, "node-{i}'s view against node-0's");
    }
}

/// A rollout that changes `--cluster-hold-down-ms` runs members with different hold-downs
/// side by side. Each member is judged against its own (it travels in its heartbeats, and
/// in the reports of those that hear it), so no two views give one address to two nodes:
/// here a member restarted with a 1 s hold-down, one of whose links is broken, is settled
/// in every view at once, and not in its own view 4 s before the others'.
#[test]
fn members_with_different_hold_downs_are_judged_alike_by_all() {
    let mut sim = Sim::new(3);
    sim.run(6000 * MS);
    sim.up[2] = false;
    sim.run(1000 * MS);
    sim.cut[2][1] = true;
    sim.cut[1][2] = true;
    sim.restart_with(2, Settings { hold_down: Duration::from_secs(1), ..settings() });
    sim.run(400 * MS);
    let waiting = vec![("node-0".into(), true), ("node-1".into(), true), ("node-2".into(), false)];
    for i in 0..3 {
        assert_eq!(sim.view(i), waiting, "node-{i}'s view while node-2 waits its 1 s");
    }
    sim.run(1000 * MS);
    for i in 0..3 {
        assert!(sim.view(i).iter().all(|m| m.1), "node-{i}: node-2 settled after its own 1 s: {:?}", sim.view(i));
    }
    // And the other way round: a member with a 5 s hold-down beside one whose is 1 s.
    sim.up[0] = false;
    sim.run(1000 * MS);
    sim.restart(0);
    sim.run(2000 * MS);
    let waiting = vec![("node-0".into(), false), ("node-1".into(), true), ("node-2".into(), true)];
    for i in 0..3 {
        assert_eq!(sim.view(i), waiting, "node-{i}'s view 2 s into node-0's 5 s");
    }
}

/// At the end of a hold-down the others hand the member's share over when they next look,
/// up to a heartbeat later than the member itself would: the member counts itself
/// settled two heartbeats after they count it, so that they let go before it claims and
/// no address has two owners for that moment.
#[test]
fn a_member_back_claims_only_after_the_others_count_it_settled() {
    let mut sim = Sim::new(3);
    sim.run(6000 * MS);
    sim.up[2] = false;
    sim.run(1000 * MS);
    sim.restart(2);
    let settled_in = |sim: &Sim, i: usize| sim.view(i).iter().any(|m| m.0 == "node-2" && m.1);
    let (mut by_others, mut by_itself) = (None, None);
    while by_itself.is_none() && sim.now < Duration::from_secs(20) {
        sim.run(40 * MS);
        if by_others.is_none() && settled_in(&sim, 0) && settled_in(&sim, 1) {
            by_others = Some(sim.now);
        }
        if settled_in(&sim, 2) {
            by_itself = Some(sim.now);
        }
    }
    let (others, itself) = (by_others.expect("settled in the others' views"), by_itself.expect("in its own"));
    assert!(itself >= others + 80 * MS, "node-2 counted itself settled at {itself:?}, the others at {others:?}");
}

/// Speakers started together: a member that hears a founder lists it and, in the same
/// moment, hands over what the founder's share takes from it; its data plane lets go a
/// moment later. The founder claims two heartbeats after every member it hears has
/// listed it, so that they have let go first.
#[test]
fn a_founder_claims_only_after_the_others_count_it() {
    let mut sim = Sim::new(3);
    sim.up[2] = false;
    sim.run(1000 * MS);
    sim.restart(2);
    let settled_in = |sim: &Sim, i: usize| sim.view(i).iter().any(|m| m.0 == "node-2" && m.1);
    let (mut by_others, mut by_itself) = (None, None);
    while by_itself.is_none() && sim.now < Duration::from_secs(5) {
        sim.run(40 * MS);
        if by_others.is_none() && settled_in(&sim, 0) && settled_in(&sim, 1) {
            by_others = Some(sim.now);
        }
        if settled_in(&sim, 2) {
            by_itself = Some(sim.now);
        }
    }
    let (others, itself) = (by_others.expect("a founder in the others' views"), by_itself.expect("in its own"));
    assert!(itself >= others + 80 * MS, "node-2 counted itself settled at {itself:?}, the others at {others:?}");
}
