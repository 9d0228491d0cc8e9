//! Cluster mode: membership over authenticated UDP heartbeats ([`membership`], [`wire`]),
//! and the I/O around them (who owns which address is `ferrolb_model::ownership`).

pub mod membership;
pub mod thread;
pub mod wire;

pub use thread::ClusterThread;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use self::membership::{Me, Member, Membership, Note, Received, Settings, Wait};
use self::wire::{Keyring, Rejected};
use crate::announcer::{Outcome, Outcomes};
use crate::metrics::{KeyLabel, Metrics, PrimaryKeyLabel, ReasonLabel, StateLabel};

/// How the member list changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// A member died or left: its addresses are being taken over.
    pub lost: bool,
    /// A member appeared or came back.
    pub joined: bool,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub bind: SocketAddr,
    pub join: Vec<SocketAddr>,
    pub key_file: PathBuf,
    pub settings: Settings,
}

/// Membership problems reported (as Events) per minute at most; more are only logged.
const PROBLEMS_PER_MINUTE: u32 = 8;

/// How long members may disagree on the plan before it is reported.
const MISMATCH_GRACE: Duration = Duration::from_secs(5);

/// How often the key file is read again: a mounted Secret changes in place, and a key is
/// rotated by editing it (see [`Keyring`]).
const KEY_POLL: Duration = Duration::from_secs(2);

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The key metrics: how many keys are accepted, and which one this speaker sends with.
fn export_keys(metrics: &Metrics, keys: &Keyring) {
    metrics.cluster_keys.set(keys.count() as i64);
    metrics.cluster_key_info.clear();
    metrics.cluster_key_info.get_or_create(&PrimaryKeyLabel { primary: keys.primary().fingerprint() }).set(1);
}

#[derive(Debug)]
pub struct Cluster {
    sock: UdpSocket,
    backlog: std::net::UdpSocket,
    membership: Membership,
    metrics: Arc<Metrics>,
    heartbeat: Interval,
    key_file: PathBuf,
    /// The key file's contents when last read, valid or not.
    key_contents: Vec<u8>,
    key_poll: Interval,
    members: Vec<Member>,
    waiting: Option<Wait>,
    /// When each sender with a bad key was last refused (bounded).
    refused: HashMap<SocketAddr, Instant>,
    /// When each sender was last warned about, per reason (bounded).
    warned: HashMap<(SocketAddr, &'static str), Instant>,
    /// Since when, and how many membership problems were reported as outcomes.
    problems_reported: (Instant, u32),
    /// Since when members disagree on the plan, and whether that was reported.
    mismatch: Option<(Instant, bool)>,
    buf: Box<[u8; 2048]>,
    last_heartbeat: Option<Instant>,
    outcomes: Outcomes,
}

impl Cluster {
    pub async fn start(opts: Options, me: Me, metrics: Arc<Metrics>, outcomes: Outcomes) -> anyhow::Result<Cluster> {
        let key_contents = std::fs::read(&opts.key_file)
            .with_context(|| format!("cannot read the cluster key file {}", opts.key_file.display()))?;
        let keys = Keyring::parse(&key_contents).with_context(|| format!("{}", opts.key_file.display()))?;
        let std_sock = std::net::UdpSocket::bind(opts.bind)
            .with_context(|| format!("cannot bind the cluster port {}", opts.bind))?;
        std_sock.set_nonblocking(true)?;
        // A second handle on the same socket reads what is queued straight from the kernel,
        // without waiting for the reactor to notice (see `changed`).
        let backlog = std_sock.try_clone()?;
        let sock = UdpSocket::from_std(std_sock)?;
        let now = Instant::now();
        export_keys(&metrics, &keys);
        let membership = Membership::new(me, keys, opts.settings, opts.join, now, unix_ms());
        let waiting = membership.wait(now);
        let members = if waiting.is_some() { Vec::new() } else { membership.members(now) };
        let mut heartbeat = tokio::time::interval(opts.settings.interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut key_poll = tokio::time::interval_at(tokio::time::Instant::now() + KEY_POLL, KEY_POLL);
        key_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        info!(bind = %opts.bind, seeds = ?membership.targets(), "cluster membership started");
        let c = Cluster {
            sock,
            backlog,
            membership,
            metrics,
            heartbeat,
            key_file: opts.key_file,
            key_contents,
            key_poll,
            members,
            waiting,
            refused: HashMap::new(),
            warned: HashMap::new(),
            problems_reported: (Instant::now(), 0),
            mismatch: None,
            buf: Box::new([0; 2048]),
            last_heartbeat: None,
            outcomes,
        };
        c.export();
        Ok(c)
    }

    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>) {
        self.membership.set_seeds(seeds);
    }

    /// This node's plan digest, compared with the other members' (see [`membership::plan_digest`]).
    pub fn set_plan(&mut self, digest: u64) {
        self.membership.set_plan(digest);
    }

    /// Reports members whose plan differs from ours once that has lasted [`MISMATCH_GRACE`]
    /// (while a change spreads they differ for a moment).
    fn check_plans(&mut self, now: Instant) {
        let differing = self.membership.plan_mismatch(now);
        if differing.is_empty() {
            if self.mismatch.take().is_some_and(|(_, reported)| reported) {
                info!("every member has the same configuration again");
            }
            self.metrics.config_mismatch.set(0);
            return;
        }
        let (since, reported) = self.mismatch.get_or_insert((now, false));
        if !*reported && now.saturating_duration_since(*since) >= MISMATCH_GRACE {
            *reported = true;
            warn!(members = ?differing, "these members announce from another configuration: ownership may be split or doubled; make the configuration the same everywhere");
            self.metrics.config_mismatch.set(differing.len() as i64);
        }
    }

    /// The live members; empty while this node must announce nothing (see [`Wait`]).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Exchanges heartbeats until the member list changes; returns what changed.
    /// Cancel-safe.
    pub async fn changed(&mut self) -> Change {
        loop {
            tokio::select! {
                r = self.sock.recv_from(&mut self.buf[..]) => match r {
                    Ok((n, from)) => self.take(n, from).await,
                    Err(e) => warn!(error = %e, "cluster socket receive failed"),
                },
                _ = self.heartbeat.tick() => self.send_heartbeat().await,
                // Between packets and heartbeats, wake only when a member would die: an
                // idle speaker wakes a few dozen times a second, not hundreds (its CPU
                // request is small, and starved CPU is what delays heartbeats).
                _ = sleep_until_opt(self.membership.next_death(Instant::now())) => {}
                _ = self.key_poll.tick() => self.reload_keys(),
            }
            // Whatever arrived while this process was not running (a stall, a busy
            // machine) is read before anyone is judged dead: a late check must not evict a
            // member whose heartbeats are waiting in the socket.
            while let Ok((n, from)) = self.backlog.recv_from(&mut self.buf[..]) {
                self.take(n, from).await;
            }
            let now = Instant::now();
            self.membership.tick(now);
            self.check_plans(now);
            let waiting = self.membership.wait(now);
            if waiting != self.waiting {
                match waiting {
                    Some(Wait::KeyMismatch) => error!(
                        "membership packets fail authentication and no member is reachable: is --cluster-key-file the cluster's key? Announcing nothing"
                    ),
                    Some(Wait::Starting) => info!("waiting to hear the cluster before announcing"),
                    Some(Wait::Evicted) => error!(
                        "the members this speaker hears no longer list it: its heartbeats do not reach them (one-way loss?). They have taken its addresses over: announcing nothing until they hear it again"
                    ),
                    None => info!("membership settled"),
                }
                self.waiting = waiting;
            }
            let members = if waiting.is_some() { Vec::new() } else { self.membership.members(now) };
            if members != self.members {
                let change = Change {
                    lost: self.members.iter().any(|m| !members.iter().any(|n| n.name == m.name)),
                    joined: members.iter().any(|m| !self.members.iter().any(|n| n.name == m.name)),
                };
                for m in members.iter().filter(|m| !self.members.contains(m)) {
                    info!(member = %m.name, settled = m.settled, "member up");
                }
                for m in self.members.iter().filter(|m| !members.iter().any(|n| n.name == m.name)) {
                    warn!(member = %m.name, "member lost");
                }
                self.members = members;
                self.export();
                return change;
            }
        }
    }

    /// Takes one received datagram of `n` bytes in `self.buf`.
    async fn take(&mut self, n: usize, from: SocketAddr) {
        match self.membership.receive(&self.buf[..n], from, Instant::now(), unix_ms()) {
            Ok(Received { note, key }) => {
                let key = if key == 0 { "primary" } else { "secondary" };
                self.metrics.cluster_accepted.get_or_create(&KeyLabel { key }).inc();
                match note {
                    Some(Note::Left(name)) => info!(member = %name, "member left"),
                    Some(Note::Restarted(name)) => info!(member = %name, "member restarted"),
                    Some(Note::DroppedBy(name)) => warn!(
                        member = %name,
                        "this member had declared us dead (our heartbeats reached it late or not at all): rejoining through hold-down"
                    ),
                    None => {}
                }
            }
            Err(e) => {
                self.metrics.cluster_rejected.get_or_create(&ReasonLabel { reason: e.label() }).inc();
                debug!(%from, reason = %e, "membership packet dropped");
                if e == Rejected::BadTag {
                    self.refuse(n, from).await;
                }
                // Misconfigurations that split ownership silently: said at warn level, once
                // a minute per sender, not only counted.
                let why = match e {
                    Rejected::ForgedRefusal => {
                        Some(("ForgedRefusal", "a refusal that no member of ours sent (forged?): ignored"))
                    }
                    Rejected::DuplicateName => Some((
                        "DuplicateNodeName",
                        "another speaker uses this node's name: each would count itself as that member and ownership splits; give every node its own --node-name",
                    )),
                    Rejected::Clock => Some((
                        "ClockSkew",
                        "a member's clock differs from ours by more than the replay window: its heartbeats are refused and it announces alone; fix NTP on both",
                    )),
                    _ => None,
                };
                if let Some((reason, why)) = why {
                    let now = Instant::now();
                    if self.warned.len() >= 256 {
                        self.warned.clear();
                    }
                    let last = self.warned.insert((from, e.label()), now);
                    if last.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60)) {
                        warn!(%from, reason = e.label(), "{why}");
                        // Refusals are not authenticated: a sender varying its port must not
                        // turn into a stream of Events. A few per minute, the rest logged.
                        if now.saturating_duration_since(self.problems_reported.0) >= Duration::from_secs(60) {
                            self.problems_reported = (now, 0);
                        }
                        if self.problems_reported.1 < PROBLEMS_PER_MINUTE {
                            self.problems_reported.1 += 1;
                            let _ =
                                self.outcomes.send(Outcome::MembershipProblem(reason, format!("from {from}: {why}")));
                        }
                    } else if let Some(t) = last {
                        self.warned.insert((from, e.label()), t);
                    }
                }
            }
        }
    }

    /// Takes a changed key file; an invalid one is reported and the last good keys stay.
    fn reload_keys(&mut self) {
        let contents = match std::fs::read(&self.key_file) {
            Ok(c) => c,
            Err(e) => {
                if !self.key_contents.is_empty() {
                    error!(file = %self.key_file.display(), error = %e, "cannot read the cluster key file; keeping the keys in use");
                    self.key_contents.clear();
                }
                self.metrics.cluster_key_stale.set(1);
                return;
            }
        };
        if contents == self.key_contents {
            return;
        }
        match Keyring::parse(&contents) {
            Ok(keys) => {
                info!(keys = keys.count(), primary = %keys.primary().fingerprint(), "cluster key file changed: keys reloaded");
                export_keys(&self.metrics, &keys);
                self.metrics.cluster_key_stale.set(0);
                self.membership.set_keys(keys);
            }
            Err(e) => {
                error!(file = %self.key_file.display(), error = %e, "invalid cluster key file; keeping the keys in use");
                self.metrics.cluster_key_stale.set(1);
            }
        }
        self.key_contents = contents;
    }

    /// Tells a sender with the wrong key (its datagram: the first `n` bytes of the
    /// buffer), at most once a second per address.
    async fn refuse(&mut self, n: usize, to: SocketAddr) {
        let now = Instant::now();
        if self.refused.len() >= 256 {
            self.refused.clear();
        }
        if self.refused.get(&to).is_some_and(|t| now.saturating_duration_since(*t) < Duration::from_secs(1)) {
            return;
        }
        self.refused.insert(to, now);
        warn!(%to, "membership packet failed authentication: a speaker with another key? Refused");
        let refusal = wire::refusal(&self.buf[..n]);
        let _ = self.sock.send_to(&refusal, to).await;
    }

    async fn send_heartbeat(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.last_heartbeat.replace(now) {
            self.metrics.heartbeat_interval.0.observe(now.saturating_duration_since(last).as_secs_f64());
        }
        let pkt = self.membership.heartbeat(now, unix_ms());
        if let Some(gap) = self.membership.take_stall() {
            warn!(
                silent_ms = gap.as_millis() as u64,
                "this speaker was silent longer than dead_after (stopped or starved): rejoining after hold-down"
            );
        }
        for to in self.membership.targets() {
            if let Err(e) = self.sock.send_to(&pkt, to).await {
                debug!(%to, error = %e, "heartbeat not sent");
            }
        }
    }

    /// Tells every member we are going: they take over without waiting for a timeout.
    /// Sent three times, a millisecond apart, against loss.
    pub async fn leave(&mut self) {
        for _ in 0..3 {
            let pkt = self.membership.leave(Instant::now(), unix_ms());
            for to in self.membership.targets() {
                let _ = self.sock.send_to(&pkt, to).await;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn export(&self) {
        let settled = self.members.iter().filter(|m| m.settled).count() as i64;
        let m = &self.metrics.cluster_members;
        m.get_or_create(&StateLabel { state: "settled" }).set(settled);
        m.get_or_create(&StateLabel { state: "settling" }).set(self.members.len() as i64 - settled);
    }
}
