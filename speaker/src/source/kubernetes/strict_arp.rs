//! kube-proxy's strictARP, checked where MetalLB users most often lose it.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{debug, error, info, warn};

use ferrolb_runtime::events::event_note;

use super::reporter::node_reference;
use crate::metrics::Metrics;

/// kube-proxy in IPVS mode without `strictARP: true` makes every node answer ARP for
/// every LoadBalancer address: MetalLB's most asked support question. `config` is the
/// `config.conf` key of kube-system/kube-proxy.
pub fn strict_arp_problem(config: &str) -> Option<String> {
    let v: serde_json::Value = serde_saphyr::from_str(config).ok()?;
    let ipvs = v.get("mode").and_then(|m| m.as_str()) == Some("ipvs");
    let strict = v.get("ipvs").and_then(|i| i.get("strictARP")).and_then(serde_json::Value::as_bool) == Some(true);
    (ipvs && !strict).then(|| {
        "kube-proxy runs in IPVS mode without strictARP: every node answers ARP for LoadBalancer addresses. \
         Set ipvs.strictARP: true in the kube-system/kube-proxy ConfigMap and restart kube-proxy"
            .to_string()
    })
}

/// Watches kube-system/kube-proxy, since strictARP is often fixed (or lost, with a
/// kube-proxy upgrade) while the speakers run. Reports on transitions only: an error, the
/// metric and a Warning Event on this Node when the problem appears, a log line when it
/// is gone. Without that ConfigMap (K3s, a kube-proxy replacement) there is nothing to
/// check; without permission the watch retries quietly with back-off.
pub(super) async fn watch_kube_proxy(
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
