//! Kubernetes mode: what to announce comes from the cluster's objects instead of a file.
//! The controller assigns addresses (Service status); the speakers agree among themselves
//! who answers for each ([`crate::cluster`]), with MetalLB's eligibility rules: a node
//! selected by an L2Advertisement, not excluded by label, without `NetworkUnavailable`,
//! and, for `externalTrafficPolicy: Local`, with a ready endpoint of the Service.
//!
//! [`plan`] and [`strict_arp_problem`] are pure; [`run`] is the watches around them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrolb_model::api::{
    self, IPAddressPool, InterfaceInfo, L2Advertisement, LoadBalancerService, MetalLBServiceL2Status, ServiceL2Status,
};
use ferrolb_model::config::{self, Announcement, Config, Plan, ServiceAddresses};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::cluster::membership::{Me, Member};
use crate::cluster::{self, ClusterThread};
use ferrolb_runtime::events::event_note;
use ferrolb_runtime::{trim, watch};

use crate::core::{Options as SpeakerOptions, Speaker};
use crate::metrics::Metrics;
use ferrolb_runtime::Readiness;

/// Label of the EndpointSlices of a Service.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Every address the controller assigned (Services' status) that an L2Advertisement
/// covers, with who may announce it.
pub fn plan(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    pools: &[Arc<IPAddressPool>],
    advertisements: &[Arc<L2Advertisement>],
    namespace: &str,
    lb_class: Option<&str>,
) -> Plan {
    let in_ns = |ns: Option<&String>| ns.map(String::as_str) == Some(namespace);
    // Invalid pools are the controller's to report, and it keeps serving their last valid
    // version; here an edit gone wrong must not stop what they hold from being answered.
    // An address belongs to the pool the controller says it came from (its annotation);
    // without one, to the first pool containing it, valid pools first, by name. Invalid
    // pools count with the ranges that parse. All of it is the same on every speaker,
    // which a remembered last good version would not be after a restart.
    let mut pools: Vec<(bool, config::Pool)> = pools
        .iter()
        .filter(|p| in_ns(p.metadata.namespace.as_ref()))
        .map(|p| {
            let (pool, issues) = config::pool_from_api("", p);
            (!issues.is_empty(), pool)
        })
        .collect();
    pools.sort_by(|(a_bad, a), (b_bad, b)| (a_bad, &a.name).cmp(&(b_bad, &b.name)));
    let pools: Vec<config::Pool> = pools.into_iter().map(|(_, p)| p).collect();
    let l2_advertisements: Vec<L2Advertisement> =
        advertisements.iter().filter(|a| in_ns(a.metadata.namespace.as_ref())).map(|a| (**a).clone()).collect();
    let services: Vec<LoadBalancerService> = services
        .iter()
        .map(|s| LoadBalancerService::from(&**s))
        .filter(|s| s.is_load_balancer() && s.load_balancer_class.as_deref() == lb_class && !s.ingress_ips.is_empty())
        .collect();
    let mut assigned = Vec::new();
    for svc in &services {
        let mut by_pool: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
        let allocated_from = svc.annotations.get(api::ANNOTATION_ALLOCATED_FROM_POOL);
        for ip in &svc.ingress_ips {
            let pool = pools
                .iter()
                .find(|p| Some(&p.name) == allocated_from)
                .or_else(|| pools.iter().find(|p| p.contains(*ip)));
            if let Some(pool) = pool {
                by_pool.entry(&pool.name).or_default().push(*ip);
            }
        }
        for (pool, addresses) in by_pool {
            assigned.push(ServiceAddresses { service: svc.key(), pool: pool.to_string(), addresses });
        }
    }
    let config = Config { pools, l2_advertisements, services, ..Config::default() };
    let mut plan = Plan::new(&config, &assigned);
    let services = config.services;

    // Nodes with a ready endpoint, per Service.
    let mut ready: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut any_ready: BTreeSet<String> = BTreeSet::new();
    for slice in slices {
        let Some(name) = slice.labels().get(LABEL_SERVICE_NAME) else { continue };
        let key = format!("{}/{name}", slice.namespace().unwrap_or_default());
        for ep in &slice.endpoints {
            // Ready unless said otherwise (the API's own rule).
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            any_ready.insert(key.clone());
            if let Some(node) = &ep.node_name {
                ready.entry(key.clone()).or_default().insert(node.clone());
            }
        }
    }
    let local: BTreeSet<String> = services
        .iter()
        .filter(|s| s.external_traffic_policy.as_deref() == Some("Local"))
        .map(LoadBalancerService::key)
        .collect();
    for c in &mut plan.candidates {
        if c.services.iter().any(|s| local.contains(s)) {
            // Services sharing an address under Local select the same pods.
            c.only_nodes = Some(c.services.iter().flat_map(|s| ready.get(s).into_iter().flatten().cloned()).collect());
        } else if !c.services.iter().any(|s| any_ready.contains(s)) {
            c.only_nodes = Some(BTreeSet::new());
        }
    }
    plan
}

/// The live members as the cluster's Node objects describe them: labels from the Node,
/// and nodes whose network is down (`NetworkUnavailable`) left out.
pub fn members_with_nodes(members: &[Member], nodes: &[Arc<Node>]) -> Vec<Member> {
    let by_name: HashMap<String, &Node> = nodes.iter().map(|n| (n.name_any(), &**n)).collect();
    members
        .iter()
        .filter_map(|m| {
            let Some(node) = by_name.get(&m.name) else {
                return Some(m.clone());
            };
            let unavailable = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "NetworkUnavailable" && c.status == "True"));
            (!unavailable).then(|| Member { labels: node.labels().clone(), ..m.clone() })
        })
        .collect()
}

/// Labels of the ServiceL2Status objects (MetalLB's).
pub const LABEL_STATUS_NODE: &str = "metallb.io/node";
const LABEL_STATUS_SERVICE_NAME: &str = "metallb.io/service-name";
const LABEL_STATUS_SERVICE_NAMESPACE: &str = "metallb.io/service-namespace";

/// The ServiceL2Status objects `node` should have: one per Service it announces, named
/// from a hash of node and Service (stable, so writes are idempotent), owned by the
/// speaker Pod (`owner`) as MetalLB's are, so that deleting the Pod deletes them.
pub fn l2_statuses(
    node: &str,
    namespace: &str,
    owner: Option<&OwnerReference>,
    announced: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, ServiceL2Status> {
    announced
        .iter()
        .filter_map(|(key, interfaces)| {
            let (svc_ns, svc_name) = key.split_once('/')?;
            let hash = blake3::hash(format!("{node}/{key}").as_bytes()).to_hex();
            let name = format!("l2-{}", &hash[..20]);
            let mut status = ServiceL2Status::new(&name, Default::default());
            status.metadata.namespace = Some(namespace.into());
            status.metadata.owner_references = owner.map(|o| vec![o.clone()]);
            status.metadata.labels = Some(
                [
                    (LABEL_STATUS_NODE.to_string(), node.to_string()),
                    (LABEL_STATUS_SERVICE_NAME.to_string(), svc_name.to_string()),
                    (LABEL_STATUS_SERVICE_NAMESPACE.to_string(), svc_ns.to_string()),
                ]
                .into(),
            );
            status.status = Some(MetalLBServiceL2Status {
                node: node.into(),
                service_name: svc_name.into(),
                service_namespace: svc_ns.into(),
                interfaces: interfaces.iter().map(|n| InterfaceInfo { name: n.clone() }).collect(),
            });
            Some((name, status))
        })
        .collect()
}

/// Which existing ServiceL2Status objects `node` deletes: its own that `desired` no longer
/// has, and other nodes' for the Services it now announces (their node died or gave the
/// Service up; MetalLB's new owner does the same), so that exactly the current owner is
/// named.
pub fn stale_l2_statuses<'a>(
    node: &str,
    existing: &'a [ServiceL2Status],
    desired: &BTreeMap<String, ServiceL2Status>,
) -> Vec<&'a str> {
    let service = |o: &ServiceL2Status| {
        let labels = o.metadata.labels.as_ref();
        let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
        (get(LABEL_STATUS_SERVICE_NAMESPACE), get(LABEL_STATUS_SERVICE_NAME))
    };
    let announced: BTreeSet<(String, String)> = desired.values().map(service).collect();
    existing
        .iter()
        .filter(|o| {
            let owner = o.metadata.labels.as_ref().and_then(|l| l.get(LABEL_STATUS_NODE));
            if owner.map(String::as_str) == Some(node) {
                !desired.contains_key(o.metadata.name.as_deref().unwrap_or_default())
            } else {
                announced.contains(&service(o))
            }
        })
        .filter_map(|o| o.metadata.name.as_deref())
        .collect()
}

/// Brings the ServiceL2Status objects in line with `desired`: applies each (object, then
/// status) and deletes the stale ones ([`stale_l2_statuses`]).
async fn sync_l2_statuses(
    api: &Api<ServiceL2Status>,
    node: &str,
    desired: &BTreeMap<String, ServiceL2Status>,
) -> Result<(), kube::Error> {
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
    let existing = api.list(&ListParams::default()).await?;
    for old in stale_l2_statuses(node, &existing.items, desired) {
        match api.delete(old, &DeleteParams::default()).await {
            Ok(_) => {}
            // Another speaker was first.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let pp = PatchParams::apply("ferrolb-speaker").force();
    for (name, obj) in desired {
        let current = existing.items.iter().find(|o| &o.name_any() == name);
        if current.is_some_and(|c| c.status == obj.status) {
            continue;
        }
        let mut meta_only = obj.clone();
        meta_only.status = None;
        api.patch(name, &pp, &Patch::Apply(&meta_only)).await?;
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(serde_json::json!({ "status": obj.status })))
            .await?;
    }
    Ok(())
}

/// kube-proxy in IPVS mode without `strictARP: true` makes every node answer ARP for
/// every LoadBalancer address: MetalLB's most asked support question. `config` is the
/// `config.conf` key of kube-system/kube-proxy.
pub fn strict_arp_problem(config: &str) -> Option<String> {
    let v: serde_yaml::Value = serde_yaml::from_str(config).ok()?;
    let ipvs = v.get("mode").and_then(|m| m.as_str()) == Some("ipvs");
    let strict = v.get("ipvs").and_then(|i| i.get("strictARP")).and_then(serde_yaml::Value::as_bool) == Some(true);
    (ipvs && !strict).then(|| {
        "kube-proxy runs in IPVS mode without strictARP: every node answers ARP for LoadBalancer addresses. \
         Set ipvs.strictARP: true in the kube-system/kube-proxy ConfigMap and restart kube-proxy"
            .to_string()
    })
}

#[derive(Debug, Clone)]
pub struct Options {
    pub node_name: String,
    pub namespace: String,
    pub lb_class: Option<String>,
    /// This node's address for membership (the pod IP on the host network).
    pub bind: SocketAddr,
    pub key_file: std::path::PathBuf,
    pub settings: cluster::membership::Settings,
    pub policy: crate::dataplane::AnnouncePolicy,
    /// Label selector of the speaker pods (the membership peers).
    pub speaker_selector: String,
    /// This speaker's Pod, the owner of its ServiceL2Status objects.
    pub pod: Option<OwnerReference>,
    /// MetalLB's `metallb-excludel2` ConfigMap, mounted (MetalLB's defaults without it).
    pub excludel2: std::path::PathBuf,
}

/// The owner reference to a speaker Pod from its name and uid (downward API).
pub fn pod_owner(name: Option<String>, uid: Option<String>) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.filter(|n| !n.is_empty())?,
        uid: uid.filter(|u| !u.is_empty())?,
        ..OwnerReference::default()
    })
}

/// Object changes are planned this long after the first of a burst, once for all of it.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Selects LoadBalancer Services on the API server where it can: `spec.type` is a field
/// selector for Services only from Kubernetes 1.31 on; older API servers answer 400, and
/// then every Service is watched and the others trimmed to nearly nothing here. Asks until
/// the API server answers either way (a denial says nothing about the selector).
async fn load_balancer_services(client: &Client, readiness: &Readiness) -> watcher::Config {
    const WHAT: &str = "the services watch";
    let cfg = watcher::Config::default();
    let selector = "spec.type=LoadBalancer";
    let probe = kube::api::ListParams::default().fields(selector).limit(1);
    let mut pause = Duration::from_millis(500);
    loop {
        match Api::<Service>::all(client.clone()).list_metadata(&probe).await {
            Ok(_) => {
                readiness.done(WHAT);
                return cfg.fields(selector);
            }
            Err(kube::Error::Api(s)) if s.code == 400 => {
                readiness.done(WHAT);
                info!(reason = %s.message, "the API server cannot select Services by spec.type (before Kubernetes 1.31): filtering here");
                return cfg;
            }
            Err(e) => {
                if readiness.wait_for(WHAT, e.to_string()) {
                    warn!(watch = WHAT, error = %e, "cannot list or watch; retrying, not Ready until it works");
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

fn service_ref(services: &Store<Service>, key: &str) -> Option<ObjectReference> {
    let (ns, name) = key.split_once('/')?;
    let svc =
        services.state().into_iter().find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.name_any() == name)?;
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: svc.metadata.uid.clone(),
        ..ObjectReference::default()
    })
}

/// Waits until the membership key file can be read. The Secret volume is optional, so
/// the Pod starts before the controller has created the Secret; the kubelet fills the
/// volume in later.
async fn wait_for_key_file(path: &std::path::Path, readiness: &Readiness) {
    const WHAT: &str = "the membership key";
    loop {
        match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|k| cluster::wire::Keyring::parse(&k).map(|_| ()).map_err(|e| e.to_string()))
        {
            Ok(()) => {
                if readiness.done(WHAT) {
                    info!(file = %path.display(), "membership key found");
                }
                return;
            }
            Err(e) => {
                let why = format!(
                    "{}: {e} (the controller creates Secret {} on its first start)",
                    path.display(),
                    ferrolb_runtime::MEMBERLIST_SECRET
                );
                if readiness.wait_for(WHAT, why.clone()) {
                    warn!("waiting for {WHAT}: {why}");
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Serves until SIGTERM or SIGINT, with the in-cluster configuration (or kubeconfig).
pub async fn run(opts: Options, metrics: Arc<Metrics>, ready: Arc<Readiness>) -> anyhow::Result<()> {
    let client = Client::try_default().await.context("no Kubernetes configuration (in-cluster or kubeconfig)")?;
    run_with(client, opts, metrics, ready).await
}

/// [`run`] with a given client (the tests' mock API server).
pub async fn run_with(
    client: Client,
    opts: Options,
    metrics: Arc<Metrics>,
    ready: Arc<Readiness>,
) -> anyhow::Result<()> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: "ferrolb-speaker".into(), instance: Some(opts.node_name.clone()) },
    );

    let objects = Arc::new(Notify::new());
    let nodes_changed = Arc::new(Notify::new());
    let pods_changed = Arc::new(Notify::new());
    let all = watcher::Config::default();
    let services = watch::store(
        Api::<Service>::all(client.clone()),
        load_balancer_services(&client, &ready).await,
        trim::service_for_speaker,
        objects.clone(),
        ready.clone(),
    );
    let slices = watch::store(
        Api::<EndpointSlice>::all(client.clone()),
        all.clone().labels(LABEL_SERVICE_NAME).page_size(100),
        trim::slice,
        objects.clone(),
        ready.clone(),
    );
    let pools = watch::store(
        Api::<IPAddressPool>::namespaced(client.clone(), &opts.namespace),
        all.clone(),
        trim::meta,
        objects.clone(),
        ready.clone(),
    );
    let advs = watch::store(
        Api::<L2Advertisement>::namespaced(client.clone(), &opts.namespace),
        all.clone(),
        trim::meta,
        objects.clone(),
        ready.clone(),
    );
    // Small list pages: a Node is tens of kilobytes before it is trimmed.
    let nodes = watch::store(
        Api::<Node>::all(client.clone()),
        all.clone().page_size(50),
        trim::node,
        nodes_changed.clone(),
        ready.clone(),
    );
    let pods = watch::store(
        Api::<Pod>::namespaced(client.clone(), &opts.namespace),
        all.labels(&opts.speaker_selector),
        trim::pod,
        pods_changed.clone(),
        ready.clone(),
    );
    tokio::spawn(watch_kube_proxy(
        Api::namespaced(client.clone(), "kube-system"),
        recorder.clone(),
        opts.node_name.clone(),
        Api::all(client.clone()),
        metrics.clone(),
    ));
    let _ = tokio::join!(
        services.wait_until_ready(),
        slices.wait_until_ready(),
        pools.wait_until_ready(),
        advs.wait_until_ready(),
        nodes.wait_until_ready(),
        pods.wait_until_ready()
    );
    info!("initial lists complete");

    // No labels in heartbeats: every speaker reads each member's labels from its Node
    // (`members_with_nodes`), and Node Feature Discovery or the GPU operator give nodes
    // kilobytes of them, which would not fit a datagram.
    let me = Me { name: opts.node_name.clone(), labels: Default::default() };
    let port = opts.bind.port();
    let seeds = |pods: &Store<Pod>| -> Vec<SocketAddr> {
        pods.state()
            .iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, port))
            .collect()
    };
    wait_for_key_file(&opts.key_file, &ready).await;
    let cluster_opts = cluster::Options {
        bind: opts.bind,
        join: seeds(&pods),
        key_file: opts.key_file.clone(),
        settings: opts.settings,
    };
    let mut cluster = ClusterThread::start(cluster_opts, me, metrics.clone()).await?;

    let node = config::NodeInfo::new(&opts.node_name);
    let speaker_opts = SpeakerOptions {
        node,
        policy: opts.policy,
        exclude: Default::default(),
        excludel2: Some(opts.excludel2.clone()),
    };
    let mut speaker = Speaker::new(speaker_opts, metrics.clone());
    let plan_now = || {
        plan(
            &services.state(),
            &slices.state(),
            &pools.state(),
            &advs.state(),
            &opts.namespace,
            opts.lb_class.as_deref(),
        )
    };
    speaker.set_members(members_with_nodes(cluster.members(), &nodes.state()), cluster::Change::default());
    // Events and ServiceL2Status go through their own task: a slow API server must never
    // hold up the heartbeats (the others would take this node for dead).
    let (report, reports) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(reporter(
        reports,
        ReportTo {
            recorder,
            services: services.clone(),
            statuses: Api::namespaced(client.clone(), &opts.namespace),
            nodes: Api::all(client.clone()),
            node: opts.node_name.clone(),
            namespace: opts.namespace.clone(),
            owner: opts.pod.clone(),
        },
    ));
    let new = speaker.set_plan(plan_now());
    cluster.set_plan(speaker.plan_digest());
    let _ = report.send(Report::Announced(new));
    ready.set_serving(true);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let mut last_statuses = None;
    let mut plan_due: Option<tokio::time::Instant> = None;
    let mut links = crate::core::LinkWatch::open();
    loop {
        let new = tokio::select! {
            _ = links.changed() => {
                let new = speaker.check_interfaces();
                speaker.report_sockets(&ready);
                ready.set_serving(speaker.healthy());
                new
            }
            change = cluster.changed() => {
                speaker.set_members(members_with_nodes(cluster.members(), &nodes.state()), change)
            }
            _ = objects.notified() => {
                // A burst of changes is planned once, when it has settled; the loop stays
                // free for link, member and signal events meanwhile.
                plan_due.get_or_insert_with(|| tokio::time::Instant::now() + DEBOUNCE);
                Vec::new()
            }
            _ = async { tokio::time::sleep_until(plan_due.unwrap_or_else(tokio::time::Instant::now)).await }, if plan_due.is_some() => {
                plan_due = None;
                let new = speaker.set_plan(plan_now());
                cluster.set_plan(speaker.plan_digest());
                new
            }
            _ = nodes_changed.notified() => {
                speaker.set_members(members_with_nodes(cluster.members(), &nodes.state()), cluster::Change::default())
            }
            _ = pods_changed.notified() => {
                cluster.set_seeds(seeds(&pods));
                Vec::new()
            }
            _ = poll.tick() => {
                let new = speaker.tick(links.available());
                speaker.report_sockets(&ready);
                ready.set_serving(speaker.healthy());
                let conflicts = std::mem::take(&mut *metrics.new_conflicts.lock().unwrap_or_else(|e| e.into_inner()));
                if !conflicts.is_empty() {
                    let _ = report.send(Report::Conflicts(conflicts));
                }
                let problems = std::mem::take(&mut *metrics.new_membership_problems.lock().unwrap_or_else(|e| e.into_inner()));
                if !problems.is_empty() {
                    let _ = report.send(Report::Membership(problems));
                }
                // Also a retry tick for status writes that failed.
                let _ = report.send(Report::Retry);
                new
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if !new.is_empty() {
            let _ = report.send(Report::Announced(new));
        }
        let statuses = speaker.service_interfaces().clone();
        if last_statuses.as_ref() != Some(&statuses) {
            let _ = report.send(Report::Statuses(statuses.clone()));
            last_statuses = Some(statuses);
        }
    }
    speaker.stop();
    cluster.leave().await;
    info!("left the cluster");
    Ok(())
}

/// What the main loop hands to the [`reporter`] task.
#[derive(Debug)]
enum Report {
    Announced(Vec<Announcement>),
    Conflicts(BTreeSet<IpAddr>),
    /// Membership misconfigurations (Event reason, message), for Warning Events on the Node.
    Membership(Vec<(&'static str, String)>),
    /// Per Service this node announces, its interfaces: the ServiceL2Status objects to keep.
    Statuses(BTreeMap<String, BTreeSet<String>>),
    /// Try again what failed.
    Retry,
}

/// Writes Events and ServiceL2Status objects, apart from the loop that answers and
/// keeps the membership.
struct ReportTo {
    recorder: Recorder,
    services: Store<Service>,
    statuses: Api<ServiceL2Status>,
    nodes: Api<Node>,
    node: String,
    namespace: String,
    owner: Option<OwnerReference>,
}

async fn reporter(mut reports: tokio::sync::mpsc::UnboundedReceiver<Report>, to: ReportTo) {
    let ReportTo { recorder, services, statuses, nodes, node, namespace, owner } = to;
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // None: not yet in line with the API (forces the first sync, and retries after errors).
    let mut synced: Option<BTreeMap<String, BTreeSet<String>>> = None;
    while let Some(report) = reports.recv().await {
        match report {
            Report::Announced(new) => announce_events(&recorder, &services, &node, new).await,
            Report::Conflicts(ips) => conflict_events(&recorder, &services, &node, ips).await,
            Report::Membership(problems) => {
                let reference = node_reference(&nodes, &node).await;
                for (reason, note) in problems {
                    let event = Event {
                        type_: EventType::Warning,
                        reason: reason.into(),
                        note: Some(event_note(note)),
                        action: "Join".into(),
                        secondary: None,
                    };
                    if let Err(e) = recorder.publish(&event, &reference).await {
                        warn!(error = %e, "event not published");
                    }
                }
            }
            Report::Statuses(s) => wanted = s,
            Report::Retry => {}
        }
        if synced.as_ref() != Some(&wanted) {
            let desired = l2_statuses(&node, &namespace, owner.as_ref(), &wanted);
            match sync_l2_statuses(&statuses, &node, &desired).await {
                Ok(()) => synced = Some(wanted.clone()),
                Err(e) => {
                    warn!(error = %e, "ServiceL2Status not written; retrying");
                    synced = None;
                }
            }
        }
    }
}

/// One Event per Service when this node starts announcing its addresses: transitions
/// only, not a storm each round (a known complaint about MetalLB's `nodeAssigned`). A
/// dual-stack Service gets one Event naming both addresses (two with the same reason
/// would fold into one series and hide the second).
async fn announce_events(recorder: &Recorder, services: &Store<Service>, node: &str, new: Vec<Announcement>) {
    let mut by_service: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for a in new {
        for svc in a.services {
            by_service.entry(svc).or_default().push(a.ip);
        }
    }
    for (svc, ips) in by_service {
        let Some(reference) = service_ref(services, &svc) else { continue };
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        let event = Event {
            type_: EventType::Normal,
            reason: "nodeAssigned".into(),
            note: Some(event_note(format!(
                "announcing {} from node {node:?} with protocol \"layer2\"",
                ips.join(", ")
            ))),
            action: "Announce".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(service = %svc, error = %e, "event not published");
        }
    }
}

/// A Warning Event on each Service of an address another host announces: a split brain
/// or a rogue device made visible where users look.
async fn conflict_events(recorder: &Recorder, services: &Store<Service>, node: &str, ips: BTreeSet<IpAddr>) {
    for ip in ips {
        let owners: Vec<String> = services
            .state()
            .iter()
            .filter(|s| LoadBalancerService::from(&***s).ingress_ips.contains(&ip))
            .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
            .collect();
        for svc in owners {
            let Some(reference) = service_ref(services, &svc) else { continue };
            let event = Event {
                type_: EventType::Warning,
                reason: "AddressConflict".into(),
                note: Some(event_note(format!(
                    "another host announces {ip}, which node {node:?} owns: a split brain between speakers or a device using the address"
                ))),
                action: "Announce".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                warn!(service = %svc, error = %e, "event not published");
            }
        }
    }
}

/// This node's Node as an Event's subject. With the uid, or `kubectl describe node` does
/// not show the Event (asked for here: this may come before the Nodes' store has listed).
async fn node_reference(nodes: &Api<Node>, node: &str) -> ObjectReference {
    let uid = nodes.get_opt(node).await.ok().flatten().and_then(|n| n.metadata.uid);
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.to_string()),
        uid,
        ..ObjectReference::default()
    }
}

/// Watches kube-system/kube-proxy, since strictARP is often fixed (or lost, with a
/// kube-proxy upgrade) while the speakers run. Reports on transitions only: an error, the
/// metric and a Warning Event on this Node when the problem appears, a log line when it
/// is gone. Without that ConfigMap (K3s, a kube-proxy replacement) there is nothing to
/// check; without permission the watch retries quietly with back-off.
async fn watch_kube_proxy(
    api: Api<ConfigMap>,
    recorder: Recorder,
    node: String,
    nodes: Api<Node>,
    metrics: Arc<Metrics>,
) {
    let cfg = watcher::Config::default().fields("metadata.name=kube-proxy");
    let mut events = std::pin::pin!(watcher(api, cfg).default_backoff());
    let mut problem: Option<String> = None;
    // A re-list (after a lost watch) that no longer finds the ConfigMap means it is gone.
    let mut listed = false;
    while let Some(event) = events.next().await {
        let now = match event {
            Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                listed = true;
                cm.data.as_ref().and_then(|d| d.get("config.conf")).and_then(|c| strict_arp_problem(c))
            }
            Ok(watcher::Event::Delete(_)) => None,
            Ok(watcher::Event::Init) => {
                listed = false;
                continue;
            }
            Ok(watcher::Event::InitDone) if !listed => None,
            Ok(watcher::Event::InitDone) => continue,
            Err(e) => {
                debug!(error = %e, "cannot watch kube-system/kube-proxy");
                continue;
            }
        };
        if now == problem {
            continue;
        }
        metrics.strict_arp_missing.set(i64::from(now.is_some()));
        match &now {
            None => info!("kube-proxy no longer runs in IPVS mode without strictARP"),
            Some(p) => {
                error!("{p}");
                let reference = node_reference(&nodes, &node).await;
                let event = Event {
                    type_: EventType::Warning,
                    reason: "StrictARPMissing".into(),
                    note: Some(event_note(p.clone())),
                    action: "Check".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &reference).await {
                    warn!(error = %e, "event not published");
                }
            }
        }
        problem = now;
    }
}

#[cfg(test)]
mod tests;
