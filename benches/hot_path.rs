//! The per-frame hot path: parse a request, look the target up, build the reply, for
//! tables of 1, 1k and 100k VIPs, ARP and NDP. Frames target VIPs spread over the table
//! so that lookups are not all the same cache line.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferrolb_speaker::responder::{REPLY_BUF, Verdict, VipTable, respond};
use ferrolb_wire::{ArpOp, ArpRepr, MacAddr, NeighborSolicit, ndp, solicited_node};

const OURS: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 1]);
const CLIENT: MacAddr = MacAddr([0x02, 0xc1, 0, 0, 0, 2]);
const FRAMES: usize = 256;

// RFC 2544's benchmarking range and the IPv6 documentation prefix: never routed.
fn v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xc612_0000 + i)
}
fn v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(i))
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    ArpRepr {
        op: ArpOp::Request,
        sender_mac: CLIENT,
        sender_ip: Ipv4Addr::new(192, 0, 2, 1),
        target_mac: MacAddr::ZERO,
        target_ip: target,
    }
    .emit_frame(&mut f, MacAddr::BROADCAST, CLIENT);
    f
}

fn solicitation(target: Ipv6Addr) -> Vec<u8> {
    let mut f = vec![0u8; ndp::FRAME_LEN];
    let dst = solicited_node(target);
    NeighborSolicit { src: "2001:db8:ffff::1".parse().unwrap(), dst, target, source_ll: Some(CLIENT) }.emit_frame(
        &mut f,
        MacAddr::ipv6_multicast(dst),
        CLIENT,
    );
    f
}

fn hot_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("respond");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in [1u32, 1_000, 100_000] {
        let table = VipTable::new((0..n).flat_map(|i| [IpAddr::V4(v4(i)), IpAddr::V6(v6(i))]));
        // A fixed pseudo-random spread of targets over the table.
        let picks: Vec<u32> = (0..FRAMES as u32).map(|i| i.wrapping_mul(2_654_435_761) % n).collect();
        for (proto, frames) in [
            ("arp", picks.iter().map(|i| arp_request(v4(*i))).collect::<Vec<_>>()),
            ("ndp", picks.iter().map(|i| solicitation(v6(*i))).collect::<Vec<_>>()),
        ] {
            let mut out = [0u8; REPLY_BUF];
            assert!(frames.iter().all(|f| matches!(respond(f, OURS, &table, &mut out), Verdict::Reply { .. })));
            let mut next = 0;
            group.bench_with_input(BenchmarkId::new(proto, n), &frames, |b, frames| {
                b.iter(|| {
                    next = (next + 1) % FRAMES;
                    black_box(respond(black_box(&frames[next]), OURS, &table, &mut out))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
