//! The metrics and health endpoints.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::metrics::{render_openmetrics, render_text};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the speaker is ready, and if not, what it waits for: `/readyz` says it, so
/// `kubectl describe pod` shows the reason next to the failed probe.
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

/// `/metrics`, `/healthz` (the process serves) and `/readyz` (configuration loaded,
/// every responder running, nothing waited for).
pub fn router(registry: Arc<Registry>, ready: Arc<Readiness>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| async move {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
                if accept.contains("application/openmetrics-text") {
                    ([(header::CONTENT_TYPE, OPENMETRICS)], render_openmetrics(&registry))
                } else {
                    ([(header::CONTENT_TYPE, TEXT)], render_text(&registry))
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                let code = if ready.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (code, ready.report()).into_response()
            }),
        )
}
