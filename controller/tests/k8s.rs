//! The Kubernetes layer against kube's mock service (tower-test): the requests it makes
//! for a round's writes, answered as an API server would, including a 409 conflict.

use std::sync::Arc;

use ferrolb_controller::k8s::{Error, Metrics, Writer};
use ferrolb_controller::reconcile::{Memory, Settings, Snapshot, plan};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn service_json(rv: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web", "resourceVersion": rv,
                     "creationTimestamp": "2026-02-01T00:00:00Z"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}
    })
}

fn pool_json() -> Value {
    json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "lan", "namespace": "metallb-system", "uid": "p1", "resourceVersion": "3",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"addresses": ["198.51.100.10-198.51.100.12"]}
    })
}

fn round() -> ferrolb_controller::reconcile::Writes {
    let snapshot = Snapshot {
        services: vec![serde_json::from_value::<Service>(service_json("1")).unwrap()],
        pools: vec![serde_json::from_value(pool_json()).unwrap()],
        namespaces: Default::default(),
    };
    plan(&snapshot, &Settings { namespace: "metallb-system".into(), lb_class: None }, &mut Memory::default())
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, code: StatusCode, body: Value) {
    send.send_response(Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap());
}

/// The next request: method, path and JSON body.
async fn next(handle: &mut Handle) -> (Method, String, Value, tower_test::mock::SendResponse<Response<Body>>) {
    let (req, send) = handle.next_request().await.expect("a request");
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (method, path, body, send)
}

fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
           "message": "Operation cannot be fulfilled on services \"web\": the object has been modified"})
}

fn setup() -> (Writer, Handle, Arc<Metrics>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let metrics = Arc::new(Metrics::default());
    (Writer::new(Client::new(service, "default"), "metallb-system", metrics.clone()), handle, metrics)
}

#[tokio::test]
async fn a_round_writes_status_annotation_pool_status_and_an_event() {
    let (writer, mut handle, metrics) = setup();
    let writes = round();
    let server = tokio::spawn(async move {
        let (m, path, body, send) = next(&mut handle).await;
        assert_eq!((m, path.as_str()), (Method::PATCH, "/api/v1/namespaces/default/services/web/status"));
        assert_eq!(body["status"]["loadBalancer"]["ingress"], json!([{"ip": "198.51.100.10", "ipMode": "VIP"}]));
        assert_eq!(body["metadata"]["resourceVersion"], "1", "a conditional write");
        respond(send, StatusCode::OK, service_json("2"));
        let (m, path, body, send) = next(&mut handle).await;
        assert_eq!((m, path.as_str()), (Method::PATCH, "/api/v1/namespaces/default/services/web"));
        assert_eq!(body["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"], "lan");
        respond(send, StatusCode::OK, service_json("3"));
        let (m, path, body, send) = next(&mut handle).await;
        assert_eq!(
            (m, path.as_str()),
            (Method::PATCH, "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/lan/status")
        );
        assert_eq!(body["status"]["assignedIPv4"], 1);
        assert_eq!(body["status"]["availableIPv4"], 2);
        assert_eq!(body["status"]["conditions"][0]["type"], "Valid");
        respond(send, StatusCode::OK, pool_json());
        let (m, path, body, send) = next(&mut handle).await;
        assert_eq!((m, path.as_str()), (Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events"));
        assert_eq!(body["reason"], "IPAllocated");
        assert_eq!(body["type"], "Normal");
        assert_eq!(body["regarding"]["name"], "web");
        assert_eq!(body["note"], "Assigned IP [198.51.100.10] from pool \"lan\"");
        respond(send, StatusCode::CREATED, body);
    });
    writer.apply(&writes).await.expect("every write succeeds");
    server.await.unwrap();
    assert_eq!(metrics.updates.get(), 2);
    assert_eq!(metrics.update_errors.get(), 0);
    assert_eq!(metrics.config_loaded.get(), 1);
    let in_use = metrics.in_use_v4.get_or_create(&ferrolb_controller::k8s::PoolLabel { pool: "lan".into() }).get();
    assert_eq!(in_use, 1);
}

/// A 409 means the Service changed since the snapshot the plan was made from: the plan
/// may be stale (a new requested IP, another type), so the write is not retried with it;
/// the next round re-plans from the object as it now is. The other writes still happen.
#[tokio::test]
async fn a_conflict_is_not_rewritten_with_the_stale_plan_and_the_others_still_happen() {
    let (writer, mut handle, metrics) = setup();
    let mut writes = round();
    writes.events.clear();
    let server = tokio::spawn(async move {
        let (m, path, body, send) = next(&mut handle).await;
        assert_eq!(m, Method::PATCH);
        assert!(path.ends_with("/services/web/status"));
        assert_eq!(body["metadata"]["resourceVersion"], "1", "conditional on the planned version");
        respond(send, StatusCode::CONFLICT, conflict());
        let (m, path, _, send) = next(&mut handle).await;
        assert_eq!(m, Method::PATCH);
        assert!(path.ends_with("/ipaddresspools/lan/status"), "no GET and re-PATCH of web; the pool next: {path}");
        respond(send, StatusCode::OK, pool_json());
    });
    let result = writer.apply(&writes).await;
    server.await.unwrap();
    assert!(matches!(result, Err(Error::Writes { failed: 1, total: 2 })), "{result:?}");
    assert_eq!((metrics.updates.get(), metrics.update_errors.get()), (1, 1));
}

/// The whole loop: three initial lists (answered in whatever order the watchers ask),
/// watches left open, then the round's writes. A Service that already holds an address
/// (a controller restart) is not written; the new one gets the next free address.
#[tokio::test]
async fn after_a_restart_the_loop_lists_everything_then_writes_only_what_is_new() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(Metrics::default());
    let settings = Settings { namespace: "metallb-system".into(), lb_class: None };
    let run = tokio::spawn(ferrolb_controller::k8s::run(client, settings, metrics.clone(), Default::default()));
    let mut held = service_json("5");
    held["metadata"]["name"] = json!("held");
    held["metadata"]["annotations"] = json!({"metallb.io/ip-allocated-from-pool": "lan"});
    held["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.10"}]}});
    let list = |kind: &str, items: Vec<Value>| json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items});
    let mut open_watches = Vec::new();
    let mut writes = Vec::new();
    while writes.len() < 4 {
        let (req, send) = handle.next_request().await.expect("a request");
        let (method, path, query) =
            (req.method().clone(), req.uri().path().to_string(), req.uri().query().unwrap_or("").to_string());
        let bytes = req.into_body().collect_bytes().await.unwrap();
        if method == Method::GET && query.contains("watch=true") {
            open_watches.push(send);
            continue;
        }
        match (method.clone(), path.as_str()) {
            (Method::GET, "/api/v1/services") => {
                respond(send, StatusCode::OK, list("ServiceList", vec![held.clone(), service_json("6")]))
            }
            (Method::GET, "/apis/metallb.io/v1beta1/ipaddresspools") => {
                respond(send, StatusCode::OK, list("IPAddressPoolList", vec![pool_json()]))
            }
            (Method::GET, "/api/v1/namespaces") => respond(send, StatusCode::OK, list("NamespaceList", vec![])),
            _ => {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                writes.push((method, path, body.clone()));
                respond(send, StatusCode::OK, if body.is_null() { service_json("11") } else { body });
            }
        }
    }
    run.abort();
    let paths: Vec<&str> = writes.iter().map(|w| w.1.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/api/v1/namespaces/default/services/web/status",
            "/api/v1/namespaces/default/services/web",
            "/apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/lan/status",
            "/apis/events.k8s.io/v1/namespaces/default/events",
        ],
        "nothing is written for the Service that already holds its address"
    );
    assert_eq!(writes[0].2["status"]["loadBalancer"]["ingress"][0]["ip"], "198.51.100.11");
    assert_eq!(writes[2].2["status"]["assignedIPv4"], 2);
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

#[tokio::test]
async fn the_membership_key_secret_is_created_once_with_a_random_key() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (m, path, _, send) = next(&mut handle).await;
        assert_eq!((m, path.as_str()), (Method::GET, "/api/v1/namespaces/metallb-system/secrets/ferrolb-memberlist"));
        respond(send, StatusCode::NOT_FOUND, not_found());
        let (m, path, body, send) = next(&mut handle).await;
        assert_eq!((m, path.as_str()), (Method::POST, "/api/v1/namespaces/metallb-system/secrets"));
        let key = body["stringData"]["secretkey"].as_str().unwrap().to_string();
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        respond(send, StatusCode::CREATED, body);
        // A second replica (or restart) finds it and writes nothing.
        let (m, _, _, send) = next(&mut handle).await;
        assert_eq!(m, Method::GET);
        respond(
            send,
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ferrolb-memberlist"}}),
        );
        key
    });
    ferrolb_controller::k8s::ensure_memberlist_secret(&client, "metallb-system").await.unwrap();
    ferrolb_controller::k8s::ensure_memberlist_secret(&client, "metallb-system").await.unwrap();
    let key = server.await.unwrap();
    assert_ne!(key, "0".repeat(64));
}

#[tokio::test]
async fn of_two_replicas_taking_an_expired_lease_the_one_that_loses_the_race_waits() {
    use ferrolb_controller::k8s::{LeaseAction, Observed, lease_action, try_lead};
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    // The holder's clock is a year off: only changes of the record, timed locally, count.
    let renewed: k8s_openapi::jiff::Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    let held = |at: k8s_openapi::jiff::Timestamp| LeaseSpec {
        holder_identity: Some("other".into()),
        lease_duration_seconds: Some(15),
        renew_time: Some(MicroTime(at)),
        ..Default::default()
    };
    let mut seen = None;
    assert_eq!(lease_action(None, "me", &mut seen, t0), LeaseAction::Take);
    assert_eq!(lease_action(Some(&held(renewed)), "me", &mut seen, t0), LeaseAction::Wait, "first sight: wait");
    let later = t0 + Duration::from_secs(10);
    assert_eq!(lease_action(Some(&held(renewed)), "me", &mut seen, later), LeaseAction::Wait, "not yet expired");
    let renewed_again = renewed + k8s_openapi::jiff::SignedDuration::from_secs(1);
    let expired = t0 + Duration::from_secs(16);
    assert_eq!(lease_action(Some(&held(renewed_again)), "me", &mut seen, expired), LeaseAction::Wait, "renewed: alive");
    let much_later = expired + Duration::from_secs(16);
    assert_eq!(lease_action(Some(&held(renewed_again)), "me", &mut seen, much_later), LeaseAction::Take, "expired");
    assert_eq!(lease_action(Some(&held(renewed)), "other", &mut None, t0), LeaseAction::Take, "renewing our own");
    let released = LeaseSpec { holder_identity: None, ..held(renewed) };
    assert_eq!(lease_action(Some(&released), "me", &mut None, t0), LeaseAction::Take, "released");

    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (m, path, _, send) = next(&mut handle).await;
        assert_eq!(
            (m, path.as_str()),
            (Method::GET, "/apis/coordination.k8s.io/v1/namespaces/metallb-system/leases/ferrolb-controller")
        );
        respond(
            send,
            StatusCode::OK,
            json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "ferrolb-controller", "namespace": "metallb-system", "resourceVersion": "41"},
                "spec": {"holderIdentity": "old", "leaseDurationSeconds": 15, "renewTime": "2020-01-01T00:00:00.000000Z"}
            }),
        );
        let (m, _, body, send) = next(&mut handle).await;
        assert_eq!(m, Method::PUT);
        assert_eq!(body["metadata"]["resourceVersion"], "41", "conditional on the version read");
        assert_eq!(body["spec"]["holderIdentity"], "me");
        respond(send, StatusCode::CONFLICT, conflict());
    });
    // Seen unchanged for longer than its duration: expired.
    let mut observed = Some(Observed {
        record: "old@Some(2020-01-01T00:00:00Z)".into(),
        at: Instant::now().checked_sub(Duration::from_secs(20)).unwrap(),
    });
    assert!(!try_lead(&client, "metallb-system", "me", &mut observed).await.unwrap(), "the other replica won");
    server.await.unwrap();
}

/// The store keeps what the plan reads: a ClusterIP Service shrinks to its type (and our
/// annotation, should it once have been ours); a LoadBalancer keeps all but managed fields.
#[test]
fn services_are_trimmed_to_what_the_plan_reads() {
    use ferrolb_runtime::trim::service_for_controller as trim_service;
    let mut cluster_ip: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "default", "labels": {"a": "b"}, "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(4000), "metallb.io/ip-allocated-from-pool": "lan"}},
        "spec": {"type": "ClusterIP", "ports": [{"port": 5432}], "selector": {"app": "db"}}
    }))
    .unwrap();
    trim_service(&mut cluster_ip);
    assert_eq!(cluster_ip.metadata.annotations.as_ref().unwrap().len(), 1);
    assert!(cluster_ip.metadata.managed_fields.is_none() && cluster_ip.metadata.labels.is_none());
    assert_eq!(cluster_ip.spec.as_ref().unwrap().type_.as_deref(), Some("ClusterIP"));
    assert!(cluster_ip.spec.as_ref().unwrap().ports.is_none());
    let mut lb: k8s_openapi::api::core::v1::Service = serde_json::from_value(service_json("1")).unwrap();
    let before = lb.clone();
    trim_service(&mut lb);
    assert_eq!(lb.spec, before.spec, "a LoadBalancer keeps its spec");
}
