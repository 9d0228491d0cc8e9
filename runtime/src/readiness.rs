//! Readiness as the speaker's and the controller's `/readyz` report it: what a component
//! waits for (a watch that fails, a key file, the initial lists), and why, so that `kubectl
//! describe pod` shows the reason next to the failed probe.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a component is ready, and if not, what it waits for.
#[derive(Debug, Default)]
pub struct Readiness {
    serving: AtomicBool,
    /// What it waits for (a watch, a socket), and why.
    waiting: Mutex<BTreeMap<String, String>>,
}

impl Readiness {
    /// Configuration loaded and every responder running.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `what` cannot proceed because of `why`; true if that is news (so the
    /// caller logs it once at warn level, not on every retry).
    pub fn wait_for(&self, what: &str, why: String) -> bool {
        self.waiting().insert(what.to_string(), why).is_none()
    }

    /// `what` proceeds again; true if it was waiting.
    pub fn done(&self, what: &str) -> bool {
        self.waiting().remove(what).is_some()
    }

    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire) && self.waiting().is_empty()
    }

    /// The `/readyz` body.
    pub fn report(&self) -> String {
        let waiting = self.waiting();
        if waiting.is_empty() {
            return if self.serving.load(Ordering::Acquire) { "ready".into() } else { "not ready: starting".into() };
        }
        let reasons: Vec<String> = waiting.iter().map(|(what, why)| format!("waiting for {what}: {why}")).collect();
        format!("not ready: {}", reasons.join("; "))
    }
}

/// One event of the watch named `what` (`Ok(true)`: a change, `Ok(false)`: kube's `Init`,
/// which comes before the list is even asked for): a failure makes the component wait for
/// that watch, logged at warn level once per outage; the first change after it clears
/// that. True when there is something new to act on.
pub fn watch_event(readiness: &Readiness, what: &str, event: Result<bool, &dyn std::fmt::Display>) -> bool {
    match event {
        Ok(false) => false,
        Ok(true) => {
            if readiness.done(what) {
                tracing::info!(watch = %what, "watch works again");
            }
            true
        }
        Err(e) => {
            if readiness.wait_for(what, e.to_string()) {
                tracing::warn!(watch = %what, error = %e, "cannot list or watch; retrying, not Ready until it works");
            }
            false
        }
    }
}
