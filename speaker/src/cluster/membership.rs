//! Who is in the cluster, decided from authenticated heartbeats. Pure: the caller passes
//! packets and the time in, and sends what comes out.
//!
//! Every member sends a heartbeat to every other member each `interval`. A member is
//! alive while it was heard within `dead_after`, directly or, like SWIM's indirect probe,
//! through another member that reports having heard it directly, with its stability and
//! incarnation (so one lossy link does not evict a member, a member whose link to us is
//! broken from the start still counts, and every member converges on the same view). A
//! leave makes the survivors act at once.
//!
//! Hold-down: each member reports how long it has been a stable part of the group. A
//! member cut off from every peer reports 0, and when it finds a group that carried on
//! without it, it starts counting again; it then waits `hold_down` before it is given
//! addresses again. Members that joined within `hold_down` of the group's most senior one
//! (a cluster starting up) count as founders and wait for nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::wire::{Keyring, Kind, Packet, PeerReport, Rejected};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub dead_after: Duration,
    pub hold_down: Duration,
    /// Packets whose timestamp differs more than this from our clock are dropped: replays
    /// of old traffic after a restart have nothing to compare sequence numbers against.
    pub replay_window: Duration,
    /// Dead members are forgotten (no more heartbeats to them) after this long.
    pub forget_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: Duration::from_millis(40),
            dead_after: Duration::from_millis(200),
            hold_down: Duration::from_secs(10),
            replay_window: Duration::from_secs(15),
            forget_after: Duration::from_secs(600),
        }
    }
}

/// This node.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    /// `(incarnation, seq)` of the last packet accepted; `None` if never heard directly.
    last: Option<(u64, u64)>,
    direct: Option<Instant>,
    indirect: Option<Instant>,
    stable_since: Instant,
    /// Its own hold-down, as it reports it: it is judged against this, like it judges
    /// itself.
    hold_down: Duration,
    labels: BTreeMap<String, String>,
    left: bool,
    dead_since: Instant,
    /// The digest of its plan, from its last heartbeat.
    plan: u64,
    /// Its heartbeats list us: it counts us in its view.
    lists_me: bool,
    /// Since when it has been alive without a break (meaningful while alive).
    alive_since: Instant,
    /// When we heard it again after declaring it dead, in the same life of it and while
    /// we heard others: it dropped out without knowing (see [`PeerReport::readmitted`]).
    readmitted_at: Option<Instant>,
}

impl Peer {
    /// Known by address only, not yet heard.
    fn unknown(addr: SocketAddr, hold_down: Duration, now: Instant) -> Peer {
        Peer {
            addr,
            last: None,
            direct: None,
            indirect: None,
            stable_since: now,
            hold_down,
            labels: BTreeMap::new(),
            left: false,
            dead_since: now,
            plan: 0,
            lists_me: false,
            alive_since: now,
            readmitted_at: None,
        }
    }

    fn heard(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        match (self.direct, self.indirect) {
            (Some(d), Some(i)) => Some(d.max(i)),
            (d, i) => d.or(i),
        }
    }
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Left(String),
    Restarted(String),
    /// This member had declared us dead, though we kept sending: we rejoin through our
    /// hold-down.
    DroppedBy(String),
}

/// An accepted packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub note: Option<Note>,
    /// Which key authenticated it: 0 is the one we send with, others are mid-rotation.
    pub key: usize,
}

pub use ferrolb_model::ownership::Member;

#[derive(Debug)]
pub struct Membership {
    me: Me,
    keys: Keyring,
    settings: Settings,
    incarnation: u64,
    seq: u64,
    stable_since: Instant,
    /// Set while no peer is alive; `Some` from the start until the first peer is heard.
    isolated_since: Option<Instant>,
    peers: BTreeMap<String, Peer>,
    seeds: Vec<SocketAddr>,
    started: Instant,
    /// The digest of this node's plan, sent in heartbeats.
    plan: u64,
    /// When a member last refused our key.
    refused_at: Option<Instant>,
    /// The echoes a refusal of our recent heartbeats would carry (about 10 s of them).
    sent_echoes: std::collections::VecDeque<[u8; super::wire::ECHO_LEN]>,
    last_heartbeat: Option<Instant>,
    stalled: Option<Duration>,
    /// When we joined a group whose survivor ran long before we started: until our
    /// hold-down has passed we are no founder, whatever the survivor's report says.
    newcomer_since: Option<Instant>,
    /// Since when some peer has been heard without a break (`None` while isolated).
    hearing_since: Option<Instant>,
    /// When a live peer's heartbeat last listed us among the members it hears.
    listed_at: Option<Instant>,
    /// The members we hear have stopped listing us (see [`Wait::Evicted`]).
    evicted: bool,
    /// When every member we heard had listed us, first since we started: until then, a
    /// member that has not heard us yet still answers for what our view would give us,
    /// and claiming it would make two owners (speakers started together).
    confirmed_at: Option<Instant>,
}

/// How long one refusal keeps an isolated node from announcing (refusals are sent at most
/// once a second).
const REFUSAL_HOLD: Duration = Duration::from_secs(5);

/// Why this node announces nothing for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Just started with members to join: waiting to hear them before claiming anything,
    /// so that a restart does not briefly take every address.
    Starting,
    /// Alone, and refused by a member: this node has the wrong key, and announcing
    /// everything would fight the real owners.
    KeyMismatch,
    /// The members it hears no longer list it: its heartbeats do not reach them (one-way
    /// loss: an egress rule, a full conntrack table, a congested queue), so they have
    /// taken its addresses over. Announcing them too would make two owners.
    Evicted,
}

fn ms(n: u32) -> Duration {
    Duration::from_millis(n.into())
}

/// Whole milliseconds, saturating at what the wire holds.
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn abs_diff_ms(a: u64, b: u64) -> u64 {
    a.abs_diff(b)
}

impl Membership {
    pub fn new(me: Me, keys: Keyring, settings: Settings, seeds: Vec<SocketAddr>, now: Instant, unix_ms: u64) -> Self {
        Membership {
            me,
            keys,
            settings,
            incarnation: unix_ms,
            seq: 0,
            stable_since: now,
            isolated_since: Some(now),
            peers: BTreeMap::new(),
            seeds,
            started: now,
            plan: 0,
            refused_at: None,
            sent_echoes: std::collections::VecDeque::new(),
            last_heartbeat: None,
            stalled: None,
            newcomer_since: None,
            hearing_since: None,
            listed_at: None,
            evicted: false,
            confirmed_at: None,
        }
    }

    /// Whether this node must hold back from announcing anything, and why.
    pub fn wait(&self, now: Instant) -> Option<Wait> {
        if self.evicted {
            return Some(Wait::Evicted);
        }
        let isolated = !self.peers.values().any(|p| self.alive(p, now));
        let dead_after = self.settings.dead_after;
        // Refusals come at most once a second per address: hold back well beyond that,
        // or a misconfigured speaker would flap in and out of announcing everything.
        let refusal_hold = (5 * dead_after).max(REFUSAL_HOLD);
        if isolated && self.refused_at.is_some_and(|t| now.saturating_duration_since(t) < refusal_hold) {
            return Some(Wait::KeyMismatch);
        }
        let never_heard = !self.peers.values().any(|p| p.last.is_some());
        (isolated && never_heard && !self.seeds.is_empty() && now.saturating_duration_since(self.started) < dead_after)
            .then_some(Wait::Starting)
    }

    fn alive(&self, p: &Peer, now: Instant) -> bool {
        p.heard().is_some_and(|t| now.saturating_duration_since(t) < self.settings.dead_after)
    }

    /// Every member we hear directly lists us (one we only hear of cannot hear us).
    fn listed_by_all_heard(&self, now: Instant) -> bool {
        self.peers.values().filter(|p| self.direct_alive(p, now)).all(|p| p.lists_me)
    }

    fn direct_alive(&self, p: &Peer, now: Instant) -> bool {
        !p.left && p.direct.is_some_and(|t| now.saturating_duration_since(t) < self.settings.dead_after)
    }

    /// Replaces the keys (a rotation step, or the key file fixed).
    pub fn set_keys(&mut self, keys: Keyring) {
        self.keys = keys;
    }

    /// Takes one received datagram.
    pub fn receive(&mut self, data: &[u8], from: SocketAddr, now: Instant, unix_ms: u64) -> Result<Received, Rejected> {
        if let Some(echo) = super::wire::parse_refusal(data) {
            // Only from a peer we know, and only for a packet we sent: anyone else on the
            // LAN could otherwise keep a lone survivor dark.
            let known = self.seeds.contains(&from) || self.peers.values().any(|p| p.addr == from);
            if !known || !self.sent_echoes.contains(&echo) {
                return Err(Rejected::ForgedRefusal);
            }
            self.refused_at = Some(now);
            return Err(Rejected::Refused);
        }
        let (p, key) = Packet::decode(data, &self.keys)?;
        self.accept(p, from, now, unix_ms).map(|note| Received { note, key })
    }

    fn accept(&mut self, p: Packet, from: SocketAddr, now: Instant, unix_ms: u64) -> Result<Option<Note>, Rejected> {
        if p.name == self.me.name {
            // Our own heartbeat (a seed list naming ourselves) is harmless; the same name
            // from another process is a misconfiguration that would split ownership.
            return if p.incarnation == self.incarnation { Ok(None) } else { Err(Rejected::DuplicateName) };
        }
        if abs_diff_ms(p.sent_unix_ms, unix_ms) > self.settings.replay_window.as_millis() as u64 {
            return Err(Rejected::Clock);
        }
        let dead_after = self.settings.dead_after;
        let alive = self
            .peers
            .get(&p.name)
            .is_some_and(|q| q.heard().is_some_and(|t| now.saturating_duration_since(t) < dead_after));
        let peer = self.peers.entry(p.name.clone()).or_insert_with(|| Peer::unknown(from, ms(p.hold_ms), now));
        let mut note = None;
        match peer.last {
            // An older incarnation from a member that is dead: it restarted after its clock
            // stepped back (NTP, a VM snapshot restored). Refusing it as a replay would
            // keep it out for good. A replay of its old traffic cannot pass for it: that
            // is older than the replay window by then, or the member is alive.
            Some((inc, _)) if p.incarnation < inc && !alive => note = Some(Note::Restarted(p.name.clone())),
            Some((inc, seq)) if (p.incarnation, p.seq) <= (inc, seq) => return Err(Rejected::Replay),
            Some((inc, _)) if p.incarnation > inc => note = Some(Note::Restarted(p.name.clone())),
            _ => {}
        }
        // Dead to us in this same life of it, while we heard others: it dropped out
        // without knowing (its heartbeats lost or late on the way). Our reports say so
        // for a moment, so that it rejoins through its hold-down like any member that
        // drops out, instead of taking its addresses straight back.
        if note.is_none() && peer.last.is_some() && !alive && !peer.left && self.isolated_since.is_none() {
            peer.readmitted_at = Some(now);
        } else if note.is_some() {
            peer.readmitted_at = None;
        }
        if !alive {
            peer.alive_since = now;
        }
        peer.last = Some((p.incarnation, p.seq));
        peer.addr = from;
        if p.kind == Kind::Leave {
            peer.left = true;
            peer.direct = None;
            peer.indirect = None;
            peer.dead_since = now;
            return Ok(Some(Note::Left(p.name)));
        }
        peer.left = false;
        peer.direct = Some(now);
        peer.labels = p.labels;
        peer.plan = p.plan;
        peer.stable_since = now.checked_sub(ms(p.stable_ms)).unwrap_or(now);
        peer.hold_down = ms(p.hold_ms);
        // Flagged only briefly (and no longer once it has started over): a member that
        // hears us again after a partition must not mistake the flag for news about itself.
        if peer
            .readmitted_at
            .is_some_and(|t| now.saturating_duration_since(t) >= dead_after || peer.stable_since + dead_after >= t)
        {
            peer.readmitted_at = None;
        }
        if let Some(isolated) = self.isolated_since.take() {
            // Found a group that stayed together while we were cut off: wait our turn.
            let group_stayed = ms(p.stable_ms) >= now.saturating_duration_since(isolated);
            // A lone survivor reports 0 (it is cut off from everyone it knew), yet it ran
            // long before we started: we are the newcomer, not a founder, and must not
            // claim our share for the round it takes to hear otherwise.
            let hold_ms = self.settings.hold_down.as_millis() as u64;
            let started_before_us =
                isolated == self.started && p.incarnation.saturating_add(hold_ms) < self.incarnation;
            if group_stayed || started_before_us {
                self.stable_since = now;
            }
            if started_before_us {
                self.newcomer_since = Some(now);
            }
        }
        self.hearing_since.get_or_insert(now);
        let name = p.name.clone();
        for r in p.peers {
            if r.name == self.me.name {
                self.listed_at = Some(now);
                // Dropped by a member we never lost (so not one coming back from a
                // partition, whose flags are about the other side): our heartbeats did not
                // reach it in time though we sent them. Start over, like a member back.
                let steady = self
                    .peers
                    .get(&name)
                    .is_some_and(|q| now.saturating_duration_since(q.alive_since) > 2 * dead_after);
                if r.readmitted
                    && r.incarnation == self.incarnation
                    && steady
                    && now.saturating_duration_since(self.stable_since) > 2 * dead_after
                {
                    self.stable_since = now;
                    note = note.or(Some(Note::DroppedBy(name.clone())));
                }
                if let Some(q) = self.peers.get_mut(&name) {
                    q.lists_me = true;
                }
                continue;
            }
            let age = ms(r.age_ms);
            if age >= dead_after {
                continue;
            }
            // Discovery: heartbeats go to it from now on.
            let direct = self.peers.get(&r.name).is_some_and(|q| self.direct_alive(q, now));
            let alive = self.peers.get(&r.name).is_some_and(|q| self.alive(q, now));
            let q = self.peers.entry(r.name).or_insert_with(|| Peer::unknown(r.addr, ms(r.hold_ms), now));
            // A member that left comes back only in a later life: a report from a member
            // that has not seen the leave yet must not revive it.
            if q.left && q.last.is_none_or(|(inc, _)| r.incarnation <= inc) {
                continue;
            }
            // Heard by the reporter within dead_after: alive, as the reporter counts it.
            // One we do not hear ourselves (a broken direct link, even since we started)
            // takes its stability from the report, so that every view gives it the same
            // hold-down and the same share.
            q.left = false;
            if !alive {
                q.alive_since = now;
            }
            let at = now.checked_sub(age).unwrap_or(now);
            q.indirect = Some(q.indirect.map_or(at, |i| i.max(at)));
            if !direct {
                q.stable_since = now.checked_sub(ms(r.stable_ms)).unwrap_or(now);
                q.hold_down = ms(r.hold_ms);
            }
        }
        Ok(note)
    }

    /// When the first live member will be dead unless heard again (call [`Membership::tick`]
    /// then); `None` when no member is alive.
    pub fn next_death(&self, now: Instant) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| self.alive(p, now))
            .filter_map(|p| Some(p.heard()? + self.settings.dead_after))
            .min()
    }

    /// Housekeeping: isolation and forgetting long-dead members. Call at least every interval.
    pub fn tick(&mut self, now: Instant) {
        let any_alive = self.peers.values().any(|p| self.alive(p, now));
        if !any_alive && self.isolated_since.is_none() {
            self.isolated_since = Some(now);
        }
        if !any_alive {
            self.hearing_since = None;
        }
        // Hearing the others for a while, and none of them has listed us for twice the
        // time they take to declare a member dead: they have.
        let grace = 2 * self.settings.dead_after;
        let long = |t: Option<Instant>| t.is_none_or(|t| now.saturating_duration_since(t) > grace);
        let evicted =
            self.hearing_since.is_some_and(|h| now.saturating_duration_since(h) > grace) && long(self.listed_at);
        if self.confirmed_at.is_none() && self.listed_by_all_heard(now) {
            self.confirmed_at = Some(now);
        }
        if self.evicted && !evicted {
            // Readmitted: like a member back from a partition, wait the hold-down before
            // taking addresses back (and claim them then, with gratuitous announcements).
            self.stable_since = now;
        }
        self.evicted = evicted;
        let (dead_after, forget_after) = (self.settings.dead_after, self.settings.forget_after);
        let seeds = &self.seeds;
        self.peers.retain(|_, p| {
            let alive = p.heard().is_some_and(|t| now.saturating_duration_since(t) < dead_after);
            if alive {
                p.dead_since = now;
            }
            alive || seeds.contains(&p.addr) || now.saturating_duration_since(p.dead_since) < forget_after
        });
    }

    fn packet(&mut self, kind: Kind, now: Instant, unix_ms: u64) -> Packet {
        self.seq += 1;
        let stable_ms = match self.isolated_since {
            Some(_) => 0,
            None => millis(now.saturating_duration_since(self.stable_since)),
        };
        let mut peers: Vec<PeerReport> = self
            .peers
            .iter()
            .filter(|(_, p)| self.direct_alive(p, now))
            .map(|(name, p)| PeerReport {
                name: name.clone(),
                age_ms: millis(now.saturating_duration_since(p.direct.unwrap_or(now))),
                stable_ms: millis(now.saturating_duration_since(p.stable_since)),
                hold_ms: millis(p.hold_down),
                incarnation: p.last.map_or(0, |l| l.0),
                readmitted: p.readmitted_at.is_some(),
                addr: p.addr,
            })
            .collect();
        // When they don't all fit, a different slice leads each time.
        if !peers.is_empty() {
            let n = peers.len();
            peers.rotate_left((self.seq as usize) % n);
        }
        Packet {
            kind,
            incarnation: self.incarnation,
            seq: self.seq,
            sent_unix_ms: unix_ms,
            stable_ms,
            hold_ms: millis(self.settings.hold_down),
            plan: self.plan,
            name: self.me.name.clone(),
            labels: self.me.labels.clone(),
            peers,
        }
    }

    /// Sets the digest of this node's plan (see [`plan_digest`]).
    pub fn set_plan(&mut self, digest: u64) {
        self.plan = digest;
    }

    /// Live members whose plan differs from ours: they decide ownership from other
    /// addresses or rules (a configuration file not the same on every node).
    pub fn plan_mismatch(&self, now: Instant) -> Vec<String> {
        self.peers
            .iter()
            .filter(|(_, p)| self.direct_alive(p, now) && p.plan != self.plan)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Replaces the members to contact first (in a cluster: the speaker pods' addresses).
    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>) {
        self.seeds = seeds;
    }

    /// Where heartbeats go: every known member and every seed.
    pub fn targets(&self) -> Vec<SocketAddr> {
        let mut t: Vec<SocketAddr> = self.peers.values().map(|p| p.addr).chain(self.seeds.iter().copied()).collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    pub fn heartbeat(&mut self, now: Instant, unix_ms: u64) -> Vec<u8> {
        // Silent for longer than dead_after (the process was stopped, or starved): the
        // others have declared us dead and given our addresses away, so we rejoin like a
        // restarted member and wait our hold-down rather than take them back at once.
        if let Some(gap) = self.last_heartbeat.map(|t| now.saturating_duration_since(t))
            && gap > self.settings.dead_after
            && self.isolated_since.is_none()
        {
            self.stable_since = now;
            self.stalled = Some(gap);
        }
        self.last_heartbeat = Some(now);
        let pkt = self.packet(Kind::Heartbeat, now, unix_ms).encode(self.keys.primary());
        if self.sent_echoes.len() >= 256 {
            self.sent_echoes.pop_front();
        }
        self.sent_echoes.push_back(super::wire::echo_of(&pkt));
        pkt
    }

    /// A silence of ours long enough for the others to have evicted us, once.
    pub fn take_stall(&mut self) -> Option<Duration> {
        self.stalled.take()
    }

    pub fn leave(&mut self, now: Instant, unix_ms: u64) -> Vec<u8> {
        self.packet(Kind::Leave, now, unix_ms).encode(self.keys.primary())
    }

    /// The live members, this node included, sorted by name.
    pub fn members(&self, now: Instant) -> Vec<Member> {
        let mut live: Vec<(&str, &BTreeMap<String, String>, Instant, Duration)> =
            vec![(&self.me.name, &self.me.labels, self.stable_since, self.settings.hold_down)];
        live.extend(
            self.peers
                .iter()
                .filter(|(_, p)| self.alive(p, now))
                .map(|(n, p)| (n.as_str(), &p.labels, p.stable_since, p.hold_down)),
        );
        let senior = live.iter().map(|m| m.2).min().unwrap_or(now);
        // The others hand our share over when they count us (at the end of our hold-down,
        // or as they list a founder), and their data planes let go a moment later: we
        // claim it two heartbeats after that, so that no address has two owners meanwhile.
        let claim_margin = 2 * self.settings.interval;
        let newcomer = self.newcomer_since.is_some_and(|t| now.saturating_duration_since(t) < self.settings.hold_down)
            || self.confirmed_at.is_none_or(|t| now.saturating_duration_since(t) < claim_margin);
        let mut out: Vec<Member> = live
            .into_iter()
            .map(|(name, labels, since, hold)| {
                let me = name == self.me.name;
                let held_for = now.saturating_duration_since(since);
                let founder = since.saturating_duration_since(senior) < hold;
                Member {
                    name: name.to_string(),
                    labels: labels.clone(),
                    settled: !(newcomer && me)
                        && (founder || if me { held_for >= hold + claim_margin } else { held_for >= hold }),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// A digest of what ownership is decided on: every candidate address, its Services, and
/// who may announce it.
pub fn plan_digest(plan: &ferrolb_model::config::Plan) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(format!("{:?}", plan.scopes).as_bytes());
    for c in &plan.candidates {
        h.update(format!("{}|{}|{:?}|{:?}|{:?};", c.ip, c.pool, c.services, c.scopes, c.only_nodes).as_bytes());
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests;
