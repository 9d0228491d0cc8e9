//! MetalLB's legacy (before v0.13) ConfigMap format, converted to IPAddressPool and
//! L2Advertisement objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::Error;
use crate::api::{IPAddressPool, IPAddressPoolSpec, L2Advertisement, L2AdvertisementSpec};

#[derive(Deserialize)]
struct LegacyConfig {
    #[serde(default, rename = "address-pools")]
    address_pools: Vec<LegacyPool>,
    #[serde(default)]
    peers: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct LegacyPool {
    name: String,
    protocol: String,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default, rename = "auto-assign")]
    auto_assign: Option<bool>,
    #[serde(default, rename = "avoid-buggy-ips")]
    avoid_buggy_ips: Option<bool>,
}

/// What a legacy ConfigMap converts to, and what could not be converted.
#[derive(Debug, Clone, Default)]
pub struct Converted {
    pub pools: Vec<IPAddressPool>,
    pub l2_advertisements: Vec<L2Advertisement>,
    pub warnings: Vec<String>,
}

/// Converts the `config` key of MetalLB's legacy ConfigMap. Each layer-2 pool becomes an
/// IPAddressPool and an L2Advertisement of the same name in `namespace`; BGP pools and
/// peers are reported, not converted.
pub fn convert(namespace: &str, config: &str) -> Result<Converted, Error> {
    let mut warnings = Vec::new();
    let value = crate::config::parse_yaml(config).map_err(Error::InvalidLegacyConfig)?.unwrap_or_default();
    let legacy: LegacyConfig = serde_ignored::deserialize(value, |path| {
        warnings.push(format!("unknown key {path} ignored"));
    })
    .map_err(|e| Error::InvalidLegacyConfig(e.to_string()))?;
    let mut out = Converted { warnings, ..Converted::default() };
    if !legacy.peers.is_empty() {
        out.warnings
            .push(format!("{} BGP peer(s) not converted: FerroLB implements layer-2 mode only", legacy.peers.len()));
    }
    for pool in legacy.address_pools {
        if pool.protocol != "layer2" {
            out.warnings.push(format!(
                "pool {:?} uses protocol {:?}: not converted, FerroLB implements layer-2 mode only",
                pool.name, pool.protocol
            ));
            continue;
        }
        let meta =
            ObjectMeta { name: Some(pool.name.clone()), namespace: Some(namespace.into()), ..ObjectMeta::default() };
        out.pools.push(IPAddressPool {
            metadata: meta.clone(),
            spec: IPAddressPoolSpec {
                addresses: pool.addresses,
                auto_assign: pool.auto_assign,
                avoid_buggy_ips: pool.avoid_buggy_ips,
                service_allocation: None,
            },
            status: None,
        });
        out.l2_advertisements.push(L2Advertisement {
            metadata: meta,
            spec: L2AdvertisementSpec { ip_address_pools: vec![pool.name], ..L2AdvertisementSpec::default() },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_layer2_and_reports_bgp() {
        let text = "peers:\n- peer-address: 192.0.2.1\n  peer-asn: 64501\n  my-asn: 64500\naddress-pools:\n- name: lan\n  protocol: layer2\n  auto-assign: false\n  avoid-buggy-ips: true\n  addresses: [192.0.2.64/26]\n- name: bgp\n  protocol: bgp\n  addresses: [198.51.100.0/24]\n";
        let c = convert("metallb-system", text).unwrap();
        assert_eq!(c.pools.len(), 1);
        assert_eq!(c.pools[0].spec.addresses, ["192.0.2.64/26"]);
        assert_eq!(c.pools[0].spec.auto_assign, Some(false));
        assert_eq!(c.pools[0].spec.avoid_buggy_ips, Some(true));
        assert_eq!(c.l2_advertisements[0].spec.ip_address_pools, ["lan"]);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(convert("x", "address-pools: 3").is_err());
    }
}
