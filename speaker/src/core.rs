//! The speaker's core, which both configuration sources feed: a plan (what may be
//! announced) and the live members go in; ownership decides this node's share; the data
//! plane answers for it on the interfaces chosen. The file source (`standalone`) and the
//! Kubernetes source (`k8s`) only produce plans and run the loop around this.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrolb_model::config::{Announcement, NodeInfo, Plan};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::cluster;
use crate::cluster::membership::Member;
use crate::dataplane::{AnnouncePolicy, Families, InterfaceTable, Responder};
use crate::interfaces::{self, Exclusions, Interface};
use crate::metrics::{AnnouncedLabels, IpValue, Metrics, SharedValue};
use ferrolb_model::ownership;

#[derive(Debug, Clone)]
pub struct Options {
    pub node: NodeInfo,
    pub policy: AnnouncePolicy,
    /// Interface names not announced on unless an L2Advertisement names them.
    pub exclude: Exclusions,
    /// MetalLB's `metallb-excludel2` ConfigMap as mounted; read again when it changes
    /// (it replaces `exclude`). `None`: `exclude` alone.
    pub excludel2: Option<PathBuf>,
}

struct Running {
    iface: Interface,
    families: Families,
    tables: watch::Sender<Arc<InterfaceTable>>,
    task: JoinHandle<()>,
}

/// The speaker's state between reloads.
pub struct Speaker {
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
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speaker").field("opts", &self.opts).finish_non_exhaustive()
    }
}

/// File identity for change detection: modification time and length.
pub(crate) fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Speaker {
    pub fn new(opts: Options, metrics: Arc<Metrics>) -> Speaker {
        Speaker {
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
        }
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
        self.owners.clear();
        let new = self.apply();
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
        self.apply()
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
    pub fn report_sockets(&self, ready: &ferrolb_runtime::Readiness) {
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

    /// Per Service (`namespace/name`) this node announces, the interfaces it answers on.
    pub fn service_interfaces(&self) -> &BTreeMap<String, std::collections::BTreeSet<String>> {
        &self.service_interfaces
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
            match Responder::open(iface.clone(), families, self.opts.policy, self.metrics.clone()) {
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
