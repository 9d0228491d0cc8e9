//! The metrics and health endpoints.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::metrics::{render_openmetrics, render_text};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub use ferrolb_controller::health::Readiness;

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
