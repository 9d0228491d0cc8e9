//! Round-trip and robustness properties of the wire formats.

use std::net::{Ipv4Addr, Ipv6Addr};

use ferrolb_wire::{
    ArpOp, ArpPacket, ArpRepr, EtherType, EthernetFrame, Ipv6Packet, MacAddr, NdpMessage, NeighborAdvert,
    NeighborSolicit, arp, ndp,
};
use proptest::prelude::*;

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn unicast_v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from).prop_filter("unicast", |a| !a.is_multicast() && !a.is_unspecified())
}

/// Parses a frame the way the speaker does; the result is only inspected, never trusted.
fn parse_any(buf: &[u8]) {
    let Ok(eth) = EthernetFrame::parse(buf) else {
        return;
    };
    match eth.ethertype() {
        EtherType::ARP => {
            if let Ok(p) = ArpPacket::parse(eth.payload()) {
                let _ = p.to_repr();
            }
        }
        EtherType::IPV6 => {
            if let Ok(ip) = Ipv6Packet::parse(eth.payload()) {
                let _ = NdpMessage::parse(&ip);
            }
        }
        _ => {}
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
        parse_any(&buf);
    }

    #[test]
    fn mutated_frames_never_panic(
        seed in prop_oneof![Just(0u8), Just(1u8)],
        flips in proptest::collection::vec((0usize..86, any::<u8>()), 1..8),
        cut in 0usize..=86,
    ) {
        let mut f = vec![0u8; 86];
        if seed == 0 {
            ArpRepr { op: ArpOp::Request, sender_mac: MacAddr([2, 0, 0, 0, 0, 1]), sender_ip: Ipv4Addr::new(192, 0, 2, 1), target_mac: MacAddr::ZERO, target_ip: Ipv4Addr::new(192, 0, 2, 9) }.emit_frame(&mut f, MacAddr::BROADCAST, MacAddr([2, 0, 0, 0, 0, 1]));
        } else {
            let target: Ipv6Addr = "2001:db8::9".parse().unwrap();
            NeighborSolicit { src: "2001:db8::1".parse().unwrap(), dst: ferrolb_wire::solicited_node(target), target, source_ll: None }
                .emit_frame(&mut f, MacAddr::BROADCAST, MacAddr([2, 0, 0, 0, 0, 1]));
        }
        for (at, v) in flips { f[at] ^= v; }
        parse_any(&f[..cut]);
    }

    #[test]
    fn arp_round_trip(req in any::<bool>(), sm in mac(), tm in mac(), si in any::<u32>(), ti in any::<u32>()) {
        let repr = ArpRepr {
            op: if req { ArpOp::Request } else { ArpOp::Reply },
            sender_mac: sm, sender_ip: Ipv4Addr::from(si), target_mac: tm, target_ip: Ipv4Addr::from(ti),
        };
        let mut buf = [0u8; arp::PACKET_LEN];
        repr.emit(&mut buf);
        prop_assert_eq!(ArpPacket::parse(&buf).unwrap().to_repr(), repr);
    }

    #[test]
    fn neighbor_advert_round_trip(src in unicast_v6(), dst in unicast_v6(), target in unicast_v6(), r in any::<bool>(), s in any::<bool>(), o in any::<bool>(), ll in mac(), eth_dst in mac()) {
        let na = NeighborAdvert { src, dst, router: r, solicited: s, override_: o, target, target_ll: Some(ll) };
        let mut buf = [0u8; ndp::FRAME_LEN];
        prop_assert_eq!(na.emit_frame(&mut buf, eth_dst, ll), ndp::FRAME_LEN);
        let eth = EthernetFrame::parse(&buf).unwrap();
        prop_assert_eq!(eth.dst(), eth_dst);
        prop_assert_eq!(eth.src(), ll);
        let ip = Ipv6Packet::parse(eth.payload()).unwrap();
        prop_assert_eq!(NdpMessage::parse(&ip).unwrap(), NdpMessage::Advert(na));
    }

    #[test]
    fn neighbor_solicit_round_trip(src in unicast_v6(), target in unicast_v6(), ll in mac()) {
        let ns = NeighborSolicit { src, dst: ferrolb_wire::solicited_node(target), target, source_ll: Some(ll) };
        let mut buf = [0u8; ndp::FRAME_LEN];
        ns.emit_frame(&mut buf, MacAddr::ipv6_multicast(ns.dst), ll);
        let ip = Ipv6Packet::parse(EthernetFrame::parse(&buf).unwrap().payload()).unwrap();
        prop_assert_eq!(NdpMessage::parse(&ip).unwrap(), NdpMessage::Solicit(ns));
    }
}
