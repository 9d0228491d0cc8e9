//! The one way the tests wait: poll a condition until it holds or a limit passes. Limits
//! are how long a broken product may keep a test waiting, never a speed assertion.

use std::time::{Duration, Instant};

/// Polls `cond` every `every` until it holds (true) or `limit` passes (false).
pub fn poll_every(limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(every);
    }
    false
}

/// Polls `cond` every 100 ms until it holds (true) or `limit` passes (false).
pub fn poll(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    poll_every(limit, Duration::from_millis(100), cond)
}

/// Polls `cond` until it holds or `limit` passes; panics with `what` and `context()`.
pub fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool, context: impl FnOnce() -> String) {
    if !poll(limit, cond) {
        panic!("timed out after {limit:?} waiting for {what}\n{}", context());
    }
}
