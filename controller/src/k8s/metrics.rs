//! MetalLB's controller metrics, under their names.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::reconcile::Writes;

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

    pub(super) fn record(&self, writes: &Writes) {
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
