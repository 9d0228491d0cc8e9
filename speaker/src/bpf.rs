//! Classic BPF programs that keep everything but requests for our addresses, and other
//! hosts' announcements of them (conflicts), in the kernel.
//! Pure: builds instruction lists, attaches nothing.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::sys::BpfInsn;

const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
const JA: u16 = 0x05;
/// Bytes of an accepted frame copied to user space.
const ACCEPT: u32 = crate::sys::FRAME_BUF as u32;

/// Above this many addresses the ARP filter passes every request and user space matches
/// (the program would near the kernel's 4096-instruction limit).
pub const MAX_V4_IN_FILTER: usize = 1024;
/// The same for Neighbor Solicitations (nine instructions per address).
pub const MAX_V6_IN_FILTER: usize = 256;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// Ancillary loads: the frame's packet type and whether it carried a VLAN tag.
const AD_PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
const AD_VLAN_PRESENT: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_VLAN_TAG_PRESENT) as u32;

/// Drops, in the kernel, frames this host sent (a socket on Linux before 4.20 has no
/// `PACKET_IGNORE_OUTGOING`) and frames that carried a VLAN tag (they belong to the
/// VLAN's sub-interface, which answers them itself, tagged).
fn reject_outgoing_and_vlan() -> Vec<BpfInsn> {
    vec![
        insn(LD_W_ABS, 0, 0, AD_PKTTYPE),
        insn(JEQ_K, 3, 0, u32::from(libc::PACKET_OUTGOING)),
        insn(LD_W_ABS, 0, 0, AD_VLAN_PRESENT),
        insn(JEQ_K, 1, 0, 1),
        insn(JA, 0, 0, 1),
        insn(RET_K, 0, 0, 0),
    ]
}

/// Passes every frame (test clients and benches that watch replies).
pub fn accept_all() -> Vec<BpfInsn> {
    vec![insn(RET_K, 0, 0, ACCEPT)]
}

/// For a socket bound to ETH_P_ARP: passes ARP requests whose target is in `vips`, and
/// ARP replies whose sender is (another host claiming the address).
pub fn arp_filter(vips: &[Ipv4Addr]) -> Vec<BpfInsn> {
    let mut p = reject_outgoing_and_vlan();
    p.extend([
        insn(LD_H_ABS, 0, 0, 14 + 6),  // ARP operation
        insn(JEQ_K, 0, 2, 2),          // reply?
        insn(LD_W_ABS, 0, 0, 14 + 14), // sender protocol address
        insn(JA, 0, 0, 3),
        insn(JEQ_K, 1, 0, 1), // request?
        insn(RET_K, 0, 0, 0),
        insn(LD_W_ABS, 0, 0, 14 + 24), // target protocol address
    ]);
    if vips.len() > MAX_V4_IN_FILTER {
        p.push(insn(RET_K, 0, 0, ACCEPT));
        return p;
    }
    for ip in vips {
        p.push(insn(JEQ_K, 0, 1, u32::from(*ip)));
        p.push(insn(RET_K, 0, 0, ACCEPT));
    }
    p.push(insn(RET_K, 0, 0, 0));
    p
}

/// For a socket bound to ETH_P_IPV6: passes ICMPv6 Neighbor Solicitations and
/// Advertisements whose target is in `vips`. Hop limit and checksum are checked in user
/// space, so bad ones are counted.
pub fn ndp_filter(vips: &[Ipv6Addr]) -> Vec<BpfInsn> {
    let mut p = reject_outgoing_and_vlan();
    p.extend([
        insn(LD_B_ABS, 0, 0, 14 + 6), // next header
        insn(JEQ_K, 1, 0, 58),        // ICMPv6?
        insn(RET_K, 0, 0, 0),
        insn(LD_B_ABS, 0, 0, 14 + 40), // ICMPv6 type
        insn(JEQ_K, 2, 0, 135),        // Neighbor Solicitation?
        insn(JEQ_K, 1, 0, 136),        // Neighbor Advertisement?
        insn(RET_K, 0, 0, 0),
    ]);
    if vips.len() > MAX_V6_IN_FILTER {
        p.push(insn(RET_K, 0, 0, ACCEPT));
        return p;
    }
    for ip in vips {
        let o = ip.octets();
        for w in 0..4 {
            let word = u32::from_be_bytes([o[4 * w], o[4 * w + 1], o[4 * w + 2], o[4 * w + 3]]);
            // On a mismatch skip the rest of this address's block (2 per remaining word + ret).
            let skip = (2 * (3 - w) + 1) as u8;
            p.push(insn(LD_W_ABS, 0, 0, (14 + 48 + 4 * w) as u32)); // target address word
            p.push(insn(JEQ_K, 0, skip, word));
        }
        p.push(insn(RET_K, 0, 0, ACCEPT));
    }
    p.push(insn(RET_K, 0, 0, 0));
    p
}

/// Runs a program on `frame` the way the kernel would: the interpreter the tests check
/// the generated programs with. Supports exactly the instructions built above.
pub fn run(prog: &[BpfInsn], frame: &[u8]) -> u32 {
    run_with(prog, frame, libc::PACKET_HOST, false)
}

/// [`run`] for a frame of packet type `pkttype`, tagged or not.
pub fn run_with(prog: &[BpfInsn], frame: &[u8], pkttype: u8, vlan_tagged: bool) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0;
    while let Some(i) = prog.get(pc) {
        let k = i.k as usize;
        if i.code == LD_W_ABS && i.k == AD_PKTTYPE {
            a = u32::from(pkttype);
            pc += 1;
            continue;
        }
        if i.code == LD_W_ABS && i.k == AD_VLAN_PRESENT {
            a = u32::from(vlan_tagged);
            pc += 1;
            continue;
        }
        let load = |n: usize| frame.get(k..k + n).map(|b| b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x)));
        match i.code {
            LD_W_ABS | LD_H_ABS | LD_B_ABS => {
                let n = match i.code {
                    LD_W_ABS => 4,
                    LD_H_ABS => 2,
                    _ => 1,
                };
                match load(n) {
                    Some(v) => a = v,
                    None => return 0, // out-of-bounds load drops the frame
                }
            }
            JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
            JA => pc += k,
            RET_K => return i.k,
            _ => return 0,
        }
        pc += 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use ferrolb_wire::{ArpOp, ArpRepr, MacAddr, NeighborSolicit, ndp, solicited_node};

    use super::*;

    fn arp(op: ArpOp, target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        ArpRepr {
            op,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(192, 0, 2, 1),
            target_mac: MacAddr::ZERO,
            target_ip: target,
        }
        .emit_frame(&mut f, MacAddr::BROADCAST, MacAddr([2, 0, 0, 0, 0, 1]));
        f
    }

    fn ns(target: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0u8; ndp::FRAME_LEN];
        NeighborSolicit { src: "2001:db8::1".parse().unwrap(), dst: solicited_node(target), target, source_ll: None }
            .emit_frame(&mut f, MacAddr::BROADCAST, MacAddr([2, 0, 0, 0, 0, 1]));
        f
    }

    #[test]
    fn arp_filter_passes_only_requests_for_vips() {
        let vips: Vec<Ipv4Addr> = (1..=200).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
        let prog = arp_filter(&vips);
        for v in &vips {
            assert_eq!(run(&prog, &arp(ArpOp::Request, *v)), ACCEPT, "{v}");
            assert_eq!(run(&prog, &arp(ArpOp::Reply, *v)), 0);
        }
        assert_eq!(run(&prog, &arp(ArpOp::Request, Ipv4Addr::new(198, 51, 100, 201))), 0);
        // A reply from another host claiming a VIP (sender address is ours): passed.
        let mut claim = arp(ArpOp::Reply, Ipv4Addr::new(192, 0, 2, 1));
        claim[28..32].copy_from_slice(&vips[1].octets());
        assert_eq!(run(&prog, &claim), ACCEPT);
        let mut garp_op3 = arp(ArpOp::Request, vips[0]);
        garp_op3[21] = 3;
        assert_eq!(run(&prog, &garp_op3), 0, "RARP");
        assert_eq!(run(&prog, &arp(ArpOp::Request, Ipv4Addr::new(192, 0, 2, 1))), 0);
        assert_eq!(run(&prog, &arp(ArpOp::Request, vips[0])[..30]), 0, "truncated");
        assert_eq!(run(&arp_filter(&[]), &arp(ArpOp::Request, vips[0])), 0);
    }

    /// Our own frames (no PACKET_IGNORE_OUTGOING before Linux 4.20) and VLAN-tagged ones
    /// never leave the kernel.
    #[test]
    fn outgoing_and_vlan_tagged_frames_are_dropped_in_the_kernel() {
        let vip = Ipv4Addr::new(198, 51, 100, 1);
        let prog = arp_filter(&[vip]);
        let req = arp(ArpOp::Request, vip);
        assert_eq!(run_with(&prog, &req, libc::PACKET_BROADCAST, false), ACCEPT);
        assert_eq!(run_with(&prog, &req, libc::PACKET_OUTGOING, false), 0);
        assert_eq!(run_with(&prog, &req, libc::PACKET_BROADCAST, true), 0);
        let v6: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let prog = ndp_filter(&[v6]);
        assert_eq!(run_with(&prog, &ns(v6), libc::PACKET_MULTICAST, false), ACCEPT);
        assert_eq!(run_with(&prog, &ns(v6), libc::PACKET_OUTGOING, false), 0);
        assert_eq!(run_with(&prog, &ns(v6), libc::PACKET_MULTICAST, true), 0);
    }

    #[test]
    fn large_tables_fall_back_to_every_request() {
        let vips: Vec<Ipv4Addr> = (0..2000u32).map(|i| Ipv4Addr::from(0xc633_6400 + i)).collect();
        let prog = arp_filter(&vips);
        assert!(prog.len() < 16);
        assert_eq!(run(&prog, &arp(ArpOp::Request, Ipv4Addr::new(203, 0, 113, 1))), ACCEPT);
        assert!(arp_filter(&vips[..MAX_V4_IN_FILTER]).len() <= 4096);
        let v6: Vec<Ipv6Addr> =
            (0..MAX_V6_IN_FILTER as u128).map(|i| Ipv6Addr::from(0x2001_0db8_u128 << 96 | i)).collect();
        assert!(ndp_filter(&v6).len() <= 4096);
    }

    #[test]
    fn ndp_filter_matches_whole_address() {
        let vips: Vec<Ipv6Addr> =
            ["2001:db8::10", "2001:db8:1::10", "2001:db8::1:10"].iter().map(|s| s.parse().unwrap()).collect();
        let prog = ndp_filter(&vips);
        for v in &vips {
            assert_eq!(run(&prog, &ns(*v)), ACCEPT, "{v}");
        }
        // Differs from a VIP in one word only.
        for other in ["2001:db8::11", "2001:db9::10", "2001:db8:2::10", "2001:db8::2:10"] {
            assert_eq!(run(&prog, &ns(other.parse().unwrap())), 0, "{other}");
        }
        // Another host advertising our address: passed, to be counted as a conflict.
        let mut na = ns(vips[0]);
        na[54] = 136;
        assert_eq!(run(&prog, &na), ACCEPT);
        let mut ra = ns(vips[0]);
        ra[54] = 134;
        assert_eq!(run(&prog, &ra), 0, "router advertisement");
    }
}
