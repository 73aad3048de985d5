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

pub async fn healthz(State(s): State<AppState>) -> Response {
    match ask(&s.core, CoreMsg::Stats).await {
        Ok(st) => Json(json!({ "status": "ok", "active_calls": st.active_calls })).into_response(),
        Err(e) => e,
    }
}

pub async fn prometheus(State(s): State<AppState>) -> Response {
    match ask(&s.core, CoreMsg::Stats).await {
        Ok(st) => {
            let mut text = metrics::render(&s.metrics, &st);
            metrics::render_uploads(&mut text, &s.uploader);
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        Err(e) => e,
    }
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
