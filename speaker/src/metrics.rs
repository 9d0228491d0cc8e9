//! Prometheus metrics. MetalLB's names are kept exactly, so existing dashboards and
//! alerts work; FerroLB's own are `ferrolb_*`. Labels are bounded: IP, interface, pool,
//! reason, never anything a client chooses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// A counter exposed under its bare name, as MetalLB's Go client does
/// (`metallb_layer2_requests_received`, not `..._total`). Typed `unknown` because
/// OpenMetrics reserves the `counter` type for names ending in `_total`.
#[derive(Debug, Clone, Default)]
pub struct BareCounter(Arc<AtomicU64>);

impl BareCounter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// For a value read elsewhere (FRR's counts).
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

impl TypedMetric for BareCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for BareCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(self.get() as i64))
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// An address as a label value, formatted only when scraped: per-VIP series then hold
/// 17 bytes instead of a heap string.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct IpValue(pub std::net::IpAddr);

impl EncodeLabelValue for IpValue {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_fmt(encoder, format_args!("{}", self.0))
    }
}

/// A label value shared by many series (the node name).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SharedValue(pub Arc<str>);

impl EncodeLabelValue for SharedValue {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IpLabel {
    pub ip: IpValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnnouncedLabels {
    pub ip: IpValue,
    pub node: SharedValue,
    pub protocol: &'static str,
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub interface: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketLabels {
    pub interface: String,
    pub protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrimaryKeyLabel {
    pub primary: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabel {
    pub key: &'static str,
}

/// A BGP session, as MetalLB labels it: `peer` is `address:port`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
    pub vrf: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Seconds from losing a member (dead or left) to our first announcement of an address
/// taken over from it.
#[derive(Debug)]
pub struct FailoverHistogram(pub Histogram);

impl Default for FailoverHistogram {
    fn default() -> Self {
        // 100 µs to about 1.6 s.
        FailoverHistogram(Histogram::new(exponential_buckets(0.0001, 2.0, 15)))
    }
}

/// Seconds between two heartbeats this speaker sent: its own scheduling, seen from
/// inside. Anything near `dead_after` (200 ms) means the others nearly declared it dead.
#[derive(Debug)]
pub struct HeartbeatHistogram(pub Histogram);

impl Default for HeartbeatHistogram {
    fn default() -> Self {
        HeartbeatHistogram(Histogram::new([0.045, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.5, 1.0]))
    }
}

/// Every metric the speaker exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests_received: Family<IpLabel, BareCounter>,
    pub responses_sent: Family<IpLabel, BareCounter>,
    pub gratuitous_sent: Family<IpLabel, BareCounter>,
    pub announced: Family<AnnouncedLabels, Gauge>,
    pub frames_dropped: Family<DropLabels, Counter>,
    pub filter_misses: Family<SocketLabels, Counter>,
    pub socket_frames: Family<SocketLabels, Counter>,
    pub socket_drops: Family<SocketLabels, Counter>,
    pub send_errors: Family<SocketLabels, Counter>,
    pub conflicts: Family<IpLabel, Counter>,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub config_last_reload_successful: Gauge,
    pub vips: Gauge,
    pub cluster_members: Family<StateLabel, Gauge>,
    pub cluster_rejected: Family<ReasonLabel, Counter>,
    pub cluster_accepted: Family<KeyLabel, Counter>,
    pub cluster_keys: Gauge,
    pub cluster_key_info: Family<PrimaryKeyLabel, Gauge>,
    pub cluster_key_stale: Gauge,
    pub ownership_changes: Counter,
    pub failover: FailoverHistogram,
    pub heartbeat_interval: HeartbeatHistogram,
    pub strict_arp_missing: Gauge,
    pub config_mismatch: Gauge,
    pub bgp_session_up: Family<PeerLabels, Gauge>,
    pub bgp_announced_prefixes: Family<PeerLabels, BareCounter>,
    pub bgp_updates_sent: Family<PeerLabels, Counter>,
}

impl Metrics {
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        let m = self.as_ref();
        r.register(
            "metallb_layer2_requests_received",
            "Number of layer2 requests received for owned IPs",
            m.requests_received.clone(),
        );
        r.register(
            "metallb_layer2_responses_sent",
            "Number of layer2 responses sent for owned IPs",
            m.responses_sent.clone(),
        );
        r.register(
            "metallb_layer2_gratuitous_sent",
            "Number of gratuitous layer2 packets sent for owned IPs",
            m.gratuitous_sent.clone(),
        );
        r.register("metallb_speaker_announced", "The node announcing this service", m.announced.clone());
        r.register(
            "ferrolb_frames_dropped",
            "Frames dropped as malformed or invalid, by reason",
            m.frames_dropped.clone(),
        );
        r.register(
            "ferrolb_filter_misses",
            "Frames the kernel filter passed that were not requests for an owned IP",
            m.filter_misses.clone(),
        );
        r.register(
            "ferrolb_socket_frames",
            "Frames delivered to the speaker's sockets by the kernel filter",
            m.socket_frames.clone(),
        );
        r.register(
            "ferrolb_socket_drops",
            "Frames the kernel dropped because a socket's buffer was full",
            m.socket_drops.clone(),
        );
        r.register(
            "ferrolb_send_errors",
            "Frames (replies and announcements) the kernel refused to send",
            m.send_errors.clone(),
        );
        r.register("ferrolb_conflicts", "Announcements of an owned IP by another MAC", m.conflicts.clone());
        r.register("ferrolb_config_reloads", "Configuration loads, by result", m.config_reloads.clone());
        r.register(
            "ferrolb_config_last_reload_successful",
            "Whether the last configuration load succeeded",
            m.config_last_reload_successful.clone(),
        );
        r.register("ferrolb_vips", "Addresses this speaker announces", m.vips.clone());
        r.register(
            "ferrolb_cluster_members",
            "Live cluster members as this speaker sees them: settled, or settling (in hold-down)",
            m.cluster_members.clone(),
        );
        r.register(
            "ferrolb_cluster_packets_rejected",
            "Membership packets dropped, by reason (bad_tag: wrong or no key)",
            m.cluster_rejected.clone(),
        );
        r.register(
            "ferrolb_cluster_packets_accepted",
            "Membership packets accepted, by key: primary (the one this speaker sends with) or secondary (mid-rotation)",
            m.cluster_accepted.clone(),
        );
        r.register(
            "ferrolb_cluster_keys",
            "Keys this speaker accepts (two while a key is rotated)",
            m.cluster_keys.clone(),
        );
        r.register(
            "ferrolb_cluster_key_info",
            "The fingerprint of the key this speaker sends with (the same everywhere before an old key is dropped)",
            m.cluster_key_info.clone(),
        );
        r.register(
            "ferrolb_cluster_key_stale_bool",
            "1 when the key file is invalid or unreadable and the last good keys are in use",
            m.cluster_key_stale.clone(),
        );
        r.register(
            "ferrolb_ownership_changes",
            "Addresses whose owner changed in this speaker's view",
            m.ownership_changes.clone(),
        );
        r.register(
            "ferrolb_cluster_config_mismatch",
            "Live members announcing from another configuration than this speaker (for more than 5 s)",
            m.config_mismatch.clone(),
        );
        r.register(
            "ferrolb_kube_proxy_strict_arp_missing",
            "1 when kube-proxy runs in IPVS mode without strictARP (every node would answer ARP)",
            m.strict_arp_missing.clone(),
        );
        r.register(
            "ferrolb_failover_seconds",
            "From losing a member to this speaker's first announcement of an address taken over",
            m.failover.0.clone(),
        );
        r.register(
            "ferrolb_cluster_heartbeat_interval_seconds",
            "Time between two heartbeats this speaker sent (a starved or stopped speaker shows long ones)",
            m.heartbeat_interval.0.clone(),
        );
        // MetalLB's BGP metrics (internal/bgp/metrics/metrics.go), read from FRR.
        r.register("metallb_bgp_session_up", "BGP session state (1 is up, 0 is down)", m.bgp_session_up.clone());
        r.register(
            "metallb_bgp_announced_prefixes_total",
            "Number of prefixes currently being advertised on the BGP session",
            m.bgp_announced_prefixes.clone(),
        );
        r.register("metallb_bgp_updates", "Number of BGP UPDATE messages sent", m.bgp_updates_sent.clone());
        r
    }
}

/// The per-address counters of one VIP, resolved once when a table is built so that the
/// hot path increments an atomic instead of hashing labels.
#[derive(Debug, Clone)]
pub struct VipCounters {
    pub requests: BareCounter,
    pub responses: BareCounter,
    pub gratuitous: BareCounter,
}

impl VipCounters {
    pub fn new(m: &Metrics, ip: std::net::IpAddr) -> VipCounters {
        let l = IpLabel { ip: IpValue(ip) };
        VipCounters {
            requests: m.requests_received.get_or_create(&l).clone(),
            responses: m.responses_sent.get_or_create(&l).clone(),
            gratuitous: m.gratuitous_sent.get_or_create(&l).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_keeps_metallb_names_and_types_counters() {
        let m = Arc::new(Metrics::default());
        let ip = "192.0.2.10".parse().unwrap();
        VipCounters::new(&m, ip).requests.inc_by(3);
        m.config_reloads.get_or_create(&ResultLabel { result: "success".into() }).inc();
        let text = ferrolb_runtime::http::render_text(&m.registry());
        assert!(text.contains("# TYPE metallb_layer2_requests_received untyped\n"), "{text}");
        assert!(text.contains("metallb_layer2_requests_received{ip=\"192.0.2.10\"} 3\n"), "{text}");
        assert!(text.contains("# HELP ferrolb_config_reloads_total Configuration loads, by result.\n"), "{text}");
        assert!(text.contains("# TYPE ferrolb_config_reloads_total counter\n"), "{text}");
        assert!(!text.contains("# EOF"));
        let om = ferrolb_runtime::http::render_openmetrics(&m.registry());
        assert!(om.contains("# TYPE metallb_layer2_requests_received unknown\n") && om.ends_with("# EOF\n"));
    }
}
