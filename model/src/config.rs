//! The configuration model: the multi-document YAML a cluster would hold (IPAddressPools,
//! L2Advertisements, Services, Namespaces, and MetalLB's legacy ConfigMap), validated into
//! a [`Config`], and what one node announces from it ([`announcements`]).
//!
//! Every object in a file counts, whatever its namespace: the file is the configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::api::{self, ANNOTATION_LOAD_BALANCER_IPS, IPAddressPool, L2Advertisement, LoadBalancerService};
use crate::range::{Family, IpRange};

/// A problem with one object: where it is, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// `file: document N (Kind namespace/name)`.
    pub object: String,
    /// A dotted path into the object, or empty when the whole object is meant.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: {}: {}", self.object, self.field, self.message)
        }
    }
}

/// A validated pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub ranges: Vec<IpRange>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    /// `spec.serviceAllocation`: which Services the pool serves, and its priority. A pool
    /// with one serves only the Services it matches; `None` serves every Service.
    pub allocation: Option<crate::api::ServiceAllocation>,
}

impl Pool {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }
}

/// The addresses one Service holds and their pool: what the allocator decides and what
/// [`announcements`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddresses {
    /// `namespace/name`.
    pub service: String,
    pub pool: String,
    pub addresses: Vec<IpAddr>,
}

/// A validated configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub pools: Vec<Pool>,
    pub l2_advertisements: Vec<L2Advertisement>,
    /// Every LoadBalancer Service of the file, in file order. Which are ours (by
    /// `loadBalancerClass`) is the allocator's call.
    pub services: Vec<LoadBalancerService>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// BGP mode's objects, validated.
    pub bgp: bgp::BgpConfig,
}

/// A configuration and the warnings met while loading it.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Issue>,
}

/// A pool as the allocator uses it, from its API object, with every problem found (`object`
/// names it in the issues). The pool is usable only if there are none.
pub fn pool_from_api(object: &str, pool: &IPAddressPool) -> (Pool, Vec<Issue>) {
    let mut issues = Vec::new();
    let mut ranges = Vec::new();
    for (i, a) in pool.spec.addresses.iter().enumerate() {
        match a.parse::<IpRange>() {
            Ok(r) => ranges.push(r),
            Err(e) => issues.push(Issue {
                object: object.to_string(),
                field: format!("spec.addresses[{i}]"),
                message: e.to_string(),
            }),
        }
    }
    if pool.spec.addresses.is_empty() {
        issues.push(Issue {
            object: object.to_string(),
            field: "spec.addresses".into(),
            message: "a pool needs at least one address range".into(),
        });
    }
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            if a.overlaps(b) {
                issues.push(Issue {
                    object: object.to_string(),
                    field: "spec.addresses".into(),
                    message: format!("ranges {a} and {b} overlap"),
                });
            }
        }
    }
    let valid = Pool {
        name: pool.metadata.name.clone().unwrap_or_default(),
        namespace: pool.metadata.namespace.clone().unwrap_or_default(),
        labels: pool.metadata.labels.clone().unwrap_or_default(),
        ranges,
        auto_assign: pool.spec.auto_assign(),
        avoid_buggy_ips: pool.spec.avoid_buggy_ips(),
        allocation: pool.spec.service_allocation.clone(),
    };
    (valid, issues)
}

/// The first range of `b` that overlaps a range of `a`, described.
pub fn overlap(a: &Pool, b: &Pool) -> Option<String> {
    a.ranges.iter().find_map(|ra| {
        b.ranges
            .iter()
            .find(|rb| ra.overlaps(rb))
            .map(|rb| format!("range {rb} overlaps range {ra} of pool {:?}", a.name))
    })
}

/// The addresses a Service asks for (annotation or `spec.loadBalancerIP`) and the field
/// it asked through, or the field and what is wrong with it. As MetalLB's
/// `getDesiredLbIPs` (`controller/service.go`): an empty annotation is unset, both set is
/// an error, and the annotation holds one address or two of different families.
pub fn requested_ips(svc: &LoadBalancerService) -> Result<(Vec<IpAddr>, String), (String, String)> {
    let annotation = svc.annotation(ANNOTATION_LOAD_BALANCER_IPS).filter(|(v, _)| !v.is_empty());
    if let Some((list, legacy)) = annotation {
        let name = if legacy {
            ANNOTATION_LOAD_BALANCER_IPS.replacen("metallb.io/", api::LEGACY_ANNOTATION_PREFIX, 1)
        } else {
            ANNOTATION_LOAD_BALANCER_IPS.to_string()
        };
        let field = format!("metadata.annotations[{name:?}]");
        if svc.load_balancer_ip.is_some() {
            return Err((field, "is set together with spec.loadBalancerIP: set one of them".into()));
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for part in list.split(',').map(str::trim) {
            let ip = part.parse().map_err(|_| (field.clone(), format!("{part:?} is not an IP address")))?;
            if ips.iter().any(|i| Family::of(*i) == Family::of(ip)) {
                return Err((field, "at most one address per family".into()));
            }
            ips.push(ip);
        }
        return Ok((ips, field));
    }
    let field = "spec.loadBalancerIP".to_string();
    match &svc.load_balancer_ip {
        Some(ip) => match ip.trim().parse() {
            Ok(ip) => Ok((vec![ip], field)),
            Err(_) => Err((field, format!("{ip:?} is not an IP address"))),
        },
        None => Ok((Vec::new(), field)),
    }
}

pub mod bgp;
mod load;
mod plan;

pub use load::load;
pub(crate) use load::parse_yaml;
pub use plan::*;

#[cfg(test)]
mod tests;
