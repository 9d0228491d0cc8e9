use std::collections::{BTreeMap, BTreeSet};

use ferrolb_model::api::{self, InterfaceInfo, ServiceL2Status};

use kube::ResourceExt;

use super::reporter::conflict_event;
use super::status::sync_l2_statuses;
use super::strict_arp::watch_kube_proxy;
use super::*;

fn obj<T: serde::de::DeserializeOwned>(yaml: &str) -> Arc<T> {
    Arc::new(serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}: {yaml}")))
}

fn pool() -> Arc<IPAddressPool> {
    obj(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24]}\n",
    )
}

fn adv(extra: &str) -> Arc<L2Advertisement> {
    obj(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2, namespace: metallb-system}}\nspec: {{{extra}}}\n"
    ))
}

fn service(name: &str, ip: &str, policy: &str) -> Arc<Service> {
    obj(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{type: LoadBalancer, externalTrafficPolicy: {policy}, ports: [{{port: 80}}]}}\nstatus: {{loadBalancer: {{ingress: [{{ip: '{ip}'}}]}}}}\n"
    ))
}

fn slice(service: &str, endpoints: &[(&str, bool)]) -> Arc<EndpointSlice> {
    let eps: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (node, ready))| {
            format!("{{addresses: ['10.42.0.{i}'], nodeName: {node}, conditions: {{ready: {ready}}}}}")
        })
        .collect();
    obj(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nmetadata: {{name: {service}-x, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\nendpoints: [{}]\n",
        eps.join(", ")
    ))
}

fn node(name: &str, labels: &str, network_unavailable: bool) -> Arc<Node> {
    obj(&format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nstatus: {{conditions: [{{type: NetworkUnavailable, status: '{}'}}, {{type: Ready, status: 'True'}}]}}\n",
        if network_unavailable { "True" } else { "False" }
    ))
}

fn member(name: &str) -> Member {
    Member { name: name.into(), labels: BTreeMap::new(), settled: true }
}

#[test]
fn announced_addresses_come_from_service_status_with_endpoint_rules() {
    let services = [
        service("web", "198.51.100.10", "Cluster"),
        service("local", "198.51.100.11", "Local"),
        service("idle", "198.51.100.12", "Cluster"),
        service("elsewhere", "203.0.113.5", "Cluster"),
    ];
    let slices = [
        slice("web", &[("n1", true)]),
        slice("local", &[("n2", true), ("n3", false)]),
        slice("idle", &[("n1", false)]),
    ];
    let p = plan(&services, &slices, &[pool()], &[adv("")], "metallb-system", None, None);
    let by_ip: BTreeMap<String, Option<BTreeSet<String>>> =
        p.candidates.iter().map(|c| (c.ip.to_string(), c.only_nodes.clone())).collect();
    assert_eq!(by_ip.len(), 3, "203.0.113.5 is in no pool: not announced: {by_ip:?}");
    assert_eq!(by_ip["198.51.100.10"], None, "Cluster policy with a ready endpoint: any node");
    assert_eq!(by_ip["198.51.100.11"], Some(["n2".to_string()].into()), "Local: only nodes with a ready endpoint");
    assert_eq!(by_ip["198.51.100.12"], Some(BTreeSet::new()), "no ready endpoint anywhere: nobody");
    let n2 = config::NodeInfo::new("n2");
    assert!(p.eligible(&p.candidates[1], &n2));
    assert!(!p.eligible(&p.candidates[1], &config::NodeInfo::new("n3")));
    assert!(!p.eligible(&p.candidates[2], &n2));
}

#[test]
fn only_our_namespace_and_class_count() {
    let mut other_ns = (*pool()).clone();
    other_ns.metadata.namespace = Some("default".into());
    let mut classy = (*service("classy", "198.51.100.20", "Cluster")).clone();
    classy.spec.as_mut().unwrap().load_balancer_class = Some("other.example/lb".into());
    let slices = [slice("web", &[("n1", true)]), slice("classy", &[("n1", true)])];
    let services = [service("web", "198.51.100.10", "Cluster"), Arc::new(classy)];
    assert!(
        plan(&services, &slices, &[Arc::new(other_ns)], &[adv("")], "metallb-system", None, None).candidates.is_empty()
    );
    let p = plan(&services, &slices, &[pool()], &[adv("")], "metallb-system", None, None);
    assert_eq!(p.candidates.iter().map(|c| c.ip.to_string()).collect::<Vec<_>>(), vec!["198.51.100.10"]);
    let p = plan(&services, &slices, &[pool()], &[adv("")], "metallb-system", Some("other.example/lb"), None);
    assert_eq!(p.candidates.iter().map(|c| c.ip.to_string()).collect::<Vec<_>>(), vec!["198.51.100.20"]);
}

#[test]
fn node_objects_give_labels_and_take_out_unreachable_nodes() {
    let p = plan(
        &[service("web", "198.51.100.10", "Cluster")],
        &[slice("web", &[("n1", true)])],
        &[pool()],
        &[adv("nodeSelectors: [{matchLabels: {lb: 'yes'}}]")],
        "metallb-system",
        None,
        None,
    );
    let nodes = [node("n1", "lb: 'yes'", false), node("n2", "lb: 'yes'", true), node("n3", "lb: 'no'", false)];
    let members = members_with_nodes(&[member("n1"), member("n2"), member("n3"), member("unknown")], &nodes);
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["n1", "n3", "unknown"], "n2's network is unavailable");
    let (owners, _) = ferrolb_model::ownership::decide(&p, &members, "n1");
    assert_eq!(owners, vec![Some("n1".to_string())], "only n1 is selected by the L2Advertisement");
}

#[test]
fn kube_proxy_ipvs_without_strict_arp_is_a_problem() {
    let ipvs = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n";
    assert!(strict_arp_problem(ipvs).unwrap().contains("strictARP: true"));
    assert_eq!(strict_arp_problem(&ipvs.replace("strictARP: false", "strictARP: true")), None);
    assert_eq!(strict_arp_problem("mode: iptables\n"), None);
    assert_eq!(strict_arp_problem("mode: ''\n"), None, "empty mode is iptables");
    assert!(strict_arp_problem("mode: ipvs\n").is_some(), "strictARP defaults to false");
    assert_eq!(strict_arp_problem(": not yaml ["), None);
}

#[test]
fn one_l2_status_per_announced_service_with_its_interfaces() {
    let announced: BTreeMap<String, BTreeSet<String>> = [
        ("default/web".to_string(), ["eth0".to_string()].into()),
        ("shop/api".to_string(), ["eth0".to_string(), "eth1".to_string()].into()),
    ]
    .into();
    let statuses = l2_statuses("n1", "metallb-system", None, &announced);
    assert_eq!(statuses.len(), 2);
    let web = statuses.values().find(|s| s.status.as_ref().unwrap().service_name == "web").unwrap();
    assert_eq!(web.metadata.namespace.as_deref(), Some("metallb-system"));
    assert_eq!(web.metadata.labels.as_ref().unwrap()[LABEL_STATUS_NODE], "n1");
    let st = web.status.as_ref().unwrap();
    assert_eq!((st.node.as_str(), st.service_namespace.as_str()), ("n1", "default"));
    assert_eq!(st.interfaces, vec![InterfaceInfo { name: "eth0".into() }]);
    // Stable names, different per node.
    assert_eq!(
        l2_statuses("n1", "metallb-system", None, &announced).keys().collect::<Vec<_>>(),
        statuses.keys().collect::<Vec<_>>()
    );
    assert!(l2_statuses("n2", "metallb-system", None, &announced).keys().all(|k| !statuses.contains_key(k)));
}

/// The new owner of a Service removes the old owner's status for it (the old owner died
/// or was deleted); other nodes' statuses of other Services are theirs to keep.
#[test]
fn stale_l2_statuses_are_own_gone_ones_and_others_for_services_now_announced_here() {
    let one = |svc: &str| -> BTreeMap<String, BTreeSet<String>> { [(svc.to_string(), BTreeSet::new())].into() };
    let owner = pod_owner(Some("ferrolb-speaker-x".into()), Some("uid-1".into()));
    let desired = l2_statuses("n1", "metallb-system", owner.as_ref(), &one("default/web"));
    assert_eq!(
        desired.values().next().unwrap().metadata.owner_references.as_ref().unwrap()[0].name,
        "ferrolb-speaker-x"
    );
    let mut existing: Vec<ServiceL2Status> = Vec::new();
    existing.extend(l2_statuses("n2", "metallb-system", None, &one("default/web")).into_values());
    existing.extend(l2_statuses("n2", "metallb-system", None, &one("default/db")).into_values());
    existing.extend(l2_statuses("n1", "metallb-system", None, &one("default/gone")).into_values());
    existing.extend(desired.values().cloned());
    let stale = stale_l2_statuses("n1", &existing, &desired);
    let name = |i: usize| existing[i].metadata.name.as_deref().unwrap();
    assert_eq!(stale, vec![name(0), name(2)], "n2's web (now ours) and our own gone one; n2's db stays");
}

#[tokio::test]
async fn l2_statuses_are_synced_stale_ones_deleted_current_ones_left_alone() {
    use http::{Method, Request, Response};
    use kube::client::Body;
    let announced: BTreeMap<String, BTreeSet<String>> = [
        ("default/web".to_string(), ["eth0".to_string()].into()),
        ("default/db".to_string(), ["eth0".to_string()].into()),
    ]
    .into();
    let desired = l2_statuses("n1", "metallb-system", None, &announced);
    let (db_name, db) = desired.iter().find(|(_, o)| o.status.as_ref().unwrap().service_name == "db").unwrap();
    let web_name = desired.keys().find(|n| *n != db_name).unwrap().clone();
    let mut current_db = serde_json::to_value(db).unwrap();
    current_db["apiVersion"] = "metallb.io/v1beta1".into();
    current_db["kind"] = "ServiceL2Status".into();
    let stale = serde_json::json!({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status",
        "metadata": {"name": "l2-gone", "namespace": "metallb-system", "labels": {LABEL_STATUS_NODE: "n1"}}, "spec": {}});
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api: Api<ServiceL2Status> = Api::namespaced(kube::Client::new(service, "default"), "metallb-system");
    let server = tokio::spawn(async move {
        let ok = |v: serde_json::Value| Response::builder().body(Body::from(serde_json::to_vec(&v).unwrap())).unwrap();
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (m, uri) = (req.method().clone(), req.uri().to_string());
            let body = req.into_body().collect_bytes().await.unwrap();
            seen.push(format!("{m} {}", uri.split('?').next().unwrap()));
            if m == Method::GET {
                send.send_response(ok(
                    serde_json::json!({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2StatusList",
                    "metadata": {}, "items": [stale.clone(), current_db.clone()]}),
                ));
            } else if m == Method::DELETE {
                send.send_response(ok(serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})));
            } else {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                send.send_response(ok(
                    serde_json::json!({"apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status",
                    "metadata": {"name": "x"}, "spec": {}, "status": v["status"].clone()}),
                ));
            }
        }
        seen
    });
    sync_l2_statuses(&api, "n1", &desired).await.unwrap();
    drop(api);
    let base = "/apis/metallb.io/v1beta1/namespaces/metallb-system/servicel2statuses";
    assert_eq!(
        server.await.unwrap(),
        vec![
            format!("GET {base}"),
            format!("DELETE {base}/l2-gone"),
            format!("PATCH {base}/{web_name}"),
            format!("PATCH {base}/{web_name}/status"),
        ],
        "db is already right: not written"
    );
}

#[tokio::test]
async fn a_conflict_becomes_a_warning_event_on_the_services_of_the_address() {
    use http::{Method, Request, Response};
    use kube::client::Body;
    let (store, mut writer) = kube::runtime::reflector::store::<Service>();
    let mut web = (*service("web", "198.51.100.10", "Cluster")).clone();
    web.metadata.uid = Some("uid-web".into());
    writer.apply_watcher_event(&watcher::Event::Apply(web));
    writer.apply_watcher_event(&watcher::Event::Apply((*service("other", "198.51.100.11", "Cluster")).clone()));
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let recorder = Recorder::new(
        kube::Client::new(mock, "default"),
        Reporter { controller: "ferrolb-speaker".into(), instance: None },
    );
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("one event");
        assert_eq!(
            (req.method(), req.uri().path()),
            (&Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events")
        );
        let body: serde_json::Value = serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(body["reason"], "AddressConflict");
        assert_eq!(body["type"], "Warning");
        assert_eq!(body["regarding"]["name"], "web");
        assert!(body["note"].as_str().unwrap().contains("198.51.100.10"));
        send.send_response(
            Response::builder().status(201).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
        );
        assert!(handle.next_request().await.is_none(), "only the Service of that address");
    });
    conflict_event(&recorder, &store, "n1", "198.51.100.10".parse().unwrap()).await;
    drop(recorder);
    server.await.unwrap();
}

/// kube-proxy's ConfigMap over time: found in IPVS mode without strictARP, fixed, broken
/// again (a kube-proxy upgrade), then gone while the watch was lost (a kube-proxy
/// replacement), seen through a re-list. One Warning Event each time the problem
/// appears, the metric follows every step, and every request carries the field selector
/// RBAC's `resourceNames` requires.
#[tokio::test]
async fn kube_proxy_is_watched_and_strict_arp_fixed_later_is_seen() {
    use http::{Request, Response};
    use kube::client::Body;
    let config_map = |strict: bool, rv: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system", "resourceVersion": rv},
            "data": {"config.conf": format!("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: {strict}\n")}})
    };
    let list = |items: Vec<serde_json::Value>| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "9"}, "items": items});
    let modified = |strict: bool, rv: &str| serde_json::json!({"type": "MODIFIED", "object": config_map(strict, rv)});
    let gone = serde_json::json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired", "message": "too old resource version"}});
    // What the API server answers, in order; the test lets each watch answer in its turn.
    let (step, mut steps) = tokio::sync::mpsc::unbounded_channel::<()>();
    let script = vec![
        ("list", false, list(vec![config_map(false, "1")])),
        ("watch", true, modified(true, "2")),
        ("watch", true, modified(false, "3")),
        ("watch", true, gone),
        ("list", false, list(vec![])),
    ];
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(mock, "default");
    let recorder = Recorder::new(client.clone(), Reporter { controller: "ferrolb-speaker".into(), instance: None });
    let metrics = Arc::new(Metrics::default());
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let server = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let ok =
                |v: &serde_json::Value| Response::builder().body(Body::from(serde_json::to_vec(v).unwrap())).unwrap();
            let mut script = script.into_iter();
            let mut held = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                let uri = req.uri().to_string();
                let body = req.into_body().collect_bytes().await.unwrap();
                if uri.starts_with("/api/v1/nodes/n1") {
                    // The Node's uid, for the Event.
                    send.send_response(ok(&serde_json::json!({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": "n1", "uid": "uid-n1"}})));
                    continue;
                }
                if uri.contains("/events") {
                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(event["regarding"]["uid"], "uid-n1", "the Node Event carries its uid");
                    seen.lock().unwrap().push(format!("event {}", event["reason"].as_str().unwrap()));
                    send.send_response(ok(&event));
                    continue;
                }
                assert!(uri.starts_with("/api/v1/namespaces/kube-system/configmaps?"), "{uri}");
                assert!(uri.contains("fieldSelector=metadata.name%3Dkube-proxy"), "{uri}");
                let kind = if uri.contains("watch=true") { "watch" } else { "list" };
                match script.next() {
                    Some((expected, wait, answer)) => {
                        assert_eq!(kind, expected, "{uri}");
                        seen.lock().unwrap().push(kind.to_string());
                        if wait {
                            steps.recv().await.unwrap();
                        }
                        send.send_response(ok(&answer));
                    }
                    None => held.push(send), // later watches stay open with nothing to say
                }
            }
        })
    };
    let watch = tokio::spawn(watch_kube_proxy(
        Api::namespaced(client.clone(), "kube-system"),
        recorder,
        "n1".into(),
        Api::all(client.clone()),
        metrics.clone(),
    ));
    let until = |want: i64| {
        let metrics = metrics.clone();
        tokio::time::timeout(Duration::from_secs(10), async move {
            while metrics.strict_arp_missing.get() != want {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    until(1).await.expect("the problem reported");
    step.send(()).unwrap();
    until(0).await.expect("the fix seen");
    step.send(()).unwrap();
    until(1).await.expect("the problem back");
    step.send(()).unwrap();
    until(0).await.expect("the ConfigMap gone, through a re-list");
    watch.abort();
    assert!(!server.is_finished() || server.await.is_ok(), "the mock API server failed");
    assert_eq!(
        *seen.lock().unwrap(),
        ["list", "event StrictARPMissing", "watch", "watch", "event StrictARPMissing", "watch", "list"]
    );
}

/// A pool edit gone wrong (the controller reports it and keeps serving the pool's last
/// valid version) does not stop the speakers answering for what the pool holds: ranges that
/// still parse count, and an address in none of them is placed by the controller's
/// `ip-allocated-from-pool` annotation.
#[test]
fn a_broken_pool_edit_keeps_its_addresses_answered() {
    let broken: Arc<IPAddressPool> = obj(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24, 203.0.113.0/33]}\n",
    );
    let mut was_in_the_typo: Service = (*service("db", "203.0.113.7", "Cluster")).clone();
    was_in_the_typo.metadata.annotations =
        Some([(api::ANNOTATION_ALLOCATED_FROM_POOL.to_string(), "lan".to_string())].into());
    let services = [
        service("web", "198.51.100.10", "Cluster"),
        Arc::new(was_in_the_typo),
        service("stray", "203.0.113.8", "Cluster"),
    ];
    let slices = [slice("web", &[("n1", true)]), slice("db", &[("n1", true)]), slice("stray", &[("n1", true)])];
    let p = plan(&services, &slices, &[broken], &[adv("ipAddressPools: [lan]")], "metallb-system", None, None);
    let ips: Vec<String> = p.candidates.iter().map(|c| c.ip.to_string()).collect();
    assert_eq!(ips, ["198.51.100.10", "203.0.113.7"], "203.0.113.8 was never given by the controller from lan");
}

#[test]
fn trimmed_objects_keep_what_the_speaker_reads() {
    let mut annotated: Service = (*service("api", "198.51.100.11", "Cluster")).clone();
    annotated.metadata.annotations = Some(
        [(api::ANNOTATION_ALLOCATED_FROM_POOL.to_string(), "lan".to_string()), ("note".to_string(), "x".repeat(4096))]
            .into(),
    );
    let services = [service("web", "198.51.100.10", "Local"), Arc::new(annotated)];
    let slices = [slice("web", &[("n1", true), ("n2", false)]), slice("api", &[("n3", true)])];
    let before = plan(&services, &slices, &[pool()], &[adv("")], "metallb-system", None, None);
    let trimmed_services: Vec<Arc<Service>> = services
        .iter()
        .map(|s| {
            let mut s = (**s).clone();
            trim::service_for_speaker(&mut s);
            Arc::new(s)
        })
        .collect();
    assert_eq!(trimmed_services[1].annotations().keys().collect::<Vec<_>>(), [api::ANNOTATION_ALLOCATED_FROM_POOL]);
    let trimmed_slices: Vec<Arc<EndpointSlice>> = slices
        .iter()
        .map(|s| {
            let mut s = (**s).clone();
            trim::slice(&mut s);
            assert!(s.endpoints.iter().all(|e| e.addresses.is_empty()));
            Arc::new(s)
        })
        .collect();
    assert_eq!(plan(&trimmed_services, &trimmed_slices, &[pool()], &[adv("")], "metallb-system", None, None), before);

    let mut n: Node = serde_saphyr::from_str(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {lb: 'yes'}}\nstatus:\n  conditions: [{type: NetworkUnavailable, status: 'True'}, {type: Ready, status: 'True'}]\n  images: [{names: [registry.example/big:1], sizeBytes: 1000000}]\n  addresses: [{type: InternalIP, address: 192.0.2.5}]\n",
    )
    .unwrap();
    trim::node(&mut n);
    let status = n.status.as_ref().unwrap();
    assert!(status.images.is_none() && status.addresses.is_none());
    assert_eq!(members_with_nodes(&[member("n1")], &[Arc::new(n.clone())]), vec![], "still NetworkUnavailable");
    assert_eq!(n.labels().get("lb").map(String::as_str), Some("yes"));
}

/// BGP mode in a cluster: the watched BGP objects are validated as a file's are, and
/// every node an advertisement selects announces, a `Local` Service only from nodes with a
/// ready endpoint and nothing without one (MetalLB's `ShouldAnnounce`,
/// speaker/bgp_controller.go:155-200 at 7938d3f89); an invalid peer is left out.
#[test]
fn bgp_routes_follow_the_endpoints_per_node() {
    let services = [
        service("web", "198.51.100.10", "Cluster"),
        service("local", "198.51.100.11", "Local"),
        service("idle", "198.51.100.12", "Cluster"),
    ];
    let slices = [slice("web", &[("n1", true)]), slice("local", &[("n2", true), ("n3", false)]), slice("idle", &[])];
    fn named<'a>(kind: &str, o: &'a str) -> (String, &'a str) {
        (format!("{kind} metallb-system/x"), o)
    }
    let objects = ferrolb_model::config::bgp::BgpObjects {
        peers: [
            named("BGPPeer", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor, namespace: metallb-system}\nspec: {myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1}\n"),
            named("BGPPeer", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: broken, namespace: metallb-system}\nspec: {myASN: 64513, peerAddress: 192.0.2.2}\n"),
        ]
        .into_iter()
        .map(|(n, y)| (n, (*obj::<ferrolb_model::api::BGPPeer>(y)).clone()))
        .collect(),
        advertisements: vec![(
            "BGPAdvertisement metallb-system/all".into(),
            (*obj::<ferrolb_model::api::BGPAdvertisement>("apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: all, namespace: metallb-system}\nspec: {}\n")).clone(),
        )],
        ..Default::default()
    };
    let p = plan(&services, &slices, &[pool()], &[], "metallb-system", None, Some(objects));
    assert!(p.candidates.is_empty(), "no L2Advertisement: nothing for layer 2");
    let bgp = p.bgp.as_deref().expect("BGP objects: a BGP plan");
    assert_eq!(
        bgp.config.bgp.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["tor"],
        "the peer without an ASN is left out"
    );
    let routes = |n: &str| -> Vec<String> {
        bgp.routes(&config::NodeInfo::new(n)).iter().map(|r| format!("{}/{}", r.prefix, r.length)).collect()
    };
    assert_eq!(routes("n1"), ["198.51.100.10/32"], "web (Cluster, ready on n1) from every node; local not on n1");
    assert_eq!(routes("n2"), ["198.51.100.10/32", "198.51.100.11/32"], "local only where its endpoint is ready");
    assert_eq!(routes("n3"), ["198.51.100.10/32"], "n3's endpoint of local is not ready");
    // Without BGP objects watched, no BGP plan.
    assert!(plan(&services, &slices, &[pool()], &[], "metallb-system", None, None).bgp.is_none());
}
