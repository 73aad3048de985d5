//! `GET /api/v1/chats` (live and queued chats), `DELETE /api/v1/chats/{id}` (admin),
//! and the two chat pages: `/chat` (customer widget) and `/console` (agents and
//! supervisors).

use super::auth::{authorize, error};
use super::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use control::Role;
use serde_json::json;
use std::time::Instant;

fn page(html: &'static str) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

/// `GET /chat`: the embeddable customer widget (`?queue=NAME`, default `web`).
pub async fn page_chat() -> Response {
    page(include_str!("../../static/chat.html"))
}

/// `GET /console`: the agent console; supervisors also get the live chat list.
pub async fn page_console() -> Response {
    page(include_str!("../../static/console.html"))
}

/// `GET /api/v1/chats`: live and queued chats (supervisors and admins).
pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Supervisor) {
        return e;
    }
    let chats = s.chats.read(|c| c.list(Instant::now()));
    Json(json!({ "chats": chats })).into_response()
}

/// `DELETE /api/v1/chats/{id}`: an admin ends a stuck chat.
pub async fn end(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Admin) {
        return e;
    }
    if !s.chats.read(|c| c.exists(&id)) {
        return error(StatusCode::NOT_FOUND, "no such chat");
    }
    let snap = s.snapshot.load();
    s.chats
        .run(|c, at| c.end(&snap, &id, "admin", "ended by an administrator", at));
    StatusCode::NO_CONTENT.into_response()
}
