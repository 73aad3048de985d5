//! `GET /api/v1/registrations`: agents' phones registered with the edge
//! (supervisors and admins).

use super::auth::authorize;
use super::state::{ask, AppState};
use crate::core::CoreMsg;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use control::Role;
use serde_json::json;

pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Supervisor) {
        return e;
    }
    match ask(&s.core, CoreMsg::ListRegistrations).await {
        Ok(list) => {
            let items: Vec<_> = list
                .iter()
                .map(|b| {
                    json!({
                        "agent": b.agent,
                        "contact": b.contact,
                        "transport": b.transport,
                        "source": b.source,
                        "expires_in": b.expires_in,
                        "user_agent": b.user_agent,
                    })
                })
                .collect();
            Json(json!({ "registrations": items })).into_response()
        }
        Err(e) => e,
    }
}
