//! `GET /api/v1/registrations`: agents' phones registered with the edge
//! (supervisors and admins).

use super::auth::authorize;
use super::state::{ask, AppState};
use crate::core::CoreMsg;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use control::Role;
use serde_json::json;

/// This node's bindings.
pub(crate) async fn local(s: &AppState) -> Result<Vec<serde_json::Value>, Response> {
    let list = ask(&s.core, CoreMsg::ListRegistrations).await?;
    Ok(list
        .iter()
        .map(|b| {
            json!({
                "agent": b.agent,
                "contact": b.contact,
                "transport": b.transport,
                "source": b.source,
                "expires_in": b.expires_in,
                "user_agent": b.user_agent,
                "path": b.path,
            })
        })
        .collect())
}

/// Every binding (of every live node, in cluster mode).
pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Supervisor) {
        return e;
    }
    match local(&s).await {
        Ok(items) => super::cluster::merged(&s, "registrations", items).await,
        Err(e) => e,
    }
}
