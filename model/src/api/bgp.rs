//! MetalLB's BGP objects, field for field: `BGPPeer` (metallb.io/v1beta2),
//! `BGPAdvertisement`, `BFDProfile` and `Community` (metallb.io/v1beta1), as
//! `api/v1beta2/bgppeer_types.go` and `api/v1beta1/{bgpadvertisement,bfdprofile,community}_types.go`
//! define them at MetalLB 7938d3f89. Durations stay the strings Kubernetes stores
//! (`metav1.Duration`, Go's syntax: `90s`, `9m0s`); [`crate::config::bgp`] reads them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A BGP session to a router, from the nodes its selectors pick.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta2", kind = "BGPPeer", namespaced)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// AS number of the local end of the session.
    #[serde(rename = "myASN")]
    pub my_asn: u32,
    /// AS number expected from the router; this or `dynamicASN`.
    #[serde(rename = "peerASN", default, skip_serializing_if = "is_zero")]
    pub peer_asn: u32,
    /// AS number the local end presents, in place of `myASN` (FRR's `local-as`).
    #[serde(rename = "localASN", default, skip_serializing_if = "is_zero")]
    pub local_asn: u32,
    /// `internal` or `external`: the router's AS number is learned, with that constraint.
    #[serde(rename = "dynamicASN", default, skip_serializing_if = "String::is_empty")]
    pub dynamic_asn: String,
    /// Address to dial; this or `interface` (unnumbered BGP).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_address: String,
    /// Port to dial; 179 when unset.
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub peer_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_time: Option<String>,
    #[serde(rename = "routerID", default, skip_serializing_if = "String::is_empty")]
    pub router_id: String,
    /// Nodes that open this session; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password, in the clear; this or `passwordSecret`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// A `kubernetes.io/basic-auth` Secret in the speakers' namespace holding `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretReference>,
    /// A BFDProfile's name: BFD runs beside the session with it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bfd_profile: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable_graceful_restart: bool,
    #[serde(rename = "ebgpMultiHop", default, skip_serializing_if = "is_false")]
    pub ebgp_multi_hop: bool,
    /// A host VRF whose interface reaches the router.
    #[serde(rename = "vrf", default, skip_serializing_if = "String::is_empty")]
    pub vrf: String,
    /// Deprecated by MetalLB in favour of `dualStackAddressFamily`.
    #[serde(rename = "disableMP", default, skip_serializing_if = "is_false")]
    pub disable_mp: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dual_stack_address_family: bool,
}

/// A Secret by name (and namespace, which MetalLB ignores: the speakers' own).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Announces the addresses of the selected pools over BGP from the selected nodes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta1", kind = "BGPAdvertisement", namespaced)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// The IPv4 prefix length announced (32: each address alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_length: Option<i32>,
    /// The IPv6 prefix length announced (128: each address alone).
    #[serde(rename = "aggregationLengthV6", default, skip_serializing_if = "Option::is_none")]
    pub aggregation_length_v6: Option<i32>,
    /// BGP LOCAL_PREF (iBGP only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub local_pref: u32,
    /// `AA:NN`, `large:A:B:C`, or a name a Community object gives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeers by name; every peer when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

/// BFD timers and modes a BGPPeer may name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta1", kind = "BFDProfile", namespaced)]
#[serde(rename_all = "camelCase")]
pub struct BFDProfileSpec {
    /// Milliseconds, 10 to 60000 (300 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_interval: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmit_interval: Option<u32>,
    /// 2 to 255 (3 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_multiplier: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_interval: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_mode: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_mode: Option<bool>,
    /// 1 to 254 (254 when unset).
    #[serde(rename = "minimumTtl", default, skip_serializing_if = "Option::is_none")]
    pub minimum_ttl: Option<u32>,
}

/// Names for community values, usable in BGPAdvertisements.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(group = "metallb.io", version = "v1beta1", kind = "Community", namespaced)]
pub struct CommunitySpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<CommunityAlias>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CommunityAlias {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}
