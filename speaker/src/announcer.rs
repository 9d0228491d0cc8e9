//! The announcer (MetalLB's name for it): it owns the speaker's loop. Plans (what may be
//! announced) come from a [`Source`] (a file, or the cluster's objects); the live members
//! from the membership thread; ownership decides this node's share; the data plane
//! answers for it on the interfaces chosen. What happens comes back to the source as
//! [`Outcome`]s on one channel, for it to report (Events, ServiceL2Status).
//!
//! The loop is the same for every source: membership, link changes, the tick, signals,
//! and on the way out the stop-then-leave order (no moment with two owners). Layer 2 is
//! the one protocol today; a second (BGP) takes the same decisions from here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrolb_model::config::{Announcement, NodeInfo, Plan};
use ferrolb_model::ownership;
use ferrolb_runtime::Readiness;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::bgp::frr::{Frr, FrrOptions};
use crate::bgp::frr_config::{self, FrrInput};
use crate::cluster::membership::{Me, Member};
use crate::cluster::{self, ClusterThread};
use crate::dataplane::{AnnouncePolicy, Families, InterfaceTable, Responder};
use crate::interfaces::{self, Exclusions, Interface};
use crate::metrics::{AnnouncedLabels, IpValue, Metrics, SharedValue};

#[derive(Debug, Clone)]
pub struct Options {
    pub node: NodeInfo,
    pub policy: AnnouncePolicy,
    /// Interface names not announced on unless an L2Advertisement names them.
    pub exclude: Exclusions,
    /// MetalLB's `metallb-excludel2` ConfigMap as mounted; read again when it changes
    /// (it replaces `exclude`). `None`: `exclude` alone.
    pub excludel2: Option<PathBuf>,
    /// How often the interfaces, the exclusions and failed sockets are looked at again.
    pub tick: Duration,
    /// BGP mode's engine; `None`: layer 2 only.
    pub frr: Option<FrrOptions>,
}

/// What the announcer reports back to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This node started announcing these addresses.
    Announced(Vec<Announcement>),
    /// Another host announces an address this node owns (seen for the first time).
    Conflict(IpAddr),
    /// A membership misconfiguration just warned about: (Event reason, message).
    MembershipProblem(&'static str, String),
    /// Per Service (`namespace/name`) this node announces, the interfaces it answers on;
    /// sent when that changes.
    Statuses(BTreeMap<String, BTreeSet<String>>),
}

/// Where the data plane and the membership thread send their [`Outcome`]s; the announcer's
/// loop drains it.
pub type Outcomes = mpsc::UnboundedSender<Outcome>;

/// What a source says changed.
#[derive(Debug)]
pub enum Change {
    /// A new plan to serve.
    Plan(Plan),
    /// What the source knows about the members changed (their Nodes' labels).
    Members,
    /// Where the other speakers may be reached now.
    Seeds(Vec<SocketAddr>),
}

/// Where plans come from, and where outcomes go.
pub trait Source {
    /// The plan serving starts with; an error stops the speaker.
    fn first_plan(&mut self) -> anyhow::Result<Plan>;
    /// Waits for the next change. Cancel-safe: the loop polls it beside other events.
    fn changed(&mut self) -> impl std::future::Future<Output = Change>;
    /// The live members as this source completes them (labels, availability).
    fn members(&self, members: &[Member]) -> Vec<Member> {
        members.to_vec()
    }
    /// Whether heartbeats carry this node's labels (else the others read them elsewhere).
    fn labels_in_heartbeats(&self) -> bool {
        true
    }
    /// Takes an outcome to report.
    fn report(&mut self, outcome: Outcome);
    /// Called each tick (a chance to retry what failed).
    fn tick(&mut self) {}
}

struct Running {
    iface: Interface,
    families: Families,
    tables: watch::Sender<Arc<InterfaceTable>>,
    task: JoinHandle<()>,
}

/// The announcer's state between changes.
pub struct Announcer {
    pub(crate) opts: Options,
    pub(crate) metrics: Arc<Metrics>,
    /// Every advertised address and who may announce it, under the last good
    /// configuration; `None` before the first successful load. Only this is kept, not the
    /// parsed file, so memory follows the number of addresses announced.
    pub(crate) plan: Option<Plan>,
    /// The live cluster members; `None` when not clustered.
    pub(crate) members: Option<Vec<Member>>,
    /// Each candidate's owner at the last decision, to count changes.
    owners: Vec<Option<String>>,
    /// When a member was last lost, until the takeover it causes is applied.
    takeover_since: Option<std::time::Instant>,
    /// Re-announce everything at the next apply (a member came back).
    reannounce: bool,
    /// What this node announced at the last apply.
    announced: std::collections::BTreeSet<IpAddr>,
    last_announcements: Vec<Announcement>,
    /// Per Service this node announces, the interfaces it answers on.
    service_interfaces: BTreeMap<String, std::collections::BTreeSet<String>>,
    running: BTreeMap<String, Running>,
    interfaces: Vec<Interface>,
    /// Per interface, why its packet sockets could not be opened (retried each tick).
    socket_errors: BTreeMap<String, String>,
    /// The mounted excludel2 file's identity when last read.
    excludel2_stamp: Option<(SystemTime, u64)>,
    /// Given to each responder, for the conflicts it sees.
    outcomes: Outcomes,
    /// Addresses whose conflict was reported (cleared with each new plan).
    conflicts_reported: BTreeSet<IpAddr>,
    outcomes_rx: mpsc::UnboundedReceiver<Outcome>,
    /// FRR, once started; `None` without BGP mode.
    frr: Option<Frr>,
    /// Whether BGP objects without an FRR to drive were warned about.
    warned_no_frr: bool,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer").field("opts", &self.opts).finish_non_exhaustive()
    }
}

/// File identity for change detection: modification time and length.
pub(crate) fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Announcer {
    pub fn new(opts: Options, metrics: Arc<Metrics>) -> Announcer {
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        Announcer {
            opts,
            metrics,
            plan: None,
            members: None,
            owners: Vec::new(),
            takeover_since: None,
            reannounce: false,
            announced: Default::default(),
            last_announcements: Vec::new(),
            service_interfaces: BTreeMap::new(),
            running: BTreeMap::new(),
            interfaces: Vec::new(),
            socket_errors: BTreeMap::new(),
            excludel2_stamp: None,
            outcomes,
            outcomes_rx,
            conflicts_reported: BTreeSet::new(),
            frr: None,
            warned_no_frr: false,
        }
    }

    /// Serves `source` until SIGTERM or SIGINT; with `cluster`, shares the addresses with
    /// the other speakers. The first plan must be had.
    pub async fn run(
        mut self,
        mut source: impl Source,
        cluster: Option<cluster::Options>,
        ready: Arc<Readiness>,
    ) -> anyhow::Result<()> {
        let mut cluster = match cluster {
            Some(opts) => {
                let labels =
                    if source.labels_in_heartbeats() { self.opts.node.labels.clone() } else { Default::default() };
                let me = Me { name: self.opts.node.name.clone(), labels };
                let c = ClusterThread::start(opts, me, self.metrics.clone(), self.outcomes.clone()).await?;
                self.members = Some(source.members(c.members()));
                Some(c)
            }
            None => None,
        };
        self.frr = self.opts.frr.clone().map(|o| Frr::start(o, self.metrics.clone(), ready.clone()));
        let new = self.set_plan(source.first_plan()?);
        if let Some(c) = &mut cluster {
            c.set_plan(self.plan_digest());
        }
        source.report(Outcome::Announced(new));
        ready.set_serving(true);
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(self.opts.tick);
        let mut links = LinkWatch::open();
        let mut last_statuses = None;
        loop {
            let new = tokio::select! {
                _ = links.changed() => {
                    let new = self.check_interfaces();
                    self.report_sockets(&ready);
                    ready.set_serving(self.healthy());
                    new
                }
                change = members_changed(&mut cluster) => {
                    let members = cluster.as_ref().map(|c| source.members(c.members())).unwrap_or_default();
                    self.set_members(members, change)
                }
                change = source.changed() => match change {
                    Change::Plan(plan) => {
                        let new = self.set_plan(plan);
                        if let Some(c) = &mut cluster {
                            c.set_plan(self.plan_digest());
                        }
                        new
                    }
                    Change::Members => match &cluster {
                        Some(c) => {
                            let members = source.members(c.members());
                            self.set_members(members, cluster::Change::default())
                        }
                        None => Vec::new(),
                    },
                    Change::Seeds(seeds) => {
                        if let Some(c) = &mut cluster {
                            c.set_seeds(seeds);
                        }
                        Vec::new()
                    }
                },
                _ = tick.tick() => {
                    let new = self.tick(links.available());
                    self.report_sockets(&ready);
                    ready.set_serving(self.healthy());
                    source.tick();
                    new
                }
                Some(outcome) = self.outcomes_rx.recv() => {
                    // One report per address, though each interface's responder sees it.
                    if let Outcome::Conflict(ip) = outcome
                        && !self.conflicts_reported.insert(ip)
                    {
                        continue;
                    }
                    source.report(outcome);
                    Vec::new()
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            };
            if !new.is_empty() {
                source.report(Outcome::Announced(new));
            }
            if last_statuses.as_ref() != Some(&self.service_interfaces) {
                last_statuses = Some(self.service_interfaces.clone());
                source.report(Outcome::Statuses(self.service_interfaces.clone()));
            }
        }
        // Stop answering first, then tell the others: no moment with two owners.
        self.stop();
        if let Some(c) = &mut cluster {
            c.leave().await;
            info!("left the cluster");
        }
        Ok(())
    }

    /// What this node announces: everything it may, or, in a cluster, its share.
    fn decide(&mut self) -> Vec<Announcement> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        let Some(members) = &self.members else {
            return plan.for_node(&self.opts.node);
        };
        let (owners, mine) = ownership::decide(plan, members, &self.opts.node.name);
        if self.owners.len() == owners.len() {
            let changed = owners.iter().zip(&self.owners).filter(|(a, b)| a != b).count();
            self.metrics.ownership_changes.inc_by(changed as u64);
        }
        if owners != self.owners {
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            info!(members = ?names, owned = mine.len(), addresses = owners.len(), "ownership decided");
        }
        self.owners = owners;
        mine
    }

    /// Takes a new plan (from a file or from the cluster's objects) and applies it.
    /// Returns the addresses this node started announcing.
    pub fn set_plan(&mut self, plan: Plan) -> Vec<Announcement> {
        self.plan = Some(plan);
        self.conflicts_reported.clear();
        self.owners.clear();
        let new = self.apply();
        self.announce_bgp();
        crate::sys::release_free_memory();
        new
    }

    /// Takes the cluster's live members (after `change`) and applies them.
    pub fn set_members(&mut self, members: Vec<Member>, change: cluster::Change) -> Vec<Announcement> {
        if change.lost {
            self.takeover_since = Some(std::time::Instant::now());
        }
        self.reannounce |= change.joined;
        self.members = Some(members);
        let new = self.apply();
        self.announce_bgp();
        new
    }

    /// Gives FRR this node's BGP configuration under the plan: every node an advertisement
    /// selects announces (no single owner as in layer 2). In a cluster, a node the members
    /// leave out (its network unavailable) announces nothing.
    fn announce_bgp(&mut self) {
        let Some(plan) = &self.plan else { return };
        let Some(frr) = &self.frr else {
            if plan.bgp.is_some() && !self.warned_no_frr {
                self.warned_no_frr = true;
                warn!("BGP objects are configured but no FRR is given (--frr-config): announcing over layer 2 only");
            }
            return;
        };
        let node = match &self.members {
            None => Some(self.opts.node.clone()),
            // Membership still forming (or lost): FRR keeps what it announces meanwhile.
            Some(members) if members.is_empty() => return,
            Some(members) => members
                .iter()
                .find(|m| m.name == self.opts.node.name)
                .map(|m| NodeInfo { name: m.name.clone(), labels: m.labels.clone() }),
        };
        let (peers, routes) = match (&plan.bgp, &node) {
            (Some(bgp), Some(node)) => (bgp.peers(node), bgp.routes(node)),
            _ => (Vec::new(), Vec::new()),
        };
        let (no_profiles, no_secrets) = (BTreeMap::new(), BTreeMap::new());
        let (bfd_profiles, secrets) = match &plan.bgp {
            Some(bgp) => (&bgp.config.bgp.bfd_profiles, &bgp.config.bgp.passwords.0),
            None => (&no_profiles, &no_secrets),
        };
        frr.want(frr_config::render(&FrrInput {
            hostname: &self.opts.node.name,
            router_id: None,
            peers: &peers,
            routes: &routes,
            bfd_profiles,
            secrets,
        }));
    }

    /// Re-reads the excludel2 file if it changed; an unreadable or invalid one is
    /// reported and the previous patterns stay.
    /// True if the exclusions changed.
    pub fn reload_exclusions(&mut self) -> bool {
        let Some(path) = self.opts.excludel2.clone() else { return false };
        let now = stamp(&path);
        if self.excludel2_stamp.is_some() && now == self.excludel2_stamp {
            return false;
        }
        self.excludel2_stamp = now;
        match Exclusions::load(&path) {
            Ok(e) if e != self.opts.exclude => {
                info!(patterns = ?e.patterns(), "interfaces excluded from announcements");
                self.opts.exclude = e;
                true
            }
            Ok(_) => false,
            Err(e) => {
                error!(error = %e, "cannot read the interface exclusions; the previous ones stay");
                false
            }
        }
    }

    /// The periodic tick: picks up a changed excludel2 file and retries sockets that
    /// could not be opened; without netlink events, also re-reads the interfaces.
    pub fn tick(&mut self, has_link_events: bool) -> Vec<Announcement> {
        if self.reload_exclusions() || !self.socket_errors.is_empty() || !has_link_events {
            return self.check_interfaces();
        }
        Vec::new()
    }

    /// The interfaces to answer on for `announcements`: the default set, and those an
    /// L2Advertisement names (whatever the exclusions say). The flag says whether the
    /// interface is in the default set.
    fn wanted_interfaces(&self, announcements: &[Announcement]) -> Vec<(Interface, bool)> {
        let links = interfaces::links();
        let mut out: Vec<(Interface, bool)> =
            interfaces::select(&links, &self.opts.exclude).into_iter().map(|i| (i, true)).collect();
        let named: std::collections::BTreeSet<&String> =
            announcements.iter().filter_map(|a| a.interfaces.as_ref()).flatten().collect();
        for name in named {
            if !out.iter().any(|(i, _)| &i.name == name)
                && let Some(i) = interfaces::named(&links, name)
            {
                out.push((i, false));
            }
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    /// Re-applies if the interfaces to answer on changed (a netlink event says something
    /// did), or to retry sockets that could not be opened.
    pub fn check_interfaces(&mut self) -> Vec<Announcement> {
        let last: Vec<Announcement> = self.last_announcements.clone();
        let now: Vec<Interface> = self.wanted_interfaces(&last).into_iter().map(|(i, _)| i).collect();
        if now != self.interfaces {
            info!(interfaces = ?now.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), "interfaces changed");
            return self.apply();
        }
        if !self.socket_errors.is_empty() {
            return self.apply();
        }
        Vec::new()
    }

    /// Reports sockets that could not be opened as what the speaker waits for.
    pub fn report_sockets(&self, ready: &Readiness) {
        for (iface, err) in &self.socket_errors {
            if ready.wait_for(&format!("packet sockets on {iface}"), err.clone()) {
                warn!(interface = %iface, error = %err, "cannot open packet sockets; retrying, not Ready until it works");
            }
        }
        for r in self.running.keys() {
            if ready.done(&format!("packet sockets on {r}")) {
                info!(interface = %r, "packet sockets open");
            }
        }
    }

    /// The digest of the current plan, for comparing with the other members.
    pub fn plan_digest(&self) -> u64 {
        self.plan.as_ref().map_or(0, crate::cluster::membership::plan_digest)
    }

    /// Stops answering on every interface at once.
    pub fn stop(&mut self) {
        info!("stopping: no longer answering");
        for r in self.running.values() {
            r.task.abort();
        }
        self.running.clear();
    }

    /// Brings the responders in line with the configuration, the cluster and the
    /// interfaces present. Returns the addresses this node started announcing.
    fn apply(&mut self) -> Vec<Announcement> {
        if self.plan.is_none() {
            return Vec::new();
        }
        let announcements = self.decide();
        let takeover_since = self.takeover_since.take();
        let reannounce = std::mem::take(&mut self.reannounce);
        let wanted = self.wanted_interfaces(&announcements);
        self.interfaces = wanted.iter().map(|(i, _)| i.clone()).collect();
        let mut per_iface: BTreeMap<String, Vec<IpAddr>> =
            self.interfaces.iter().map(|i| (i.name.clone(), Vec::new())).collect();
        for a in &announcements {
            match &a.interfaces {
                None => {
                    for (i, _) in wanted.iter().filter(|(_, default)| *default) {
                        per_iface.entry(i.name.clone()).or_default().push(a.ip);
                    }
                }
                Some(names) => {
                    for n in names {
                        match per_iface.get_mut(n) {
                            Some(v) => v.push(a.ip),
                            None => {
                                warn!(interface = %n, ip = %a.ip, "interface named by an L2Advertisement is missing, down, NOARP or not Ethernet: not answered here")
                            }
                        }
                    }
                }
            }
        }
        // Interfaces that went away: stop their responders.
        self.running.retain(|name, r| {
            let keep = self.interfaces.iter().any(|i| i == &r.iface);
            if !keep {
                info!(interface = %name, "interface gone, changed or no longer selected; responder stopped");
                r.task.abort();
            }
            keep
        });
        self.socket_errors.retain(|name, _| per_iface.get(name).is_some_and(|ips| !ips.is_empty()));
        for iface in &self.interfaces {
            let ips = per_iface.remove(&iface.name).unwrap_or_default();
            let mut table = InterfaceTable::new(ips, &self.metrics);
            table.takeover_since = takeover_since;
            table.reannounce = reannounce;
            let families = Families::of(&table);
            let table = Arc::new(table);
            if let Some(r) = self.running.get(&iface.name) {
                // Sockets only for the families answered: none at all once nothing is.
                if r.families == families {
                    r.tables.send_replace(table);
                    continue;
                }
                r.task.abort();
                self.running.remove(&iface.name);
            }
            if table.vips.is_empty() {
                continue;
            }
            match Responder::open(
                iface.clone(),
                families,
                self.opts.policy,
                self.metrics.clone(),
                self.outcomes.clone(),
            ) {
                Ok(responder) => {
                    self.socket_errors.remove(&iface.name);
                    let (tx, rx) = watch::channel(table);
                    let task = tokio::spawn(responder.run(rx));
                    self.running
                        .insert(iface.name.clone(), Running { iface: iface.clone(), families, tables: tx, task });
                }
                Err(e) => {
                    let why = match e.raw_os_error() {
                        Some(libc::EPERM) => format!("{e} (the speaker needs CAP_NET_RAW)"),
                        _ => e.to_string(),
                    };
                    if self.socket_errors.insert(iface.name.clone(), why.clone()).is_none() {
                        error!(interface = %iface.name, error = %why, "cannot open packet sockets; retrying");
                    }
                }
            }
        }
        self.metrics.announced.clear();
        let node = SharedValue(self.opts.node.name.as_str().into());
        for a in &announcements {
            for svc in &a.services {
                let labels =
                    AnnouncedLabels { ip: IpValue(a.ip), node: node.clone(), protocol: "layer2", service: svc.clone() };
                self.metrics.announced.get_or_create(&labels).set(1);
            }
        }
        self.metrics.vips.set(announcements.len() as i64);
        info!(addresses = announcements.len(), interfaces = self.running.len(), "configuration applied");
        self.service_interfaces.clear();
        for a in &announcements {
            let on: Vec<String> = match &a.interfaces {
                None => self.running.keys().cloned().collect(),
                Some(names) => names.iter().filter(|n| self.running.contains_key(*n)).cloned().collect(),
            };
            for svc in &a.services {
                self.service_interfaces.entry(svc.clone()).or_default().extend(on.iter().cloned());
            }
        }
        let new: Vec<Announcement> =
            announcements.iter().filter(|a| !self.announced.contains(&a.ip)).cloned().collect();
        self.announced = announcements.iter().map(|a| a.ip).collect();
        self.last_announcements = announcements;
        new
    }

    /// Whether every responder that should run is running.
    pub fn healthy(&self) -> bool {
        self.socket_errors.is_empty() && self.running.values().all(|r| !r.task.is_finished())
    }
}

async fn members_changed(cluster: &mut Option<ClusterThread>) -> cluster::Change {
    match cluster {
        Some(c) => c.changed().await,
        None => std::future::pending().await,
    }
}

/// Link changes from netlink, settled for a moment so that a burst (a pod's veth being
/// created, renamed, moved and brought up) costs one re-read. Without a netlink socket
/// (it failed to open), never fires: the tick polls instead.
#[derive(Debug)]
pub struct LinkWatch {
    events: Option<tokio::io::unix::AsyncFd<crate::sys::LinkEvents>>,
    due: Option<tokio::time::Instant>,
}

impl LinkWatch {
    const SETTLE: Duration = Duration::from_millis(100);

    pub fn open() -> LinkWatch {
        let events = crate::sys::LinkEvents::open()
            .map_err(|e| warn!(error = %e, "no netlink link events; polling the interfaces instead"))
            .ok();
        LinkWatch { events, due: None }
    }

    pub fn available(&self) -> bool {
        self.events.is_some()
    }

    /// Resolves once links changed and then were quiet for [`Self::SETTLE`].
    pub async fn changed(&mut self) {
        loop {
            let due = self.due;
            tokio::select! {
                ready = async {
                    match &self.events {
                        Some(e) => e.readable().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Ok(mut guard) = ready {
                        if guard.get_inner().drain() && self.due.is_none() {
                            self.due = Some(tokio::time::Instant::now() + Self::SETTLE);
                        }
                        guard.clear_ready();
                    }
                }
                _ = async {
                    match due {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.due = None;
                    return;
                }
            }
        }
    }
}
