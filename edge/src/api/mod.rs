//! The HTTP API: health, Prometheus metrics, the OpenAPI document and `/api/v1`
//! (bearer tokens from config; roles agent < supervisor < admin; JSON errors). This
//! file only builds the router; each resource has its file, [`state`] what handlers
//! share and [`auth`] who may call what.

// Handlers return an axum `Response` as their error: it goes straight to the client.
#![allow(clippy::result_large_err)]

mod agents;
pub mod attachments;
pub mod auth;
mod calls;
mod chats;
pub mod cluster;
mod conference;
pub mod error;
mod health;
mod recordings;
mod registrations;
pub mod serve;
pub mod state;
mod supervision;
mod transcripts;

pub use auth::authorize_user;
pub use error::error;
pub use serve::Peer;
pub use state::AppState;

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

/// The HTTP routes (health, metrics, OpenAPI, `/api/v1`, the chat pages) and the
/// JSON 404; the WebSocket routes come from `ws` (main merges both).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::prometheus))
        .route("/api/v1/openapi.json", get(health::openapi))
        .route("/api/v1/calls", get(calls::list_calls))
        .route("/api/v1/registrations", get(registrations::list))
        .route("/api/v1/drain", axum::routing::post(health::drain))
        .route("/api/v1/agents", get(agents::list))
        .route(
            "/api/v1/agents/{id}/state",
            axum::routing::put(agents::set_state),
        )
        .route(
            "/api/v1/calls/{id}",
            get(calls::get_call).delete(calls::delete_call),
        )
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
        .route(
            "/api/v1/calls/{id}/transfer",
            axum::routing::post(supervision::transfer),
        )
        .route(
            "/api/v1/calls/{id}/participants",
            axum::routing::post(conference::add),
        )
        .route(
            "/api/v1/calls/{id}/participants/{pid}",
            axum::routing::patch(conference::patch).delete(conference::remove),
        )
        .route(
            "/api/v1/calls/{id}/participants/{pid}/dtmf",
            axum::routing::post(conference::dtmf),
        )
        .route(
            "/api/v1/calls/{id}/consult",
            axum::routing::post(supervision::consult),
        )
        .route(
            "/api/v1/calls/{id}/consult/{action}",
            axum::routing::post(supervision::consult_action),
        )
        .route("/api/v1/chats", get(chats::list))
        .route("/api/v1/chats/{id}", axum::routing::delete(chats::end))
        .route(
            "/api/v1/chats/{id}/transcript",
            get(transcripts::transcript),
        )
        .route("/api/v1/transcripts", get(transcripts::search))
        .route(
            "/api/v1/chats/{id}/attachments",
            // The handler streams the body and enforces the configured limit itself.
            axum::routing::post(attachments::upload),
        )
        .route(
            "/api/v1/attachments/{chat}/{file}",
            get(attachments::download),
        )
        .route("/chat", get(chats::page_chat))
        .route("/console", get(chats::page_console))
        .route("/api/v1/recordings", get(recordings::list_recordings))
        .route("/api/v1/recordings/{id}", get(recordings::get_recording))
        .route(
            "/api/v1/recordings/{id}/audio",
            get(recordings::recording_audio),
        )
        .route(
            "/api/v1/recordings/{id}/retry",
            axum::routing::post(recordings::retry_recording),
        )
        .fallback(not_found)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}
