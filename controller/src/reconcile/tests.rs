use super::*;

const NS: &str = "metallb-system";

fn settings() -> Settings {
    Settings { namespace: NS.into(), lb_class: None }
}

fn pool(yaml: &str) -> IPAddressPool {
    serde_saphyr::from_str(yaml).expect("pool YAML")
}

fn lan_pool() -> IPAddressPool {
    pool(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system, uid: p1, creationTimestamp: '2026-01-01T00:00:00Z'}\nspec:\n  addresses: [198.51.100.10-198.51.100.12, '2001:db8:100::/64']\n",
    )
}

fn service(name: &str, created: &str, extra: &str) -> Service {
    serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  uid: uid-{name}\n  resourceVersion: '1'\n  creationTimestamp: '{created}'\n{extra}spec:\n  type: LoadBalancer\n  selector: {{app: {name}}}\n  ports: [{{port: 80, protocol: TCP}}]\n"
    ))
    .expect("service YAML")
}

fn snapshot(pools: Vec<IPAddressPool>, services: Vec<Service>) -> Snapshot {
    Snapshot { services, pools, namespaces: BTreeMap::new() }
}

/// What the API server would hold after the writes (each with a new resourceVersion).
fn applied(mut snap: Snapshot, writes: &Writes) -> Snapshot {
    for w in &writes.services {
        let svc = snap.services.iter_mut().find(|s| s.metadata.name.as_deref() == Some(&w.name)).unwrap();
        let rv: u64 = svc.metadata.resource_version.as_deref().unwrap_or("0").parse().unwrap();
        svc.metadata.resource_version = Some((rv + 1).to_string());
        let ingress = w
            .ingress
            .iter()
            .map(|ip| k8s_openapi::api::core::v1::LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ..Default::default()
            })
            .collect();
        svc.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
            load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus { ingress: Some(ingress) }),
            ..Default::default()
        });
        let annotations = svc.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match &w.pool {
            Some(p) => annotations.insert(ANNOTATION_ALLOCATED_FROM_POOL.into(), p.clone()),
            None => annotations.remove(ANNOTATION_ALLOCATED_FROM_POOL),
        };
    }
    for w in &writes.pools {
        let p = snap.pools.iter_mut().find(|p| p.metadata.name.as_deref() == Some(&w.name)).unwrap();
        p.status = Some(w.status.clone());
    }
    snap
}

fn reasons(w: &Writes) -> Vec<&'static str> {
    w.events.iter().map(|e| e.reason).collect()
}

fn ingress(snap: &Snapshot, name: &str) -> Vec<IpAddr> {
    LoadBalancerService::from(snap.services.iter().find(|s| s.metadata.name.as_deref() == Some(name)).unwrap())
        .ingress_ips
}

#[test]
fn a_new_service_gets_an_address_its_pool_annotation_and_one_event() {
    let mut memory = Memory::default();
    let snap = snapshot(vec![lan_pool()], vec![service("web", "2026-02-01T00:00:00Z", "")]);
    let w = plan(&snap, &settings(), &mut memory);
    assert_eq!(
        w.services,
        vec![ServiceWrite {
            namespace: "default".into(),
            name: "web".into(),
            resource_version: Some("1".into()),
            ingress: vec!["198.51.100.10".parse().unwrap()],
            pool: Some("lan".into()),
        }]
    );
    assert_eq!(reasons(&w), vec!["IPAllocated"]);
    assert_eq!(w.events[0].regarding.name.as_deref(), Some("web"));
    assert_eq!(w.events[0].note, "Assigned IP [198.51.100.10] from pool \"lan\"");
    let status = &w.pools[0].status;
    assert_eq!((status.assigned_ipv4, status.available_ipv4), (1, 2));
    assert_eq!(status.available_ipv6, i64::MAX, "a /64 saturates instead of overflowing");
    assert_eq!(status.conditions[0].status, "True");
    // The next round, on what the API server now holds, writes and says nothing.
    let snap = applied(snap, &w);
    let again = plan(&snap, &settings(), &mut memory);
    assert!(again.services.is_empty() && again.events.is_empty() && again.pools.is_empty(), "{again:?}");
}

#[test]
fn a_restarted_controller_moves_nothing_and_says_nothing() {
    let mut memory = Memory::default();
    let services = vec![
        service("a", "2026-02-01T00:00:00Z", ""),
        service("b", "2026-02-02T00:00:00Z", ""),
        service("c", "2026-02-03T00:00:00Z", ""),
    ];
    let snap = snapshot(vec![lan_pool()], services);
    let first = plan(&snap, &settings(), &mut memory);
    let mut snap = applied(snap, &first);
    // b is deleted: .11 is free; a fourth Service appears.
    snap.services.retain(|s| s.metadata.name.as_deref() != Some("b"));
    snap.services.push(service("d", "2026-02-04T00:00:00Z", ""));
    let before: Vec<_> = ["a", "c"].iter().map(|n| ingress(&snap, n)).collect();
    // A new process: nothing remembered, everything rebuilt from the Services' status.
    let mut fresh = Memory::default();
    let w = plan(&snap, &settings(), &mut fresh);
    assert_eq!(w.services.len(), 1, "only the new Service is written: {:?}", w.services);
    assert_eq!(w.services[0].name, "d");
    assert_eq!(w.services[0].ingress, vec!["198.51.100.11".parse::<IpAddr>().unwrap()], "the freed address");
    assert_eq!(reasons(&w), vec!["IPAllocated"]);
    let snap = applied(snap, &w);
    assert_eq!(before, ["a", "c"].iter().map(|n| ingress(&snap, n)).collect::<Vec<_>>());
}

#[test]
fn of_two_services_claiming_one_address_the_older_keeps_it() {
    let held = "status: {loadBalancer: {ingress: [{ip: 198.51.100.10}]}}\n";
    let with_status = |name: &str, created: &str| {
        let mut s = service(name, created, "");
        let st: Service = serde_saphyr::from_str(&format!("metadata: {{name: x}}\n{held}")).unwrap();
        s.status = st.status;
        s
    };
    let snap = snapshot(
        vec![lan_pool()],
        vec![with_status("young", "2026-03-01T00:00:00Z"), with_status("old", "2026-01-15T00:00:00Z")],
    );
    let w = plan(&snap, &settings(), &mut Memory::default());
    let young = w.services.iter().find(|s| s.name == "young").expect("the younger is rewritten");
    assert_ne!(young.ingress, vec!["198.51.100.10".parse::<IpAddr>().unwrap()]);
    assert!(
        w.services.iter().all(|s| s.name != "old" || s.ingress == vec!["198.51.100.10".parse::<IpAddr>().unwrap()])
    );
    let clear = w.events.iter().find(|e| e.reason == "ClearAssignment").expect("the younger is told");
    assert_eq!(clear.regarding.name.as_deref(), Some("young"));
    // MetalLB reports it with `Infof` (controller/service.go:129).
    assert_eq!(clear.kind, EventKind::Normal);
}

#[test]
fn a_pool_outside_the_controllers_namespace_is_ignored_with_a_warning() {
    let mut stray = lan_pool();
    stray.metadata.namespace = Some("default".into());
    stray.metadata.name = Some("tutorial".into());
    let mut memory = Memory::default();
    let snap = snapshot(vec![stray], vec![service("web", "2026-02-01T00:00:00Z", "")]);
    let w = plan(&snap, &settings(), &mut memory);
    let warn = w.events.iter().find(|e| e.reason == "IgnoredPool").expect("warning");
    assert!(warn.note.contains("metallb-system"), "{}", warn.note);
    assert_eq!(reasons(&w), vec!["IgnoredPool", "AllocationFailed"]);
    assert!(w.services.is_empty() && w.pools.is_empty(), "nothing written to the stray pool or the Service");
    // Said once, not every round.
    assert!(plan(&snap, &settings(), &mut memory).events.is_empty());
}

#[test]
fn an_invalid_pool_is_reported_and_the_last_valid_version_keeps_serving() {
    let mut memory = Memory::default();
    let other = pool(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: other, namespace: metallb-system, creationTimestamp: '2026-01-02T00:00:00Z'}\nspec: {addresses: [203.0.113.0/30]}\n",
    );
    let snap = snapshot(vec![lan_pool(), other.clone()], vec![service("web", "2026-02-01T00:00:00Z", "")]);
    let w = plan(&snap, &settings(), &mut memory);
    let mut snap = applied(snap, &w);
    // A bad edit of lan: its addresses no longer parse.
    snap.pools[0].spec.addresses = vec!["198.51.100.300-198.51.100.310".into()];
    let w = plan(&snap, &settings(), &mut memory);
    assert!(w.stale);
    let warn = w.events.iter().find(|e| e.reason == "InvalidPool").expect("an Event");
    assert!(
        warn.note.contains("spec.addresses[0]") && warn.note.contains("last valid version keeps serving"),
        "{}",
        warn.note
    );
    assert!(w.services.is_empty(), "web keeps its address: {:?}", w.services);
    let lan_status = &w.pools.iter().find(|p| p.name == "lan").expect("status").status;
    assert_eq!(lan_status.conditions[0].status, "False");
    assert_eq!(lan_status.conditions[0].reason, "Invalid");
    // A brand-new invalid pool (overlapping another) is rejected; the rest keeps working.
    let mut snap = applied(snap, &w);
    let mut overlapping = other;
    overlapping.metadata.name = Some("dup".into());
    overlapping.metadata.creation_timestamp = serde_saphyr::from_str("'2026-05-01T00:00:00Z'").unwrap();
    snap.pools.push(overlapping);
    snap.services.push(service("api", "2026-02-02T00:00:00Z", "  annotations: {metallb.io/address-pool: other}\n"));
    let w = plan(&snap, &settings(), &mut memory);
    let dup =
        w.events.iter().find(|e| e.reason == "InvalidPool" && e.regarding.name.as_deref() == Some("dup")).unwrap();
    assert!(dup.note.contains("overlaps") && dup.note.contains("not used"), "{}", dup.note);
    assert_eq!(w.services.iter().find(|s| s.name == "api").unwrap().pool.as_deref(), Some("other"));
}

#[test]
fn a_pool_edit_that_removes_an_address_in_use_reallocates_and_says_so() {
    let mut memory = Memory::default();
    let snap = snapshot(vec![lan_pool()], vec![service("web", "2026-02-01T00:00:00Z", "")]);
    let w = plan(&snap, &settings(), &mut memory);
    let mut snap = applied(snap, &w);
    snap.pools[0].spec.addresses = vec!["198.51.100.20-198.51.100.29".into()];
    let w = plan(&snap, &settings(), &mut memory);
    assert_eq!(w.services[0].ingress, vec!["198.51.100.20".parse::<IpAddr>().unwrap()]);
    assert_eq!(reasons(&w), vec!["ClearAssignment", "IPAllocated"]);
    assert!(w.events[0].note.contains("198.51.100.10"), "{}", w.events[0].note);
}

#[test]
fn a_service_that_stops_being_a_load_balancer_is_cleared() {
    let mut memory = Memory::default();
    let snap = snapshot(vec![lan_pool()], vec![service("web", "2026-02-01T00:00:00Z", "")]);
    let w = plan(&snap, &settings(), &mut memory);
    let mut snap = applied(snap, &w);
    snap.services[0].spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    let w = plan(&snap, &settings(), &mut memory);
    assert_eq!(w.services[0].ingress, Vec::<IpAddr>::new());
    assert_eq!(w.services[0].pool, None);
    assert_eq!(reasons(&w), vec!["ClearAssignment"]);
    assert_eq!(w.pools[0].status.assigned_ipv4, 0, "the address is free again");
    let snap = applied(snap, &w);
    let w = plan(&snap, &settings(), &mut memory);
    assert!(w.services.is_empty() && w.events.is_empty() && w.pools.is_empty());
}

#[test]
fn other_classes_are_left_alone_and_legacy_annotations_get_a_deprecation_event() {
    let mut memory = Memory::default();
    let snap = snapshot(
        vec![lan_pool()],
        vec![
            {
                let mut s = service("theirs", "2026-02-01T00:00:00Z", "");
                s.spec.as_mut().unwrap().load_balancer_class = Some("other.example/lb".into());
                s
            },
            service(
                "old-style",
                "2026-02-02T00:00:00Z",
                "  annotations: {metallb.universe.tf/loadBalancerIPs: 198.51.100.12}\n",
            ),
        ],
    );
    let w = plan(&snap, &settings(), &mut memory);
    assert_eq!(w.services.len(), 1);
    assert_eq!(w.services[0].name, "old-style");
    assert_eq!(w.services[0].ingress, vec!["198.51.100.12".parse::<IpAddr>().unwrap()]);
    assert_eq!(reasons(&w), vec!["IPAllocated", "DeprecatedAnnotation"]);
    let snap = applied(snap, &w);
    assert!(plan(&snap, &settings(), &mut memory).events.is_empty(), "said once");
}

#[test]
fn a_failure_is_reported_once_until_it_changes() {
    let mut memory = Memory::default();
    let snap = snapshot(
        vec![lan_pool()],
        vec![service("web", "2026-02-01T00:00:00Z", "  annotations: {metallb.io/loadBalancerIPs: 192.0.2.7}\n")],
    );
    let w = plan(&snap, &settings(), &mut memory);
    assert_eq!(reasons(&w), vec!["AllocationFailed"]);
    assert!(w.events[0].note.contains("192.0.2.7 is in no pool"), "{}", w.events[0].note);
    assert!(plan(&snap, &settings(), &mut memory).events.is_empty());
}

/// The pool breaks (an edit) while no controller runs: the new one has no valid version of
/// it, and keeps the addresses in use where they are instead of releasing them.
#[test]
fn a_controller_restarted_while_a_pool_is_broken_keeps_its_addresses() {
    let mut memory = Memory::default();
    let snap = snapshot(
        vec![lan_pool()],
        vec![service("web", "2026-02-01T00:00:00Z", ""), service("db", "2026-02-02T00:00:00Z", "")],
    );
    let first = plan(&snap, &settings(), &mut memory);
    let mut snap = applied(snap, &first);
    let before: Vec<_> = ["web", "db"].iter().map(|n| ingress(&snap, n)).collect();
    snap.pools[0].spec.addresses = vec!["198.51.100.10-198.51.100.12".into(), "198.51.100.0/33".into()];
    snap.services.push(service("new", "2026-02-03T00:00:00Z", ""));
    let mut fresh = Memory::default();
    let w = plan(&snap, &settings(), &mut fresh);
    assert!(w.services.is_empty(), "nothing released, nothing to allocate from: {:?}", w.services);
    assert_eq!(reasons(&w), ["InvalidPool", "AddressesKept", "AddressesKept", "AllocationFailed"]);
    assert!(w.events[1].note.contains("198.51.100.10"), "{}", w.events[1].note);
    let snap = applied(snap, &w);
    assert_eq!(before, ["web", "db"].iter().map(|n| ingress(&snap, n)).collect::<Vec<_>>());
    // Said once; and once the pool is fixed, everything carries on quietly.
    assert_eq!(reasons(&plan(&snap, &settings(), &mut fresh)), Vec::<&str>::new());
    let mut snap = snap;
    snap.pools[0].spec.addresses = vec!["198.51.100.10-198.51.100.12".into()];
    let w = plan(&snap, &settings(), &mut fresh);
    assert_eq!(w.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["new"]);
    assert_eq!(w.services[0].ingress, vec!["198.51.100.12".parse::<IpAddr>().unwrap()]);
    let snap = applied(snap, &w);
    assert_eq!(before, ["web", "db"].iter().map(|n| ingress(&snap, n)).collect::<Vec<_>>());
}

/// Services waiting in one round (a `kubectl apply` of many) get addresses in creation
/// order, then by namespace/name for Services created in the same second, whatever order
/// the informer's store lists them in.
#[test]
fn a_burst_is_allocated_in_creation_order_then_by_name() {
    let svc = |name: &str, created: &str| service(name, created, "  annotations: {}\n");
    let services = vec![
        svc("c", "2026-01-01T00:00:05Z"),
        svc("late", "2026-01-01T00:00:09Z"),
        svc("a", "2026-01-01T00:00:05Z"),
        svc("b", "2026-01-01T00:00:05Z"),
    ];
    let mut big = lan_pool();
    big.spec.addresses = vec!["198.51.100.10-198.51.100.20".into()];
    let writes = plan(&snapshot(vec![big], services), &settings(), &mut Memory::default());
    let mut got: Vec<(String, String)> =
        writes.services.iter().map(|w| (w.name.clone(), w.ingress[0].to_string())).collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "late"], "{got:?}");
}

/// K3s's ServiceLB left enabled rewrites the status with node addresses: the controller
/// reports it once and leaves the Service alone instead of writing its address back each
/// round (a fight that flaps the Service).
#[test]
fn another_writer_of_the_ingress_is_reported_not_fought() {
    let mut memory = Memory::default();
    let snap = snapshot(vec![lan_pool()], vec![service("web", "2026-01-01T00:00:00Z", "")]);
    let writes = plan(&snap, &settings(), &mut memory);
    assert_eq!(writes.services[0].ingress, ["198.51.100.10".parse::<IpAddr>().unwrap()]);
    let mut snap = applied(snap, &writes);
    // ServiceLB writes the node's address over it.
    snap.services[0].status.as_mut().unwrap().load_balancer.as_mut().unwrap().ingress =
        Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
            ip: Some("203.0.113.5".into()),
            ..Default::default()
        }]);
    let writes = plan(&snap, &settings(), &mut memory);
    assert!(writes.services.is_empty(), "no write back: {:?}", writes.services);
    assert_eq!(reasons(&writes), ["ForeignIngress"]);
    assert_eq!(writes.foreign, 1);
    let again = plan(&snap, &settings(), &mut memory);
    assert!(again.services.is_empty() && again.events.is_empty(), "said once: {:?}", again.events);
    // Found so by a controller that never wrote it (no pool annotation): the same.
    let mut found = snap.services[0].clone();
    found.metadata.annotations = None;
    let fresh = plan(&snapshot(vec![lan_pool()], vec![found]), &settings(), &mut Memory::default());
    assert!(fresh.services.is_empty(), "{:?}", fresh.services);
    assert_eq!(reasons(&fresh), ["ForeignIngress"]);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn annotated(name: &str, created: &str, annotations: &str) -> Service {
    service(name, created, &format!("  annotations: {{{annotations}}}\n"))
}

/// Rule 12 of issue 10: the cache has not seen our write of `a` yet when `d`, an older
/// Service, turns up. Counting `a`'s pending write as held keeps `a` on its address.
#[test]
fn a_cache_lagging_behind_our_own_write_moves_nothing() {
    let mut memory = Memory::default();
    let a = service("a", "2026-02-01T00:00:00Z", "");
    let w = plan(&snapshot(vec![lan_pool()], vec![a.clone()]), &settings(), &mut memory);
    assert_eq!(w.services[0].ingress, [ip("198.51.100.10")]);
    // The watch still shows `a` as it was (same resourceVersion, no status).
    let stale = snapshot(vec![lan_pool()], vec![a, service("d", "2026-01-15T00:00:00Z", "")]);
    let w = plan(&stale, &settings(), &mut memory);
    let d = w.services.iter().find(|s| s.name == "d").unwrap();
    assert_eq!(d.ingress, [ip("198.51.100.11")], "the older newcomer does not take a's address");
    let a = w.services.iter().find(|s| s.name == "a").expect("a's write is made again: it may have failed");
    assert_eq!(a.ingress, [ip("198.51.100.10")]);
}

/// Rule 6: after an edit that makes two sharers conflict, the edited one moves, even when
/// it is the older (MetalLB converges the edited Service; its `Assign` fails on the port,
/// controller/service.go:127).
#[test]
fn after_a_sharing_edit_the_edited_service_moves() {
    let mut memory = Memory::default();
    let old = annotated("old", "2026-01-01T00:00:00Z", "metallb.io/allow-shared-ip: k");
    let mut young = annotated("young", "2026-02-01T00:00:00Z", "metallb.io/allow-shared-ip: k");
    young.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 443;
    let snap = snapshot(vec![lan_pool()], vec![old, young]);
    let w = plan(&snap, &settings(), &mut memory);
    assert!(w.services.iter().all(|s| s.ingress == [ip("198.51.100.10")]), "{:?}", w.services);
    let mut snap = applied(snap, &w);
    snap.services[0].spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 443;
    let w = plan(&snap, &settings(), &mut memory);
    assert_eq!(w.services.len(), 1, "{:?}", w.services);
    assert_eq!((w.services[0].name.as_str(), w.services[0].ingress.clone()), ("old", vec![ip("198.51.100.11")]));
    assert_eq!(reasons(&w), ["ClearAssignment", "IPAllocated"]);
}

/// `web` after its first round (holding an address), now asking for `requested`.
fn web_holding_its_address(memory: &mut Memory, requested: &str) -> Snapshot {
    let snap = snapshot(vec![lan_pool()], vec![service("web", "2026-02-01T00:00:00Z", "")]);
    let w = plan(&snap, &settings(), memory);
    let mut snap = applied(snap, &w);
    let annotations = snap.services[0].metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert("metallb.io/loadBalancerIPs".into(), requested.into());
    snap
}

/// Rule 3: a new requested address moves the Service (controller/service.go:152).
#[test]
fn a_changed_request_moves_the_service_and_says_so() {
    let mut memory = Memory::default();
    let snap = web_holding_its_address(&mut memory, "198.51.100.12");
    let w = plan(&snap, &settings(), &mut memory);
    assert_eq!(w.services[0].ingress, [ip("198.51.100.12")]);
    assert_eq!(reasons(&w), ["ClearAssignment", "IPAllocated"]);
    assert!(
        w.events[0].note.contains("198.51.100.12") && w.events[0].note.contains("requested"),
        "{}",
        w.events[0].note
    );
}

/// Both `spec.loadBalancerIP` and the annotation on a Service holding an address: MetalLB
/// reports LoadBalancerFailed and returns before clearing (controller/service.go:146-150).
#[test]
fn a_contradictory_request_keeps_the_address_in_use_and_warns() {
    let mut memory = Memory::default();
    let mut snap = web_holding_its_address(&mut memory, "198.51.100.12");
    snap.services[0].spec.as_mut().unwrap().load_balancer_ip = Some("198.51.100.11".into());
    let w = plan(&snap, &settings(), &mut memory);
    assert!(w.services.is_empty(), "{:?}", w.services);
    assert_eq!(reasons(&w), ["LoadBalancerFailed"]);
    assert_eq!(w.events[0].kind, EventKind::Warning);
}
