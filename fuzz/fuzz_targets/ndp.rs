#![no_main]
use ferrolb_wire::{Ipv6Packet, NdpMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ip) = Ipv6Packet::parse(data) {
        let _ = NdpMessage::parse(&ip);
    }
});
