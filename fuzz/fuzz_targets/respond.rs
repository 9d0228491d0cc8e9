#![no_main]
use ferrolb_wire::MacAddr;
use ferrolb_speaker::responder::{REPLY_BUF, Verdict, VipTable, respond};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let table = VipTable::new(["198.51.100.10".parse().unwrap(), "2001:db8::10".parse().unwrap()]);
    let mut out = [0u8; REPLY_BUF];
    if let Verdict::Reply { len, .. } = respond(data, MacAddr([2, 0xfe, 0, 0, 0, 1]), &table, &mut out) {
        assert!(len <= REPLY_BUF);
    }
});
