#![no_main]
use ferrolb_proto::config::{NodeInfo, announcements, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(loaded) = load("fuzz.yaml", text) {
            let _ = announcements(&loaded.config, &NodeInfo::new("n1"));
        }
    }
});
