//! Reflector stores kept by tasks of their own, whose failures are seen: a watch that
//! fails makes its component wait for it, visibly, until it works again.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

use crate::Readiness;

/// A reflector store of `api`, kept by a task of its own. A watch that fails (RBAC, a
/// missing CRD, a selector the API server rejects, an object that does not decode) is
/// logged at warn level once, makes its component not Ready with the reason in `/readyz`,
/// and is retried with back-off; the first event after that clears it.
pub fn store<K>(
    api: Api<K>,
    cfg: watcher::Config,
    trim: fn(&mut K),
    changed: Arc<Notify>,
    readiness: Arc<Readiness>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let what = format!("the {} watch", K::plural(&()));
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, cfg).modify(trim)).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let event =
                event.as_ref().map(|e| !matches!(e, watcher::Event::Init)).map_err(|e| e as &dyn std::fmt::Display);
            if crate::readiness::watch_event(&readiness, &what, event) {
                changed.notify_one();
            }
        }
    });
    store
}
