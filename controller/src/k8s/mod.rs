//! The thin Kubernetes layer: watches Services, IPAddressPools and Namespaces, plans each
//! round with [`crate::reconcile`] and makes its writes ([`writer`]: Service status and
//! annotation, IPAddressPool status, Events); [`metrics`] (MetalLB's), the leader
//! [`lease`], the membership [`secret`].

mod lease;
mod metrics;
mod secret;
mod writer;

pub use lease::{LeaseAction, Observed, lead, lease_action, release, try_lead};
pub use metrics::{Metrics, PoolLabel};
pub use secret::ensure_memberlist_secret;
pub use writer::Writer;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::Notify;
use tracing::{info, warn};

use ferrolb_model::api::IPAddressPool;

use crate::reconcile::{self, Memory, Settings, Snapshot};
use ferrolb_runtime::{Readiness, trim, watch};

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
