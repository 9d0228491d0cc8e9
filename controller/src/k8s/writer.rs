//! A round's writes: Service status and annotation, IPAddressPool status, Events.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use tracing::{info, warn};

use ferrolb_model::api::IPAddressPool;

use crate::reconcile::{self, ANNOTATION_ALLOCATED_FROM_POOL, EventKind, Writes};
use ferrolb_runtime::events::event_note;

use super::{Error, Metrics};

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
