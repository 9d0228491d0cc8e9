//! BGP mode's objects in a cluster (watched only when the speaker drives FRR): BGPPeer,
//! BGPAdvertisement, BFDProfile, Community, and the basic-auth Secrets peers take their
//! passwords from, in the speakers' namespace, as MetalLB's speaker reads them (its
//! `pod-lister` Role, config/rbac at MetalLB 7938d3f89).

use std::sync::Arc;

use ferrolb_model::api::{BFDProfile, BGPAdvertisement, BGPPeer, Community};
use ferrolb_model::config::bgp::BgpObjects;
use ferrolb_runtime::{Readiness, trim, watch};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

/// The watched BGP objects.
#[derive(Debug)]
pub struct BgpStores {
    peers: Store<BGPPeer>,
    advertisements: Store<BGPAdvertisement>,
    bfd_profiles: Store<BFDProfile>,
    communities: Store<Community>,
    secrets: Store<Secret>,
}

/// Only a basic-auth Secret's password is kept.
fn secret(s: &mut Secret) {
    trim::meta(s);
    s.string_data = None;
    if let Some(data) = &mut s.data {
        data.retain(|k, _| k == "password");
    }
}

impl BgpStores {
    pub fn start(client: &Client, namespace: &str, changed: Arc<Notify>, ready: &Arc<Readiness>) -> BgpStores {
        let all = watcher::Config::default();
        BgpStores {
            peers: watch::store(
                Api::namespaced(client.clone(), namespace),
                all.clone(),
                trim::meta,
                changed.clone(),
                ready.clone(),
            ),
            advertisements: watch::store(
                Api::namespaced(client.clone(), namespace),
                all.clone(),
                trim::meta,
                changed.clone(),
                ready.clone(),
            ),
            bfd_profiles: watch::store(
                Api::namespaced(client.clone(), namespace),
                all.clone(),
                trim::meta,
                changed.clone(),
                ready.clone(),
            ),
            communities: watch::store(
                Api::namespaced(client.clone(), namespace),
                all.clone(),
                trim::meta,
                changed.clone(),
                ready.clone(),
            ),
            secrets: watch::store(
                Api::namespaced(client.clone(), namespace),
                all.fields("type=kubernetes.io/basic-auth"),
                secret,
                changed,
                ready.clone(),
            ),
        }
    }

    pub async fn wait_until_ready(&self) {
        let _ = tokio::join!(
            self.peers.wait_until_ready(),
            self.advertisements.wait_until_ready(),
            self.bfd_profiles.wait_until_ready(),
            self.communities.wait_until_ready(),
            self.secrets.wait_until_ready()
        );
    }

    /// The objects as the model validates them, each named `Kind namespace/name`.
    pub fn objects(&self) -> BgpObjects {
        fn named<K: kube::Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> Vec<(String, K)> {
            let mut v: Vec<(String, K)> = store
                .state()
                .iter()
                .map(|o| {
                    (format!("{} {}/{}", K::kind(&()), o.namespace().unwrap_or_default(), o.name_any()), (**o).clone())
                })
                .collect();
            // The store's order is a hash map's: sorted, every speaker validates alike.
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        let password_secrets = self
            .secrets
            .state()
            .iter()
            .filter_map(|s| {
                let password = s.data.as_ref()?.get("password")?;
                Some((s.name_any(), String::from_utf8_lossy(&password.0).into_owned()))
            })
            .collect();
        BgpObjects {
            peers: named(&self.peers),
            advertisements: named(&self.advertisements),
            bfd_profiles: named(&self.bfd_profiles),
            communities: named(&self.communities),
            password_secrets,
        }
    }
}
