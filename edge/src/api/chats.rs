//! `GET /api/v1/chats` (live and queued chats), `DELETE /api/v1/chats/{id}` (admin),
//! and the two chat pages: `/chat` (customer widget) and `/console` (agents and
//! supervisors).

use super::auth::{authorize, error};
use super::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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

/// This node's live and queued chats.
pub(crate) fn local(s: &AppState) -> Vec<serde_json::Value> {
    let chats = s.chats.read(|c| c.list(Instant::now()));
    match json!(chats) {
        serde_json::Value::Array(v) => v,
        _ => Vec::new(),
    }
}

/// End a chat of this node: false when it has no such chat.
pub(crate) fn local_end(s: &AppState, id: &str) -> bool {
    if !s.chats.read(|c| c.exists(id)) {
        return false;
    }
    let snap = s.snapshot.load();
    s.chats
        .run(|c, at| c.end(&snap, id, "admin", "ended by an administrator", at));
    true
}

/// `GET /api/v1/chats`: live and queued chats (supervisors and admins), of every
/// live node in cluster mode.
pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Supervisor) {
        return e;
    }
    let items = local(&s);
    super::cluster::merged(&s, "chats", items).await
}

/// `DELETE /api/v1/chats/{id}`: an admin ends a stuck chat (on whichever node
/// holds it, in cluster mode).
pub async fn end(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Admin) {
        return e;
    }
    if local_end(&s, &id)
        || super::cluster::find(&s, json!({ "op": "end_chat", "chat": id }))
            .await
            .is_some()
    {
        return StatusCode::NO_CONTENT.into_response();
    }
    error(StatusCode::NOT_FOUND, "no such chat")
}
