#![no_main]
//! Authenticated garbage into the membership state machine: a sequence of packets, each
//! sealed with the cluster key (so the parser and the state behind the MAC are reached),
//! received 10 ms apart, with the member list read after each. Nothing may panic.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferrolb_speaker::cluster::membership::{Me, Membership, Settings};
use ferrolb_speaker::cluster::wire::{Key, Keyring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Key::from_secret(b"a fuzzing secret of length").unwrap();
    let start = Instant::now();
    let me = Me { name: "node-0".into(), labels: BTreeMap::new() };
    let mut m = Membership::new(me, Keyring::single(key.clone()), Settings::default(), vec![], start, 1_790_000_000_000);
    let mut rest = data;
    let mut step = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, next) = tail.split_at((len as usize).min(tail.len()));
        rest = next;
        step += 1;
        let now = start + Duration::from_millis(10 * step);
        let mut body = b"FLB1".to_vec();
        body.extend_from_slice(chunk);
        let _ = m.receive(&key.seal(&body), "198.51.100.9:7946".parse().unwrap(), now, 1_790_000_000_000 + 10 * step);
        m.tick(now);
        let _ = m.members(now);
        let _ = m.wait(now);
        let _ = m.heartbeat(now, 1_790_000_000_000 + 10 * step);
    }
});
