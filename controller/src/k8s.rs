//! The thin Kubernetes layer: watches Services, IPAddressPools and Namespaces, plans each
//! round with [`crate::reconcile`] and makes its writes: Service status and annotation,
//! IPAddressPool status, Events. Metrics are MetalLB's.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::Notify;
use tracing::{info, warn};

use ferrolb_model::api::IPAddressPool;

use crate::reconcile::{self, ANNOTATION_ALLOCATED_FROM_POOL, EventKind, Memory, Settings, Snapshot, Writes};
use ferrolb_runtime::events::event_note;
use ferrolb_runtime::{MEMBERLIST_SECRET, Readiness, trim, watch};

/// The one error type of this layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{failed} of {total} writes failed; the next round retries them")]
    Writes { failed: usize, total: usize },
    #[error("cannot read random bytes for the membership key: {0}")]
    Random(std::io::Error),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

/// MetalLB's controller metrics, under their names.
#[derive(Debug, Default)]
pub struct Metrics {
    pub updates: Counter,
    pub update_errors: Counter,
    pub config_loaded: Gauge,
    pub config_stale: Gauge,
    pub foreign_ingress: Gauge,
    pub in_use: Family<PoolLabel, Gauge>,
    pub total: Family<PoolLabel, Gauge>,
    pub in_use_v4: Family<PoolLabel, Gauge>,
    pub total_v4: Family<PoolLabel, Gauge>,
    pub in_use_v6: Family<PoolLabel, Gauge>,
    pub total_v6: Family<PoolLabel, Gauge>,
}

fn gauge_i64(n: u128) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        let m = self.as_ref();
        r.register("metallb_k8s_client_updates", "Number of k8s object updates", m.updates.clone());
        r.register("metallb_k8s_client_update_errors", "Number of k8s object update failures", m.update_errors.clone());
        r.register(
            "metallb_k8s_client_config_loaded_bool",
            "1 if the configuration was ever loaded",
            m.config_loaded.clone(),
        );
        r.register(
            "metallb_k8s_client_config_stale_bool",
            "1 if running on a stale configuration",
            m.config_stale.clone(),
        );
        r.register(
            "ferrolb_controller_foreign_ingress_services",
            "LoadBalancer Services whose status another load balancer writes (left alone)",
            m.foreign_ingress.clone(),
        );
        r.register(
            "metallb_allocator_addresses_in_use_total",
            "Number of IP addresses in use, per pool",
            m.in_use.clone(),
        );
        r.register("metallb_allocator_addresses_total", "Number of usable IP addresses, per pool", m.total.clone());
        r.register(
            "metallb_allocator_ipv4_addresses_in_use_total",
            "IPv4 addresses in use, per pool",
            m.in_use_v4.clone(),
        );
        r.register("metallb_allocator_ipv4_addresses_total", "Usable IPv4 addresses, per pool", m.total_v4.clone());
        r.register(
            "metallb_allocator_ipv6_addresses_in_use_total",
            "IPv6 addresses in use, per pool",
            m.in_use_v6.clone(),
        );
        r.register(
            "metallb_allocator_ipv6_addresses_total",
            "Usable IPv6 addresses, per pool (saturates)",
            m.total_v6.clone(),
        );
        r
    }

    fn record(&self, writes: &Writes) {
        self.config_loaded.set(1);
        self.config_stale.set(i64::from(writes.stale));
        self.foreign_ingress.set(writes.foreign as i64);
        for family in [&self.in_use, &self.total, &self.in_use_v4, &self.total_v4, &self.in_use_v6, &self.total_v6] {
            family.clear();
        }
        for (pool, u) in &writes.usage {
            let l = PoolLabel { pool: pool.clone() };
            self.in_use.get_or_create(&l).set(gauge_i64(u.in_use_v4.saturating_add(u.in_use_v6)));
            self.total.get_or_create(&l).set(gauge_i64(u.total_v4.saturating_add(u.total_v6)));
            self.in_use_v4.get_or_create(&l).set(gauge_i64(u.in_use_v4));
            self.total_v4.get_or_create(&l).set(gauge_i64(u.total_v4));
            self.in_use_v6.get_or_create(&l).set(gauge_i64(u.in_use_v6));
            self.total_v6.get_or_create(&l).set(gauge_i64(u.total_v6));
        }
    }
}

/// Status writes and Events in flight at once.
const WRITES_IN_FLIGHT: usize = 8;

/// Makes a round's writes.
pub struct Writer {
    client: Client,
    recorder: Recorder,
    namespace: String,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl Writer {
    pub fn new(client: Client, namespace: &str, metrics: Arc<Metrics>) -> Writer {
        let reporter = Reporter { controller: "ferrolb-controller".into(), instance: std::env::var("POD_NAME").ok() };
        Writer { recorder: Recorder::new(client.clone(), reporter), client, namespace: namespace.into(), metrics }
    }

    /// Every write of the round is tried; failures are logged and counted, and the next
    /// round (which plans from the objects as they then are) retries them.
    pub async fn apply(&self, writes: &Writes) -> Result<(), Error> {
        self.metrics.record(writes);
        let mut failed = 0;
        let total = writes.services.len() + writes.pools.len() + writes.events.len();
        // A few writes in flight at once: a burst of Services is bound by the API
        // server's latency, not by one round trip after another.
        let writes_ahead: Vec<_> =
            writes.services.iter().map(|s| async move { (s, self.write_service(s).await) }).collect();
        let results: Vec<_> = futures::stream::iter(writes_ahead).buffer_unordered(WRITES_IN_FLIGHT).collect().await;
        for (s, result) in results {
            match result {
                Ok(()) => {
                    self.metrics.updates.inc();
                    info!(service = %format!("{}/{}", s.namespace, s.name), ingress = ?s.ingress, pool = ?s.pool, "status written");
                }
                Err(e) => {
                    failed += 1;
                    self.metrics.update_errors.inc();
                    warn!(service = %format!("{}/{}", s.namespace, s.name), error = %e, "status write failed");
                }
            }
        }
        let pools: Api<IPAddressPool> = Api::namespaced(self.client.clone(), &self.namespace);
        for p in &writes.pools {
            let patch = json!({ "status": p.status });
            match pools.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.metrics.updates.inc();
                }
                Err(e) => {
                    failed += 1;
                    self.metrics.update_errors.inc();
                    warn!(pool = %p.name, error = %e, "pool status write failed");
                }
            }
        }
        let events_ahead: Vec<_> = writes.events.iter().map(|e| async move { (e, self.publish(e).await) }).collect();
        let published: Vec<_> = futures::stream::iter(events_ahead).buffer_unordered(WRITES_IN_FLIGHT).collect().await;
        for (e, result) in published {
            if let Err(err) = result {
                failed += 1;
                warn!(reason = e.reason, error = %err, "event not published");
            }
        }
        if failed > 0 { Err(Error::Writes { failed, total }) } else { Ok(()) }
    }

    /// Publishes one Event; a Warning is logged too, so it is seen where logs are read.
    async fn publish(&self, e: &reconcile::EventSpec) -> Result<(), kube::Error> {
        if e.kind == EventKind::Warning {
            let namespace = e.regarding.namespace.as_deref().unwrap_or_default();
            let object = format!("{namespace}/{}", e.regarding.name.as_deref().unwrap_or_default());
            warn!(reason = e.reason, object = %object, "{}", e.note);
        }
        let event = Event {
            type_: match e.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: e.reason.into(),
            note: Some(event_note(e.note.clone())),
            action: "Allocate".into(),
            secondary: None,
        };
        self.recorder.publish(&event, &e.regarding).await
    }

    async fn write_service(&self, w: &reconcile::ServiceWrite) -> Result<(), kube::Error> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &w.namespace);
        let ingress: Vec<_> = w.ingress.iter().map(|ip| json!({ "ip": ip.to_string(), "ipMode": "VIP" })).collect();
        // The resourceVersion makes the write conditional: a Service changed since the
        // snapshot answers 409 instead of being overwritten with a plan made without the
        // change. Not retried here: its watch event brings a new round that re-plans.
        let patch = json!({
            "metadata": { "resourceVersion": w.resource_version },
            "status": { "loadBalancer": { "ingress": ingress } },
        });
        api.patch_status(&w.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let patch = json!({ "metadata": { "annotations": { ANNOTATION_ALLOCATED_FROM_POOL: w.pool } } });
        api.patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }
}

/// The current objects of the three watched kinds.
pub fn snapshot(services: &Store<Service>, pools: &Store<IPAddressPool>, namespaces: &Store<Namespace>) -> Snapshot {
    Snapshot {
        services: services.state().iter().map(|s| (**s).clone()).collect(),
        pools: pools.state().iter().map(|p| (**p).clone()).collect(),
        namespaces: namespaces.state().iter().map(|n| (n.name_any(), n.labels().clone())).collect(),
    }
}

/// Gathers events for this long before a round, so a burst (a restart's initial lists, a
/// `kubectl apply` of many Services) is planned once.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A round this often even without events, to retry failed writes.
const RESYNC: Duration = Duration::from_secs(60);

/// Watches and reconciles until the process ends.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<(), Error> {
    let changed = Arc::new(Notify::new());
    let all = watcher::Config::default();
    let services = watch::store(
        Api::<Service>::all(client.clone()),
        all.clone(),
        trim::service_for_controller,
        changed.clone(),
        readiness.clone(),
    );
    // All namespaces, to warn about pools created in the wrong one.
    let pools = watch::store(
        Api::<IPAddressPool>::all(client.clone()),
        all.clone(),
        trim::meta,
        changed.clone(),
        readiness.clone(),
    );
    let namespaces =
        watch::store(Api::<Namespace>::all(client.clone()), all, trim::meta, changed.clone(), readiness.clone());
    // Nothing is planned before every list is complete: a partial view of the Services
    // could hand out an address that one not yet seen holds.
    const LISTS: &str = "the initial lists";
    readiness.wait_for(LISTS, "Services, IPAddressPools and Namespaces".into());
    let _ = tokio::join!(services.wait_until_ready(), pools.wait_until_ready(), namespaces.wait_until_ready());
    readiness.done(LISTS);
    info!("initial lists complete; reconciling");
    let writer = Writer::new(client, &settings.namespace, metrics);
    let mut memory = Memory::default();
    loop {
        let snap = snapshot(&services, &pools, &namespaces);
        let writes = reconcile::plan(&snap, &settings, &mut memory);
        if let Err(e) = writer.apply(&writes).await {
            warn!(error = %e, "round incomplete");
        }
        let _ = tokio::time::timeout(RESYNC, changed.notified()).await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// Creates the membership key Secret if it does not exist (as MetalLB's controller does),
/// with 32 random bytes as hex. An existing one is never touched.
pub async fn ensure_memberlist_secret(client: &Client, namespace: &str) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Secret;
    use std::io::Read;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(MEMBERLIST_SECRET).await?.is_some() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(Error::Random)?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(MEMBERLIST_SECRET.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        string_data: Some([("secretkey".to_string(), key)].into()),
        ..Default::default()
    };
    match api.create(&kube::api::PostParams::default(), &secret).await {
        Ok(_) => {
            info!(secret = MEMBERLIST_SECRET, "membership key created");
            Ok(())
        }
        // Another replica was first.
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a replica does with the leader Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// Free, expired, or ours: write it with us as holder and a fresh renew time.
    Take,
    /// Another replica holds it and renewed it recently.
    Wait,
}

/// The other holder's Lease record as this replica last saw it change, and when (on this
/// replica's monotonic clock). Expiry is judged from that, as client-go's leader election
/// does, never from the holder's `renewTime`: clocks of two nodes may disagree, and a
/// skewed clock must not take over a live Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Holder and renew time as written.
    pub record: String,
    pub at: std::time::Instant,
}

/// Pure: whether `me` may take or renew `lease` at `now`, given what was `observed` of it
/// before (updated here).
pub fn lease_action(
    lease: Option<&k8s_openapi::api::coordination::v1::LeaseSpec>,
    me: &str,
    observed: &mut Option<Observed>,
    now: std::time::Instant,
) -> LeaseAction {
    let Some(spec) = lease else { return LeaseAction::Take };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == me {
        return LeaseAction::Take;
    }
    let record = format!("{holder}@{:?}", spec.renew_time.as_ref().map(|t| t.0));
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    match observed {
        Some(o) if o.record == record => {
            if now.duration_since(o.at) > duration {
                LeaseAction::Take
            } else {
                LeaseAction::Wait
            }
        }
        _ => {
            *observed = Some(Observed { record, at: now });
            LeaseAction::Wait
        }
    }
}

/// The leader Lease: only its holder reconciles, so two replicas never race each other's
/// writes. Tried every [`LEASE_RETRY`] (each request bounded by it); a leader that cannot
/// renew within [`LEASE_RENEW_DEADLINE`] exits before another replica may take over (the
/// Deployment restarts it); SIGTERM releases it so a standby takes over at once.
const LEASE_NAME: &str = "ferrolb-controller";
const LEASE_DURATION: i32 = 15;
const LEASE_RENEW_DEADLINE: Duration = Duration::from_secs(10);
const LEASE_RETRY: Duration = Duration::from_secs(2);

/// Tries once to take or renew the Lease; true if we hold it afterwards.
pub async fn try_lead(
    client: &Client,
    namespace: &str,
    me: &str,
    observed: &mut Option<Observed>,
) -> Result<bool, Error> {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let current = api.get_opt(LEASE_NAME).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    if lease_action(spec, me, observed, std::time::Instant::now()) == LeaseAction::Wait {
        return Ok(false);
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let previous = spec.cloned().unwrap_or_default();
    let ours = previous.holder_identity.as_deref() == Some(me);
    let spec = LeaseSpec {
        holder_identity: Some(me.into()),
        lease_duration_seconds: Some(LEASE_DURATION),
        acquire_time: if ours { previous.acquire_time.clone() } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + i32::from(!ours && current.is_some())),
        ..LeaseSpec::default()
    };
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(LEASE_NAME.into()),
            namespace: Some(namespace.into()),
            resource_version: current.as_ref().and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(spec),
    };
    // Conditional on the version read: of two replicas taking an expired Lease, one wins.
    let result = match current {
        Some(_) => api.replace(LEASE_NAME, &kube::api::PostParams::default(), &lease).await,
        None => api.create(&kube::api::PostParams::default(), &lease).await,
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Gives the Lease up (SIGTERM): holder cleared, so a standby takes it on its next try
/// instead of waiting for it to expire. Only if we still hold it.
pub async fn release(client: &Client, namespace: &str, me: &str) -> Result<(), Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else { return Ok(()) };
    let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(me)) else { return Ok(()) };
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    api.replace(LEASE_NAME, &kube::api::PostParams::default(), &lease).await?;
    info!("leader Lease released");
    Ok(())
}

/// One bounded attempt: a hung API server counts as a failed try.
async fn try_lead_bounded(
    client: &Client,
    namespace: &str,
    me: &str,
    observed: &mut Option<Observed>,
) -> Result<bool, String> {
    match tokio::time::timeout(LEASE_RETRY, try_lead(client, namespace, me, observed)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {LEASE_RETRY:?}")),
    }
}

/// Waits until this replica leads, then keeps renewing in the background; the process
/// exits if leadership is lost.
pub async fn lead(client: Client, namespace: String, me: String) {
    let mut observed = None;
    let mut said = false;
    loop {
        match try_lead_bounded(&client, &namespace, &me, &mut observed).await {
            Ok(true) => break,
            Ok(false) if !said => {
                said = true;
                info!(lease = LEASE_NAME, "another replica leads; standing by");
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "leader election: cannot read or write the Lease; waiting"),
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
    info!(identity = %me, "leading");
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(LEASE_RETRY).await;
            match try_lead_bounded(&client, &namespace, &me, &mut observed).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("leadership lost to another replica; exiting");
                    std::process::exit(1);
                }
                Err(e) => warn!(error = %e, "cannot renew the leader Lease"),
            }
            if last_ok.elapsed() > LEASE_RENEW_DEADLINE {
                tracing::error!("leader Lease not renewed within {LEASE_RENEW_DEADLINE:?}; exiting");
                std::process::exit(1);
            }
        }
    });
}
