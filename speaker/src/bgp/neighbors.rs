//! FRR's BGP sessions as `vtysh -c 'show bgp vrf all neighbors json'` reports them (the
//! command and fields MetalLB's FRR metrics read: frr-tools/metrics/collector/bgp.go:160 and
//! internal/bgp/frr/parse.go at MetalLB 7938d3f89). Pure: text in, sessions out.

use serde_json::Value;

/// One session, as FRR last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub vrf: String,
    /// The neighbor's address (or interface, when unnumbered), as FRR keys it.
    pub address: String,
    /// The router's BGP port (MetalLB's `peer` label is `address:port`).
    pub port: u16,
    /// `Established`, `Active`, `Connect`, `OpenSent`…
    pub state: String,
    /// Why the session last went down, when it did.
    pub last_reset: Option<String>,
    pub prefixes_sent: u64,
    pub updates_sent: u64,
    pub updates_received: u64,
}

impl Neighbor {
    pub fn up(&self) -> bool {
        self.state == "Established"
    }

    /// MetalLB's `peer` label: `address:port`.
    pub fn peer_label(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
}

/// The sessions in `json`, sorted by VRF and address; an error names what was missing.
pub fn parse(json: &str) -> Result<Vec<Neighbor>, String> {
    let root: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let vrfs = root.as_object().ok_or("not an object of VRFs")?;
    let mut out = Vec::new();
    for (vrf, entries) in vrfs {
        let Some(entries) = entries.as_object() else { continue };
        // Besides the neighbors (objects), a VRF carries `vrfId` and `vrfName`.
        for (address, n) in entries.iter().filter(|(_, v)| v.is_object()) {
            let count = |v: &Value| v.as_u64().unwrap_or(0);
            let stats = &n["messageStats"];
            let prefixes_sent = n["addressFamilyInfo"]
                .as_object()
                .map(|families| families.values().map(|f| count(&f["sentPrefixCounter"])).sum())
                .unwrap_or(0);
            out.push(Neighbor {
                vrf: vrf.clone(),
                address: address.clone(),
                port: router_port(n),
                state: n["bgpState"].as_str().ok_or_else(|| format!("{address}: no bgpState"))?.to_string(),
                last_reset: n["lastResetDueTo"].as_str().map(str::to_string),
                prefixes_sent,
                updates_sent: count(&stats["updatesSent"]),
                updates_received: count(&stats["updatesRecv"]),
            });
        }
    }
    out.sort_by(|a, b| (&a.vrf, &a.address).cmp(&(&b.vrf, &b.address)));
    Ok(out)
}

/// The router's BGP port. MetalLB takes `portForeign`, which is the router's ephemeral
/// port when the router opened the connection (our side then is port 179): a new label
/// value at every reconnection. Then the port is 179.
fn router_port(n: &Value) -> u16 {
    let port = |key: &str| n[key].as_u64().and_then(|p| u16::try_from(p).ok());
    match (port("portLocal"), port("portForeign")) {
        (Some(179), _) | (_, None) => 179,
        (_, Some(foreign)) => foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from FRR 8.4.4 (Debian 12) in a session with BIRD 2: one prefix sent.
    const ESTABLISHED: &str = include_str!("testdata/neighbors-established.json");

    #[test]
    fn an_established_session_and_its_counters() {
        let n = parse(ESTABLISHED).unwrap();
        assert_eq!(n.len(), 1);
        let n = &n[0];
        assert_eq!((n.vrf.as_str(), n.address.as_str(), n.port), ("default", "192.0.2.1", 179));
        assert!(n.up());
        assert_eq!((n.prefixes_sent, n.updates_sent, n.updates_received), (1, 3, 1));
        assert_eq!(n.peer_label(), "192.0.2.1:179");
    }

    /// When the router opened the connection, its port is an ephemeral one: the label
    /// keeps 179 (found against BIRD, which connects as often as FRR does).
    #[test]
    fn the_peer_port_is_the_routers_bgp_port() {
        let json = |local: u16, foreign: u16| {
            format!(
                r#"{{"default":{{"192.0.2.1":{{"bgpState":"Established","portLocal":{local},"portForeign":{foreign}}}}}}}"#
            )
        };
        assert_eq!(parse(&json(179, 37571)).unwrap()[0].port, 179, "the router connected");
        assert_eq!(parse(&json(40000, 179)).unwrap()[0].port, 179, "we connected");
        assert_eq!(parse(&json(40000, 1179)).unwrap()[0].port, 1179, "we connected to another port");
    }

    #[test]
    fn a_session_down_keeps_its_reason() {
        let json = r#"{"red":{"vrfId":3,"vrfName":"red","2001:db8::1":{"bgpState":"Active",
            "lastResetDueTo":"No AFI/SAFI activated for peer","messageStats":{}}}}"#;
        let n = parse(json).unwrap();
        assert_eq!(n[0].vrf, "red");
        assert!(!n[0].up());
        assert_eq!(n[0].last_reset.as_deref(), Some("No AFI/SAFI activated for peer"));
        assert_eq!(n[0].prefixes_sent, 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("% Unknown command").is_err());
        assert!(parse("[1]").is_err());
        assert!(parse(r#"{"default":{"192.0.2.1":{}}}"#).unwrap_err().contains("bgpState"));
        assert_eq!(parse("{}").unwrap(), []);
    }
}
