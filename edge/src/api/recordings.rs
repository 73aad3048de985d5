//! `/api/v1/recordings` (admins): list, one with its metadata, the audio while a
//! local copy exists, and a retry of a failed upload.

use super::auth::{authorize, error};
use super::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use control::Role;
use serde_json::json;

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

pub async fn list_recordings(State(s): State<AppState>, headers: HeaderMap) -> Response {
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

pub async fn get_recording(
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

pub async fn recording_audio(
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

pub async fn retry_recording(
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
