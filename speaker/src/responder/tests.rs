use ferrolb_wire::{NeighborSolicit, solicited_node};
use proptest::prelude::*;

use super::*;

const OURS: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 1]);
const CLIENT: MacAddr = MacAddr([0x02, 0xc1, 0, 0, 0, 2]);

fn table() -> VipTable {
    VipTable::new(["198.51.100.10", "198.51.100.11", "2001:db8::10"].iter().map(|s| s.parse().unwrap()))
}

fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 60]; // padded to the Ethernet minimum, as on the wire
    ArpRepr { op: ArpOp::Request, sender_mac: CLIENT, sender_ip: sender, target_mac: MacAddr::ZERO, target_ip: target }
        .emit_frame(&mut f, MacAddr::BROADCAST, CLIENT);
    f
}

fn ns(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, sll: Option<MacAddr>) -> Vec<u8> {
    let mut f = vec![0u8; ndp::FRAME_LEN];
    NeighborSolicit { src, dst, target, source_ll: sll }.emit_frame(&mut f, MacAddr::ipv6_multicast(dst), CLIENT);
    f
}

fn reply(frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut out = [0u8; REPLY_BUF];
    let v = respond(frame, OURS, &table(), &mut out);
    let len = if let Verdict::Reply { len, .. } = v { len } else { 0 };
    (v, out[..len].to_vec())
}

// Frames captured with tcpdump from the kernel's own clients in a network namespace
// (client MAC 02:c1:00:00:00:02, 198.51.100.1 and 2001:db8::1), byte for byte.
/// `arping -c 1 -I capa 198.51.100.10` (iputils), padded on the wire.
const CAPTURED_ARPING: &str = "ffffffffffff02c100000002 0806 0001080006040001 02c100000002c6336401 000000000000c633640a 000000000000000000000000000000000000";
/// `ndisc6 2001:db8::10 capa`: multicast NS from the link-local address.
const CAPTURED_NDISC6: &str = "3333ff00001002c10000000286dd600177ab00203afffe8000000000000000c100fffe000002ff0200000000000000000001ff00001087004abf0000000020010db80000000000000000000000100101 02c100000002";
/// The kernel's DAD probe for fe80::c1:ff:fe00:2, with an RFC 7527 nonce option.
const CAPTURED_DAD_WITH_NONCE: &str = "3333ff00000202c10000000286dd6000000000203aff00000000000000000000000000000000ff0200000000000000000001ff0000028700532a00000000fe8000000000000000c100fffe0000020e01f59801ad23e9";

#[test]
fn answers_captured_arping_request_byte_exact() {
    let (v, out) = reply(&hex(CAPTURED_ARPING));
    assert_eq!(v, Verdict::Reply { len: 42, vip: 0 });
    let expected = hex("02c100000002 02fe00000001 0806 0001080006040002 02fe00000001c633640a 02c100000002c6336401");
    assert_eq!(out, expected);
}

#[test]
fn answers_captured_ndisc6_solicitation() {
    let frame = hex(CAPTURED_NDISC6);
    let (v, out) = reply(&frame);
    assert_eq!(v, Verdict::Reply { len: ndp::FRAME_LEN, vip: 2 });
    let ip = Ipv6Packet::parse(&out[14..]).unwrap();
    assert_eq!(ip.dst(), "fe80::c1:ff:fe00:2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(&out[0..6], &CLIENT.0);
    // The solicited advertisement, byte for byte: checksum included.
    let expected = hex(
        "02c100000002 02fe00000001 86dd 6000000000203aff 20010db8000000000000000000000010 fe8000000000000000c100fffe000002 8800 b8ce 60000000 20010db8000000000000000000000010 0201 02fe00000001",
    );
    assert_eq!(out, expected);
}

#[test]
fn defends_against_captured_dad_probe() {
    let target: Ipv6Addr = "fe80::c1:ff:fe00:2".parse().unwrap();
    let mut out = [0u8; REPLY_BUF];
    let v = respond(&hex(CAPTURED_DAD_WITH_NONCE), OURS, &VipTable::new([IpAddr::V6(target)]), &mut out);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    let ip = Ipv6Packet::parse(&out[14..]).unwrap();
    assert_eq!(ip.dst(), "ff02::1".parse::<Ipv6Addr>().unwrap());
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn never_answers_for_others_or_self() {
    let f = arp_request("198.51.100.1".parse().unwrap(), "198.51.100.99".parse().unwrap());
    assert_eq!(reply(&f).0, Verdict::Ignored(Ignored::NotOurs));
    let mut own = arp_request("198.51.100.1".parse().unwrap(), "198.51.100.10".parse().unwrap());
    own[6..12].copy_from_slice(&OURS.0);
    assert_eq!(reply(&own).0, Verdict::Ignored(Ignored::FromSelf));
}

#[test]
fn gratuitous_arp_from_another_host_is_a_conflict() {
    let vip: Ipv4Addr = "198.51.100.11".parse().unwrap();
    assert_eq!(reply(&arp_request(vip, vip)).0, Verdict::Ignored(Ignored::Conflict(1)));
    let mut g = [0u8; 42];
    gratuitous_arp(&mut g, CLIENT, vip, ArpOp::Reply);
    assert_eq!(reply(&g).0, Verdict::Ignored(Ignored::Conflict(1)));
    // Another host answering a client's request for our address.
    let mut answer = [0u8; 42];
    ArpRepr {
        op: ArpOp::Reply,
        sender_mac: CLIENT,
        sender_ip: vip,
        target_mac: MacAddr([2, 0, 0, 0, 0, 9]),
        target_ip: "198.51.100.1".parse().unwrap(),
    }
    .emit_frame(&mut answer, MacAddr([2, 0, 0, 0, 0, 9]), CLIENT);
    assert_eq!(reply(&answer).0, Verdict::Ignored(Ignored::Conflict(1)));
    // A reply about an address that is not ours is none of our business.
    let mut other = answer;
    other[28..32].copy_from_slice(&[198, 51, 100, 99]);
    assert_eq!(reply(&other).0, Verdict::Ignored(Ignored::NotRequest));
}

#[test]
fn arp_probe_from_unspecified_sender_is_answered() {
    let f = arp_request(Ipv4Addr::UNSPECIFIED, "198.51.100.10".parse().unwrap());
    let (v, out) = reply(&f);
    assert!(matches!(v, Verdict::Reply { .. }));
    assert_eq!(&out[0..6], &CLIENT.0);
}

#[test]
fn vlan_tagged_request_is_dropped() {
    let f = arp_request("198.51.100.1".parse().unwrap(), "198.51.100.10".parse().unwrap());
    let mut tagged = f[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    tagged.extend_from_slice(&f[12..]);
    assert_eq!(reply(&tagged).0, Verdict::Dropped(WireError::VlanTagged));
}

#[test]
fn multicast_ns_gets_solicited_na_to_sender() {
    let vip: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let (v, out) = reply(&ns(src, solicited_node(vip), vip, Some(CLIENT)));
    assert_eq!(v, Verdict::Reply { len: ndp::FRAME_LEN, vip: 2 });
    let eth = EthernetFrame::parse(&out).unwrap();
    assert_eq!((eth.dst(), eth.src()), (CLIENT, OURS));
    let ip = Ipv6Packet::parse(eth.payload()).unwrap();
    assert_eq!(ip.hop_limit(), 255);
    assert_eq!((ip.src(), ip.dst()), (vip, src));
    let NdpMessage::Advert(na) = NdpMessage::parse(&ip).unwrap() else { panic!() };
    assert!(na.solicited && na.override_ && !na.router);
    assert_eq!(na.target_ll, Some(OURS));
}

#[test]
fn unicast_nud_probe_without_source_option_is_answered() {
    let vip: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let (v, out) = reply(&ns("2001:db8::1".parse().unwrap(), vip, vip, None));
    assert!(matches!(v, Verdict::Reply { .. }));
    assert_eq!(EthernetFrame::parse(&out).unwrap().dst(), CLIENT, "replied to the frame's source MAC");
}

#[test]
fn bad_hop_limit_and_checksum_are_dropped() {
    let vip: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let good = ns("2001:db8::1".parse().unwrap(), solicited_node(vip), vip, None);
    let mut hop = good.clone();
    hop[14 + 7] = 64;
    assert_eq!(reply(&hop).0, Verdict::Dropped(WireError::HopLimit));
    let mut sum = good;
    sum[14 + 40 + 3] ^= 1;
    assert_eq!(reply(&sum).0, Verdict::Dropped(WireError::Checksum));
}

#[test]
fn ns_for_other_address_is_not_answered() {
    let other: Ipv6Addr = "2001:db8::99".parse().unwrap();
    assert_eq!(
        reply(&ns("2001:db8::1".parse().unwrap(), solicited_node(other), other, None)).0,
        Verdict::Ignored(Ignored::NotOurs)
    );
}

#[test]
fn unsolicited_na_parses() {
    let mut out = [0u8; REPLY_BUF];
    let len = unsolicited_na(&mut out, OURS, "2001:db8::10".parse().unwrap());
    let ip = Ipv6Packet::parse(&out[14..len]).unwrap();
    let NdpMessage::Advert(na) = NdpMessage::parse(&ip).unwrap() else { panic!() };
    assert!(na.override_ && !na.solicited);
}

proptest! {
    #[test]
    fn respond_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut out = [0u8; REPLY_BUF];
        let _ = respond(&frame, OURS, &table(), &mut out);
    }

    #[test]
    fn replies_only_for_table_members(target in any::<u32>()) {
        let t = Ipv4Addr::from(target);
        let (v, _) = reply(&arp_request("192.0.2.1".parse().unwrap(), t));
        prop_assert_eq!(matches!(v, Verdict::Reply { .. }), table().index_of(IpAddr::V4(t)).is_some());
    }
}

/// Issue 11's hostile frame classes: requests claiming our MAC, or a group address, as
/// their sender are spoofed and never answered (a reply would poison switches' tables or
/// go to every host); so are frames from a group source address.
#[test]
fn spoofed_senders_are_dropped_not_answered() {
    let target: Ipv4Addr = "198.51.100.10".parse().unwrap();
    let sender: Ipv4Addr = "198.51.100.1".parse().unwrap();
    for bad in [OURS, MacAddr::BROADCAST, MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]), MacAddr::ZERO] {
        let mut f = vec![0u8; 60];
        ArpRepr {
            op: ArpOp::Request,
            sender_mac: bad,
            sender_ip: sender,
            target_mac: MacAddr::ZERO,
            target_ip: target,
        }
        .emit_frame(&mut f, MacAddr::BROADCAST, CLIENT);
        assert_eq!(reply(&f).0, Verdict::Dropped(WireError::BadSender), "sender hardware address {bad}");
    }
    let mut f = arp_request(sender, target);
    f[6..12].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
    assert_eq!(reply(&f).0, Verdict::Dropped(WireError::BadSender), "multicast Ethernet source");
}

/// An ARP request is answered from its header whatever follows it: padding, trailers,
/// or a frame cut short after the header (what a ring slot captures of a long frame).
#[test]
fn arp_is_answered_from_its_header_alone() {
    let full = arp_request("198.51.100.1".parse().unwrap(), "198.51.100.10".parse().unwrap());
    let mut long = full.clone();
    long.extend(std::iter::repeat_n(0xab, 1400));
    assert!(matches!(reply(&long).0, Verdict::Reply { len: 42, vip: 0 }));
    assert!(matches!(reply(&full[..42]).0, Verdict::Reply { len: 42, vip: 0 }));
    for cut in [0, 13, 14, 20, 41] {
        assert_eq!(reply(&full[..cut]).0, Verdict::Dropped(WireError::Truncated), "cut at {cut}");
    }
}

/// A solicitation sent to another solicited-node group (or to an unrelated unicast
/// address) never reaches the kernel's own stack; it is not answered here either.
#[test]
fn solicitations_for_other_groups_are_not_answered() {
    let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let other_group = solicited_node("2001:db8::77".parse().unwrap());
    let (v, _) = reply(&ns(src, other_group, target, Some(CLIENT)));
    assert_eq!(v, Verdict::Dropped(WireError::NdpDestination));
    let (v, _) = reply(&ns(src, "2001:db8::99".parse().unwrap(), target, Some(CLIENT)));
    assert_eq!(v, Verdict::Dropped(WireError::NdpDestination));
    assert!(matches!(reply(&ns(src, solicited_node(target), target, Some(CLIENT))).0, Verdict::Reply { .. }));
    assert!(matches!(reply(&ns(src, target, target, Some(CLIENT))).0, Verdict::Reply { .. }), "unicast NUD probe");
}
