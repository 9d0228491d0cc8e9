//! Allocating 1k, 10k and 100k Services into an IPv4 /16 plus an IPv6 /64 (families
//! alternate: 100k IPv4 addresses would not fit a /16), and the same from a cold start
//! where every Service already holds its address (a controller restart).

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use ferrolb_model::Allocator;
use ferrolb_model::api::{LoadBalancerService, ServicePort};
use ferrolb_model::config::Pool;

fn pools() -> Vec<Pool> {
    vec![Pool {
        name: "bench".into(),
        namespace: "metallb-system".into(),
        labels: BTreeMap::new(),
        // RFC 2544's benchmarking range and the IPv6 documentation prefix.
        ranges: vec!["198.18.0.0/16".parse().unwrap(), "2001:db8:1::/64".parse().unwrap()],
        auto_assign: true,
        avoid_buggy_ips: false,
        allocation: Default::default(),
    }]
}

fn services(n: usize) -> Vec<LoadBalancerService> {
    (0..n)
        .map(|i| LoadBalancerService {
            namespace: format!("ns{}", i % 50),
            name: format!("svc{i}"),
            type_: "LoadBalancer".into(),
            ip_families: vec![if i % 2 == 0 { "IPv4" } else { "IPv6" }.into()],
            ports: vec![ServicePort { port: 443, protocol: "TCP".into() }],
            ..Default::default()
        })
        .collect()
}

/// One run: a new allocator given every Service in order (each must get an address).
fn assign_all(b: &mut criterion::Bencher<'_>, svcs: &Vec<LoadBalancerService>) {
    let no_labels = BTreeMap::new();
    b.iter_batched(
        || Allocator::new(&pools()),
        |mut a| {
            for s in svcs {
                a.assign(s, &no_labels).expect("an address for every service");
            }
            a
        },
        BatchSize::LargeInput,
    )
}

fn allocate(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocate");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let no_labels = BTreeMap::new();
    for n in [1_000usize, 10_000, 100_000] {
        let svcs = services(n);
        group.bench_with_input(BenchmarkId::new("fresh", n), &svcs, assign_all);
        // What a restarted controller sees: every Service with its address in status.
        let mut first = Allocator::new(&pools());
        let restarted: Vec<LoadBalancerService> = svcs
            .iter()
            .map(|s| LoadBalancerService { ingress_ips: first.assign(s, &no_labels).unwrap().addresses, ..s.clone() })
            .collect();
        group.bench_with_input(BenchmarkId::new("cold_start", n), &restarted, assign_all);
    }
    group.finish();
}

criterion_group!(benches, allocate);
criterion_main!(benches);
