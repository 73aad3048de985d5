//! `GET /healthz`, `GET /metrics` (Prometheus text) and the OpenAPI document.

use super::state::{ask, AppState};
use crate::core::CoreMsg;
use crate::metrics;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub const OPENAPI: &str = include_str!("openapi.json");

/// 200 `{"status":"ok"}`, or 503 `{"status":"draining"}` once the edge drains, or
/// 503 `{"status":"held"}` while a cluster node cannot reach NATS (a load balancer
/// in front of the HTTP side stops sending new work).
pub async fn healthz(State(s): State<AppState>) -> Response {
    match ask(&s.core, CoreMsg::Stats).await {
        Ok(st) if st.draining || st.held => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": if st.draining { "draining" } else { "held" },
                "active_calls": st.active_calls,
            })),
        )
            .into_response(),
        Ok(st) => Json(json!({ "status": "ok", "active_calls": st.active_calls })).into_response(),
        Err(e) => e,
    }
}

/// `POST /api/v1/drain` (admin): stop taking new calls and registrations (OPTIONS
/// and new INVITEs/REGISTERs get 503), let the calls in progress end, then stop
/// the process — as SIGTERM does. 202 `{"draining":true,"active_calls":N}`.
pub async fn drain(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let user = match super::auth::authorize(&s, &headers, control::Role::Admin) {
        Ok(u) => u,
        Err(e) => return e,
    };
    match ask(&s.core, CoreMsg::Drain).await {
        Ok(calls) => {
            tracing::warn!(by = %user, calls, "drain asked through the API");
            s.drain.notify_one();
            (
                axum::http::StatusCode::ACCEPTED,
                Json(json!({ "draining": true, "active_calls": calls })),
            )
                .into_response()
        }
        Err(e) => e,
    }
}

pub async fn prometheus(State(s): State<AppState>) -> Response {
    match ask(&s.core, CoreMsg::Stats).await {
        Ok(st) => {
            let mut text = metrics::render(&s.metrics, &st);
            metrics::render_uploads(&mut text, &s.uploader);
            if let Some(cl) = &s.cluster {
                cl.render_metrics(&mut text);
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        Err(e) => e,
    }
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
