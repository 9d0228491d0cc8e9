//! The metrics and health endpoints, and the listener they are served on.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::Readiness;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/metrics` (OpenMetrics when the scraper asks for it, as Prometheus does; otherwise the
/// classic text format), `/healthz` (the process serves) and `/readyz` (what
/// [`Readiness`] says).
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

/// The metrics and probe listener. The default, `[::]`, takes both families (the kubelet
/// probes a single-stack IPv6 node on its IPv6 address); where IPv6 is off in the
/// kernel it falls back to `0.0.0.0`.
pub async fn listen(bind: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(bind).await {
        Err(e) if bind.ip() == std::net::Ipv6Addr::UNSPECIFIED && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, bind.port())).await
        }
        other => other,
    }
}

/// Renders the registry in the OpenMetrics text format.
pub fn render_openmetrics(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

/// Renders the registry in Prometheus' classic text format (0.0.4), which MetalLB serves
/// and `promtool check metrics` reads: counter families are named with their `_total`
/// suffix, and the bare MetalLB counters are `untyped`, which keeps their exact names
/// without failing promtool's "counters end in _total" lint (`rate()` works the same).
pub fn render_text(registry: &Registry) -> String {
    let om = render_openmetrics(registry);
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# ") {
            continue; // # UNIT and # EOF have no classic equivalent
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
