//! The HTTP API: health, Prometheus metrics, the OpenAPI document and `/api/v1`
//! (bearer tokens from config; roles agent < supervisor < admin; JSON errors).

// Handlers return an axum `Response` as their error: it goes straight to the client.
#![allow(clippy::result_large_err)]

use crate::metrics::{self, Metrics};
use crate::sip::{CoreMsg, CoreTx};
use crate::supervision;
use arc_swap::ArcSwap;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use control::{Role, Snapshot};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub core: CoreTx,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub uploader: Arc<storage::uploader::Uploader>,
    pub chats: Arc<signaling::chat::service::Chats>,
    pub transcripts: Arc<storage::transcript::Transcripts>,
    pub attachments: Arc<crate::attachments::Attachments>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/calls", get(list_calls))
        .route("/api/v1/calls/{id}", get(get_call).delete(delete_call))
        .route(
            "/api/v1/calls/{id}/monitors",
            axum::routing::post(supervision::add_monitor),
        )
        .route(
            "/api/v1/calls/{id}/monitors/{mid}",
            axum::routing::patch(supervision::patch_monitor).delete(supervision::delete_monitor),
        )
        .route(
            "/api/v1/calls/{id}/dtmf",
            axum::routing::post(supervision::send_dtmf),
        )
        .route(
            "/api/v1/calls/{id}/recording",
            axum::routing::post(supervision::set_recording),
        )
        .route(
            "/api/v1/calls/{id}/hold",
            axum::routing::post(supervision::set_hold),
        )
        .route("/api/v1/chats", get(crate::chat::list))
        .route(
            "/api/v1/chats/{id}",
            axum::routing::delete(crate::chat::end),
        )
        .route(
            "/api/v1/chats/{id}/transcript",
            get(crate::transcript::transcript),
        )
        .route("/api/v1/transcripts", get(crate::transcript::search))
        .route(
            "/api/v1/chats/{id}/attachments",
            // The body limit is the size at start (+1 so the handler answers 413
            // with the configured figure); a reload can lower it, not raise it.
            axum::routing::post(crate::attachments::upload).layer(
                axum::extract::DefaultBodyLimit::max(
                    state.snapshot.load().config.chat.attachment_max_size as usize + 1,
                ),
            ),
        )
        .route(
            "/api/v1/attachments/{chat}/{file}",
            get(crate::attachments::download),
        )
        .route("/chat", get(crate::chat::page_chat))
        .route("/console", get(crate::chat::page_console))
        .route("/ws/chat", get(crate::chat::ws_customer))
        .route("/ws/agent", get(crate::chat::ws_agent))
        .route("/api/v1/recordings", get(list_recordings))
        .route("/api/v1/recordings/{id}", get(get_recording))
        .route("/api/v1/recordings/{id}/audio", get(recording_audio))
        .route(
            "/api/v1/recordings/{id}/retry",
            axum::routing::post(retry_recording),
        )
        .fallback(not_found)
        .with_state(state)
}

/// A JSON error body: `{"error": "...", "status": N}`.
pub fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Json(json!({ "error": msg, "status": status.as_u16() })),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// Check the bearer token and the role; the token itself is never logged.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    at_least: Role,
) -> Result<String, Response> {
    authorize_user(state, headers, at_least).map(|u| u.name)
}

/// The signed-in user (name and role) when the token allows `at_least`.
pub fn authorize_user(
    state: &AppState,
    headers: &HeaderMap,
    at_least: Role,
) -> Result<control::User, Response> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(error(StatusCode::UNAUTHORIZED, "missing bearer token"));
    };
    let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "Authorization must be 'Bearer <token>'",
        ));
    };
    let snap = state.snapshot.load();
    let Some(user) = snap.user_by_token(token) else {
        return Err(error(StatusCode::UNAUTHORIZED, "invalid token"));
    };
    if !user.has_role(at_least) {
        tracing::info!(user = %user.name, "forbidden: role too low");
        return Err(error(
            StatusCode::FORBIDDEN,
            "your role does not allow this",
        ));
    }
    Ok(user.clone())
}

pub async fn ask<T>(
    core: &CoreTx,
    make: impl FnOnce(oneshot::Sender<T>) -> CoreMsg,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    if core.send(make(tx)).await.is_err() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SIP core is not running",
        ));
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SIP core did not answer",
        )),
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    match ask(&s.core, CoreMsg::Stats).await {
        Ok(st) => Json(json!({ "status": "ok", "active_calls": st.active_calls })).into_response(),
        Err(e) => e,
    }
}

async fn prometheus(State(s): State<AppState>) -> Response {
    match ask(&s.core, CoreMsg::Stats).await {
        Ok(st) => {
            let mut text = metrics::render(&s.metrics, &st);
            metrics::render_uploads(&mut text, &s.uploader);
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        Err(e) => e,
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn call_json(c: &signaling::b2bua::CallInfo) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let held: Vec<&str> = ["customer", "agent"]
        .into_iter()
        .zip(c.held)
        .filter_map(|(who, h)| h.then_some(who))
        .collect();
    json!({
        "id": c.id,
        "state": c.state,
        "caller": c.caller,
        "callee": c.callee,
        "route": c.route,
        "queue": c.queue,
        "agent": c.agent,
        "start_time": (now - c.age_secs),
        "duration_secs": c.age_secs,
        "monitors": c.monitors.iter().map(|m| json!({
            "id": m.id, "user": m.user, "mode": m.mode, "state": m.state,
        })).collect::<Vec<_>>(),
        "recording": match c.recording_paused {
            None => "off",
            Some(true) => "paused",
            Some(false) => "recording",
        },
        "held": held,
        "events": c.digits.iter().map(|d| json!({
            "type": "dtmf", "digit": d.digit.to_string(), "from": d.from, "at_secs": d.at_secs,
        })).collect::<Vec<_>>(),
    })
}

async fn list_calls(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Agent) {
        return e;
    }
    match ask(&s.core, CoreMsg::ListCalls).await {
        Ok(calls) => Json(json!({ "calls": calls.iter().map(call_json).collect::<Vec<_>>() }))
            .into_response(),
        Err(e) => e,
    }
}

async fn get_call(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Agent) {
        return e;
    }
    match ask(&s.core, CoreMsg::ListCalls).await {
        Ok(calls) => match calls.iter().find(|c| c.id == id) {
            Some(c) => Json(call_json(c)).into_response(),
            None => error(StatusCode::NOT_FOUND, "no such call"),
        },
        Err(e) => e,
    }
}

async fn delete_call(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = match authorize(&s, &headers, Role::Admin) {
        Ok(u) => u,
        Err(e) => return e,
    };
    match ask(&s.core, |tx| CoreMsg::Hangup(id.clone(), tx)).await {
        Ok(true) => {
            tracing::info!(call = %id, %user, "call ended by admin");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no such call"),
        Err(e) => e,
    }
}

fn recording_json(j: &storage::Journal) -> serde_json::Value {
    json!({
        "id": j.id,
        "call_id": j.call_id,
        "size": j.size,
        "sha256": j.sha256,
        "state": j.state.as_str(),
        "target": j.target,
        "chunks": j.chunks.len(),
        "chunks_acknowledged": j.acked_chunks(),
        "attempts": j.attempts,
        "last_error": j.last_error,
        "next_attempt": j.next_attempt_ms.map(|t| t as f64 / 1000.0),
        "created": j.created_ms as f64 / 1000.0,
    })
}

async fn list_recordings(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Admin) {
        return e;
    }
    let list: Vec<_> = s.uploader.list().iter().map(recording_json).collect();
    Json(json!({ "recordings": list })).into_response()
}

/// An admin's view of one recording: 401/403 for others, 404 for unknown ids.
fn admin_recording(
    s: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<storage::Journal, Response> {
    authorize(s, headers, Role::Admin)?;
    s.uploader
        .get(id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such recording"))
}

async fn get_recording(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let j = match admin_recording(&s, &headers, &id) {
        Ok(j) => j,
        Err(e) => return e,
    };
    let mut v = recording_json(&j);
    v["metadata"] = s
        .uploader
        .spool
        .read_meta(&id)
        .unwrap_or(serde_json::Value::Null);
    Json(v).into_response()
}

async fn recording_audio(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let j = match admin_recording(&s, &headers, &id) {
        Ok(j) => j,
        Err(e) => return e,
    };
    let path = s.uploader.spool.file_path(&j);
    match tokio::fs::File::open(&path).await {
        Ok(file) => {
            use tokio::io::AsyncReadExt;
            // Stream in 64 KiB blocks: recordings can be hundreds of MB.
            let stream = futures_util::stream::unfold(file, |mut f| async move {
                let mut buf = vec![0u8; 64 * 1024];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
                    }
                    Err(e) => Some((Err(e), f)),
                }
            });
            let ct = if j.file.ends_with(".wav") {
                "audio/wav"
            } else {
                "application/octet-stream"
            };
            (
                [
                    (header::CONTENT_TYPE, ct),
                    (header::CONTENT_LENGTH, &j.size.to_string()),
                ],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        Err(_) => error(
            StatusCode::GONE,
            &format!("recording is {}: no local copy", j.state.as_str()),
        ),
    }
}

async fn retry_recording(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = match authorize(&s, &headers, Role::Admin) {
        Ok(u) => u,
        Err(e) => return e,
    };
    match s.uploader.retry(&id) {
        Ok(()) => {
            tracing::info!(recording = %id, %user, "upload retry requested");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "id": id, "state": "pending" })),
            )
                .into_response()
        }
        Err(storage::uploader::RetryError::NotFound) => {
            error(StatusCode::NOT_FOUND, "no such recording")
        }
        Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
    }
}
