#![no_main]
//! Any text through the loader, and what loads through the allocator and the plan.
use ferrolb_model::config::{NodeInfo, Plan, load};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(loaded) = load("fuzz.yaml", text)
    {
        let allocation = ferrolb_model::allocate_all(&loaded.config, None);
        let _ = Plan::new(&loaded.config, &allocation.assigned).for_node(&NodeInfo::new("n1"));
    }
});
