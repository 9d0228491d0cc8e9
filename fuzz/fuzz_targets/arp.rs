#![no_main]
use ferrolb_wire::{ArpPacket, arp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ArpPacket::parse(data) {
        // What parses must re-emit to the same bytes.
        let mut out = [0u8; arp::PACKET_LEN];
        p.to_repr().emit(&mut out);
        assert_eq!(&out[..], &data[..arp::PACKET_LEN]);
    }
});
