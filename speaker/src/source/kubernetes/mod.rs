//! The Kubernetes source: what to announce comes from the cluster's objects instead of a
//! file. The controller assigns addresses (Service status); the speakers agree among
//! themselves who answers for each ([`crate::cluster`]), with MetalLB's eligibility rules:
//! a node selected by an L2Advertisement, not excluded by label, without
//! `NetworkUnavailable`, and, for `externalTrafficPolicy: Local`, with a ready endpoint of
//! the Service.
//!
//! - [`plan`](mod@plan): the plan from the objects, and the members from their Nodes (pure);
//! - [`status`]: MetalLB's ServiceL2Status objects;
//! - [`strict_arp`]: kube-proxy's strictARP, watched;
//! - [`reporter`]: Events and statuses, on a task of their own;
//! - [`bgp`](mod@bgp): BGP mode's objects, watched when the speaker drives FRR;
//! - here: the watches, and [`KubeSource`], which feeds the announcer.

mod bgp;
mod plan;
mod reporter;
mod status;
mod strict_arp;

pub use plan::{members_with_nodes, plan};
pub use status::{LABEL_STATUS_NODE, l2_statuses, stale_l2_statuses};
pub use strict_arp::strict_arp_problem;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrolb_model::api::{IPAddressPool, L2Advertisement};
use ferrolb_model::config::{self, Plan};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use ferrolb_runtime::{Readiness, trim, watch};

use self::bgp::BgpStores;
use self::reporter::{Report, ReportTo, reporter};
use crate::announcer::{self, Announcer, Change, Outcome, Source};
use crate::cluster::{self, membership::Member};
use crate::metrics::Metrics;

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
    /// BGP mode's engine; with it the BGP objects are watched too.
    pub frr: Option<crate::bgp::frr::FrrOptions>,
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

/// Waits until the membership key file can be read. The Secret volume is optional, so
/// the Pod starts before the controller has created the Secret; the kubelet fills the
/// volume in later.
async fn wait_for_key_file(path: &std::path::Path, readiness: &Readiness) {
    const WHAT: &str = "the membership key";
    loop {
        match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|k| crate::cluster::wire::Keyring::parse(&k).map(|_| ()).map_err(|e| e.to_string()))
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

#[cfg(test)]
mod tests;
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
    let announcer_opts = announcer::Options {
        node: config::NodeInfo::new(&opts.node_name),
        policy: opts.policy,
        exclude: Default::default(),
        excludel2: Some(opts.excludel2.clone()),
        tick: Duration::from_secs(1),
        frr: opts.frr.clone(),
    };
    let (source, cluster) = KubeSource::start(client, &opts, metrics.clone(), &ready).await;
    Announcer::new(announcer_opts, metrics).run(source, Some(cluster), ready).await
}

/// Plans from the cluster's objects; outcomes to Events and ServiceL2Status objects.
#[derive(Debug)]
pub struct KubeSource {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pools: Store<IPAddressPool>,
    advertisements: Store<L2Advertisement>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    /// BGP mode's objects, watched when the speaker drives FRR.
    bgp: Option<BgpStores>,
    namespace: String,
    lb_class: Option<String>,
    /// The membership port, for the peers' addresses.
    port: u16,
    objects: Arc<Notify>,
    nodes_changed: Arc<Notify>,
    pods_changed: Arc<Notify>,
    /// When the burst of object changes under way is planned.
    plan_due: Option<tokio::time::Instant>,
    reports: mpsc::UnboundedSender<Report>,
}

impl KubeSource {
    /// Starts the watches and waits for their first lists and for the membership key;
    /// returns the source and the membership's options (its seeds: the speaker Pods).
    pub async fn start(
        client: Client,
        opts: &Options,
        metrics: Arc<Metrics>,
        ready: &Arc<Readiness>,
    ) -> (KubeSource, cluster::Options) {
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
            load_balancer_services(&client, ready).await,
            trim::service_for_speaker,
            objects.clone(),
            ready.clone(),
        );
        let slices = watch::store(
            Api::<EndpointSlice>::all(client.clone()),
            all.clone().labels(plan::LABEL_SERVICE_NAME).page_size(100),
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
        let advertisements = watch::store(
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
        tokio::spawn(strict_arp::watch_kube_proxy(
            Api::namespaced(client.clone(), "kube-system"),
            recorder.clone(),
            opts.node_name.clone(),
            Api::all(client.clone()),
            metrics,
        ));
        let bgp = opts.frr.is_some().then(|| BgpStores::start(&client, &opts.namespace, objects.clone(), ready));
        let _ = tokio::join!(
            async {
                if let Some(b) = &bgp {
                    b.wait_until_ready().await
                }
            },
            services.wait_until_ready(),
            slices.wait_until_ready(),
            pools.wait_until_ready(),
            advertisements.wait_until_ready(),
            nodes.wait_until_ready(),
            pods.wait_until_ready()
        );
        info!("initial lists complete");
        // Events and ServiceL2Status go through their own task: a slow API server must never
        // hold up the heartbeats (the others would take this node for dead).
        let (reports, reports_rx) = mpsc::unbounded_channel();
        tokio::spawn(reporter(
            reports_rx,
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
        let source = KubeSource {
            services,
            slices,
            pools,
            advertisements,
            nodes,
            pods,
            bgp,
            namespace: opts.namespace.clone(),
            lb_class: opts.lb_class.clone(),
            port: opts.bind.port(),
            objects,
            nodes_changed,
            pods_changed,
            plan_due: None,
            reports,
        };
        wait_for_key_file(&opts.key_file, ready).await;
        let cluster = cluster::Options {
            bind: opts.bind,
            join: source.seeds(),
            key_file: opts.key_file.clone(),
            settings: opts.settings,
        };
        (source, cluster)
    }

    /// The speaker Pods' membership addresses.
    fn seeds(&self) -> Vec<SocketAddr> {
        self.pods
            .state()
            .iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect()
    }

    fn plan_now(&self) -> Plan {
        plan(
            &self.services.state(),
            &self.slices.state(),
            &self.pools.state(),
            &self.advertisements.state(),
            &self.namespace,
            self.lb_class.as_deref(),
            self.bgp.as_ref().map(BgpStores::objects),
        )
    }
}

impl Source for KubeSource {
    fn first_plan(&mut self) -> anyhow::Result<Plan> {
        Ok(self.plan_now())
    }

    async fn changed(&mut self) -> Change {
        loop {
            let due = self.plan_due;
            tokio::select! {
                _ = self.objects.notified() => {
                    // A burst of changes is planned once, when it has settled; the loop stays
                    // free for link, member and signal events meanwhile.
                    self.plan_due.get_or_insert_with(|| tokio::time::Instant::now() + DEBOUNCE);
                }
                _ = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {
                    self.plan_due = None;
                    return Change::Plan(self.plan_now());
                }
                _ = self.nodes_changed.notified() => return Change::Members,
                _ = self.pods_changed.notified() => return Change::Seeds(self.seeds()),
            }
        }
    }

    fn members(&self, members: &[Member]) -> Vec<Member> {
        members_with_nodes(members, &self.nodes.state())
    }

    /// No labels in heartbeats: every speaker reads each member's labels from its Node
    /// ([`members_with_nodes`]), and Node Feature Discovery or the GPU operator give nodes
    /// kilobytes of them, which would not fit a datagram.
    fn labels_in_heartbeats(&self) -> bool {
        false
    }

    fn report(&mut self, outcome: Outcome) {
        let _ = self.reports.send(Report::Outcome(outcome));
    }

    /// Also a retry tick for status writes that failed.
    fn tick(&mut self) {
        let _ = self.reports.send(Report::Retry);
    }
}
