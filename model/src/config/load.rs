//! The file loader: multi-document YAML in, a validated [`Config`] out, every problem
//! found reported at once with the file, document, object and field.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, Service};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Config, Issue, Loaded, Pool, pool_from_api, requested_ips};
use crate::Error;
use crate::api::{self, IPAddressPool, L2Advertisement, LoadBalancerService};
use crate::range::IpRange;

/// Loads the multi-document YAML `text` read from `file`. Warnings (unknown fields,
/// ignored objects, Services that get no address) do not fail the load; errors (bad YAML,
/// bad fields, invalid or overlapping pools) do, all of them reported at once.
pub fn load(file: &str, text: &str) -> Result<Loaded, Error> {
    let mut loader = Loader { file, warnings: Vec::new(), errors: Vec::new() };
    let mut raw = RawObjects::default();
    for (index, doc) in documents(text).into_iter().enumerate() {
        let place = format!("{file}: document {}", index + 1);
        match parse_yaml(doc) {
            Ok(None | Some(Value::Null)) => {}
            Ok(Some(value)) => loader.object(&place, value, &mut raw),
            Err(message) => loader.errors.push(Issue { object: place, field: String::new(), message }),
        }
    }
    let config = loader.validate(raw);
    if loader.errors.is_empty() {
        Ok(Loaded { config, warnings: loader.warnings })
    } else {
        Err(Error::InvalidConfig(loader.errors))
    }
}

/// One YAML document as a dynamic value (`None`: an empty document), or the YAML error
/// on one line, with its line and column in the document.
pub(crate) fn parse_yaml(doc: &str) -> Result<Option<Value>, String> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options(doc, options).map_err(|e| e.to_string())
}

/// The documents of a multi-document YAML stream, split at its `---` markers (a marker
/// may carry the document's first node, as in `--- {kind: X}`) and after `...` end
/// markers, so that each is parsed and numbered on its own, as a YAML parser numbers them:
/// comments and directives before the first marker are no document, nor is the space
/// between an end marker and the next start; an empty document between two markers is one.
fn documents(text: &str) -> Vec<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let blank = |t: &str| {
        t.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l.starts_with('%')
        })
    };
    let mut docs = Vec::new();
    // Where the current document starts, and whether it may be dropped when blank (before
    // the first marker, or after an end marker).
    let (mut start, mut optional) = (0, true);
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let marker = line.strip_prefix("---").filter(|r| r.is_empty() || r.starts_with([' ', '\t', '\r', '\n']));
        if let Some(rest) = marker {
            if !(optional && blank(&text[start..at])) {
                docs.push(&text[start..at]);
            }
            (start, optional) = (at + line.len() - rest.len(), false);
        } else if line.trim_end() == "..." {
            docs.push(&text[start..at]);
            (start, optional) = (at + line.len(), true);
        }
        at += line.len();
    }
    if !(optional && blank(&text[start..])) {
        docs.push(&text[start..]);
    }
    docs
}

/// `value` with an empty `spec` where it has none: an object whose every field is optional.
fn with_spec(mut value: Value) -> Value {
    if value.get("spec").is_none_or(Value::is_null) {
        value["spec"] = Value::Object(Default::default());
    }
    value
}

#[derive(Default)]
struct RawObjects {
    pools: Vec<(String, IPAddressPool)>,
    l2_advertisements: Vec<(String, L2Advertisement)>,
    /// Services and, at the same index, the place each came from: two vectors, so the
    /// Services move into the configuration without a copy (10,000 of them are megabytes).
    services: Vec<LoadBalancerService>,
    service_objects: Vec<String>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    bgp: super::bgp::BgpObjects,
}

struct Loader<'a> {
    file: &'a str,
    warnings: Vec<Issue>,
    errors: Vec<Issue>,
}

/// Field names of our CRDs, for "did you mean" hints on unknown fields.
const KNOWN_FIELDS: &[&str] = &[
    "addresses",
    "autoAssign",
    "avoidBuggyIPs",
    "serviceAllocation",
    "priority",
    "namespaces",
    "namespaceSelectors",
    "serviceSelectors",
    "ipAddressPools",
    "ipAddressPoolSelectors",
    "nodeSelectors",
    "interfaces",
    "loadBalancerIP",
    "loadBalancerClass",
    "externalTrafficPolicy",
    "ipFamilies",
    "ipFamilyPolicy",
];

impl Loader<'_> {
    fn object(&mut self, place: &str, value: Value, raw: &mut RawObjects) {
        let text = |v: &Value, path: &[&str]| -> String {
            let mut v = v;
            for p in path {
                v = &v[*p];
            }
            v.as_str().unwrap_or_default().to_string()
        };
        let api_version = text(&value, &["apiVersion"]);
        let kind = text(&value, &["kind"]);
        let name = text(&value, &["metadata", "name"]);
        let namespace = text(&value, &["metadata", "namespace"]);
        let object = if namespace.is_empty() {
            format!("{place} ({kind} {name})")
        } else {
            format!("{place} ({kind} {namespace}/{name})")
        };
        match (api_version.as_str(), kind.as_str()) {
            ("metallb.io/v1beta1", "IPAddressPool") => {
                if let Some(pool) = self.typed::<IPAddressPool>(&object, value) {
                    raw.pools.push((object, pool));
                }
            }
            ("metallb.io/v1beta1", "L2Advertisement") => {
                if let Some(adv) = self.typed::<L2Advertisement>(&object, value) {
                    let no_pool_choice =
                        adv.spec.ip_address_pools.is_empty() && adv.spec.ip_address_pool_selectors.is_empty();
                    let misspelt_pools =
                        self.warnings.iter().any(|w| w.object == object && w.field.starts_with("spec."));
                    if no_pool_choice && misspelt_pools {
                        self.warn(&object, "spec", "names no pool through ipAddressPools or ipAddressPoolSelectors, so it covers every pool (as MetalLB does)");
                    }
                    raw.l2_advertisements.push((object, adv));
                }
            }
            ("v1", "Service") => {
                if let Some(svc) = self.typed::<Service>(&object, value) {
                    let svc = LoadBalancerService::from(&svc);
                    if svc.is_load_balancer() {
                        raw.services.push(svc);
                        raw.service_objects.push(object);
                    }
                }
            }
            ("v1", "Namespace") => {
                if let Some(ns) = self.typed::<k8s_openapi::api::core::v1::Namespace>(&object, value) {
                    raw.namespaces.insert(ns.metadata.name.unwrap_or_default(), ns.metadata.labels.unwrap_or_default());
                }
            }
            ("v1", "ConfigMap") => self.legacy_config_map(&object, &namespace, &value, raw),
            // v1beta1 is MetalLB's older BGPPeer; the API server converts it, a file is read as v1beta2.
            ("metallb.io/v1beta2" | "metallb.io/v1beta1", "BGPPeer") => {
                if let Some(p) = self.typed::<api::BGPPeer>(&object, value) {
                    raw.bgp.peers.push((object, p));
                }
            }
            ("metallb.io/v1beta1", "BGPAdvertisement") => {
                // MetalLB's minimal sample has no spec (configsamples/simple_pool_adv_bgp.yaml).
                if let Some(a) = self.typed::<api::BGPAdvertisement>(&object, with_spec(value)) {
                    raw.bgp.advertisements.push((object, a));
                }
            }
            ("metallb.io/v1beta1", "BFDProfile") => {
                if let Some(p) = self.typed::<api::BFDProfile>(&object, with_spec(value)) {
                    raw.bgp.bfd_profiles.push((object, p));
                }
            }
            ("metallb.io/v1beta1", "Community") => {
                if let Some(c) = self.typed::<api::Community>(&object, value) {
                    raw.bgp.communities.push((object, c));
                }
            }
            // A BGPPeer's password Secret: `stringData` as written, `data` base64.
            ("v1", "Secret") => {
                let basic_auth = value["type"].as_str() == Some("kubernetes.io/basic-auth");
                let password = match value["stringData"]["password"].as_str().map(str::to_string) {
                    Some(p) => Some(p),
                    None => self
                        .typed::<Secret>(&object, value)
                        .and_then(|s| s.data?.get("password").map(|b| String::from_utf8_lossy(&b.0).into_owned())),
                };
                if let (true, Some(password)) = (basic_auth, password) {
                    raw.bgp.password_secrets.insert(name, password);
                } else {
                    self.warn(&object, "", "Secret that is not a kubernetes.io/basic-auth one with a password; ignored")
                }
            }
            (v, k) if v.starts_with("metallb.io/") => {
                self.warn(&object, "", &format!("{k} ({v}) is ignored: FerroLB does not implement it"))
            }
            ("", _) | (_, "") => self.errors.push(Issue {
                object,
                field: String::new(),
                message: "not a Kubernetes object: apiVersion and kind are required".into(),
            }),
            (v, k) => {
                self.warn(&object, "", &format!("{k} ({v}) is not part of the load balancer configuration; ignored"))
            }
        }
    }

    /// Deserializes `value` as `T`, warning about each unknown field and recording an
    /// error naming the field on failure.
    fn typed<T: DeserializeOwned>(&mut self, object: &str, value: Value) -> Option<T> {
        let mut unknown: Vec<String> = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let de = serde_ignored::Deserializer::new(value, &mut record);
        let result: Result<T, _> = serde_path_to_error::deserialize(de);
        // kube's derived CRD types take apiVersion and kind as given, without reading them.
        for field in unknown.into_iter().filter(|f| f != "apiVersion" && f != "kind") {
            let leaf = field.rsplit('.').next().unwrap_or(&field);
            let hint = did_you_mean(leaf).map(|k| format!(" (did you mean {k}?)")).unwrap_or_default();
            self.warn(object, &field, &format!("unknown field, ignored{hint}"));
        }
        match result {
            Ok(t) => Some(t),
            Err(e) => {
                let field = e.path().to_string();
                self.errors.push(Issue { object: object.into(), field, message: e.into_inner().to_string() });
                None
            }
        }
    }

    fn legacy_config_map(&mut self, object: &str, namespace: &str, value: &Value, raw: &mut RawObjects) {
        let Some(text) = value["data"]["config"].as_str() else {
            self.warn(object, "", "ConfigMap without a MetalLB `config` key; ignored");
            return;
        };
        match crate::legacy::convert(namespace, text) {
            Ok(converted) => {
                self.warn(
                    object,
                    "data.config",
                    "legacy MetalLB ConfigMap converted in memory; `ferrolb-controller convert` writes the equivalent IPAddressPool and L2Advertisement objects",
                );
                for w in converted.warnings {
                    self.warn(object, "data.config", &w);
                }
                let from = |kind: &str, name: &str| format!("{object} -> {kind} {name}");
                for p in converted.pools {
                    raw.pools.push((from("IPAddressPool", p.metadata.name.as_deref().unwrap_or_default()), p));
                }
                for a in converted.l2_advertisements {
                    raw.l2_advertisements
                        .push((from("L2Advertisement", a.metadata.name.as_deref().unwrap_or_default()), a));
                }
            }
            Err(e) => {
                self.errors.push(Issue { object: object.into(), field: "data.config".into(), message: e.to_string() })
            }
        }
    }

    fn warn(&mut self, object: &str, field: &str, message: &str) {
        self.warnings.push(Issue { object: object.into(), field: field.into(), message: message.into() });
    }

    fn validate(&mut self, mut raw: RawObjects) -> Config {
        let mut config = Config { namespaces: raw.namespaces, ..Config::default() };
        let mut pool_objects = Vec::new();
        for (object, pool) in raw.pools {
            let name = pool.metadata.name.clone().unwrap_or_default();
            if let Some(prev) = config.pools.iter().position(|p: &Pool| p.name == name) {
                self.errors.push(Issue {
                    object,
                    field: "metadata.name".into(),
                    message: format!("a pool named {name:?} is already defined by {}", pool_objects[prev]),
                });
                continue;
            }
            let (valid, issues) = pool_from_api(&object, &pool);
            self.errors.extend(issues);
            config.pools.push(valid);
            pool_objects.push(object);
        }
        self.reject_overlaps(&config.pools, &pool_objects);

        for (object, adv) in &raw.l2_advertisements {
            for (i, name) in adv.spec.ip_address_pools.iter().enumerate() {
                if !config.pools.iter().any(|p| &p.name == name) {
                    self.warn(object, &format!("spec.ipAddressPools[{i}]"), &format!("no pool named {name:?}"));
                }
            }
        }
        let bgp_advertised = !raw.bgp.advertisements.is_empty();
        if raw.l2_advertisements.is_empty() && !bgp_advertised && !config.pools.is_empty() {
            self.warn(self.file, "", "no L2Advertisement: addresses are assigned but not announced (as in MetalLB)");
        }
        let (bgp, errors, warnings) = super::bgp::validate(std::mem::take(&mut raw.bgp), &config.pools);
        self.errors.extend(errors);
        self.warnings.extend(warnings);
        config.bgp = bgp;
        config.l2_advertisements = raw.l2_advertisements.into_iter().map(|(_, a)| a).collect();

        for (object, svc) in raw.service_objects.iter().zip(&raw.services) {
            // A bad request fails that Service (the allocator says why), not the file.
            match requested_ips(svc) {
                Err((field, message)) => self.warn(object, &field, &message),
                Ok((_, field)) if field.contains(api::LEGACY_ANNOTATION_PREFIX) => self.warn(
                    object,
                    &field,
                    "the metallb.universe.tf/ annotation prefix is deprecated; use metallb.io/",
                ),
                Ok(_) => {}
            }
        }
        config.services = raw.services;
        config.services.shrink_to_fit();
        config
    }

    /// Overlapping pools are rejected: one address must have one pool. Sorting makes
    /// this O(n log n) in the number of ranges. (The controller, which sees pools one at
    /// a time, uses [`overlap`].)
    fn reject_overlaps(&mut self, pools: &[Pool], objects: &[String]) {
        let mut all: Vec<(IpRange, usize)> =
            pools.iter().enumerate().flat_map(|(i, p)| p.ranges.iter().map(move |r| (*r, i))).collect();
        all.sort();
        for pair in all.windows(2) {
            let ((a, ai), (b, bi)) = (pair[0], pair[1]);
            // Within one pool, `pool_from_api` has said so already.
            if a.overlaps(&b) && ai != bi {
                let message = format!("range {b} overlaps range {a} of pool {:?} ({})", pools[ai].name, objects[ai]);
                self.errors.push(Issue { object: objects[bi].clone(), field: "spec.addresses".into(), message });
            }
        }
    }
}

fn did_you_mean(field: &str) -> Option<&'static str> {
    let f = field.to_ascii_lowercase();
    KNOWN_FIELDS
        .iter()
        .map(|k| (edit_distance(&f, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
