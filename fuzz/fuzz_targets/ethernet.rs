#![no_main]
use ferrolb_wire::EthernetFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = EthernetFrame::parse(data) {
        let _ = (f.dst(), f.src(), f.vlan(), f.ethertype(), f.payload().len());
    }
});
