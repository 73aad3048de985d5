//! `/api/v1/calls`: list, one, and admin hangup.

use super::auth::{authorize, error};
use super::error::ApiError;
use super::state::{ask, AppState};
use crate::core::CoreMsg;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use b2bua::CallCommand;
use control::Role;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

fn call_json(c: &b2bua::CallInfo) -> serde_json::Value {
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
        "reserved_data": crate::recorder::reserved_json(&c.reserved),
        "after_hours": c.after_hours,
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
        })).chain(c.transfers.iter().map(|t| json!({
            "type": "transfer", "kind": t.kind, "to": t.to, "by": t.by.as_str(),
            "outcome": t.outcome, "status": t.status, "at_secs": t.at_secs,
        }))).chain(c.participant_events.iter().map(|e| json!({
            "type": "participant", "participant": e.participant, "who": e.who,
            "action": e.action, "at_secs": e.at_secs,
        }))).collect::<Vec<_>>(),
        "participants": c.participants.iter().map(|p| json!({
            "id": p.id, "role": p.role, "who": p.who, "state": p.state,
            "muted": p.muted, "deaf": p.deaf, "held": p.held,
        })).collect::<Vec<_>>(),
    })
}

/// This node's calls.
pub(crate) async fn local_calls(s: &AppState) -> Result<Vec<serde_json::Value>, Response> {
    Ok(ask(&s.core, CoreMsg::ListCalls)
        .await?
        .iter()
        .map(call_json)
        .collect())
}

/// One call of this node.
pub(crate) async fn local_call(
    s: &AppState,
    id: &str,
) -> Result<Option<serde_json::Value>, Response> {
    let calls = ask(&s.core, CoreMsg::ListCalls).await?;
    Ok(calls.iter().find(|c| c.id == id).map(call_json))
}

/// End a call of this node: `Ok(false)` when it has no such call.
pub(crate) async fn local_hangup(s: &AppState, id: &str) -> Result<bool, Response> {
    let cmd = CallCommand::Hangup {
        call: id.to_string(),
    };
    match ask(&s.core, |tx| CoreMsg::Command(cmd, tx)).await? {
        Ok(_) => Ok(true),
        Err(b2bua::CommandError::NoCall) => Ok(false),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// Every call (of every live node, in cluster mode).
pub async fn list_calls(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Agent) {
        return e;
    }
    match local_calls(&s).await {
        Ok(calls) => super::cluster::merged(&s, "calls", calls).await,
        Err(e) => e,
    }
}

pub async fn get_call(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Agent) {
        return e;
    }
    match local_call(&s, &id).await {
        Ok(Some(c)) => Json(super::cluster::tag_local(&s, c)).into_response(),
        Ok(None) => match super::cluster::find(&s, json!({ "op": "call", "call": id })).await {
            Some(c) => Json(c).into_response(),
            None => error(StatusCode::NOT_FOUND, "no such call"),
        },
        Err(e) => e,
    }
}

pub async fn delete_call(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = match authorize(&s, &headers, Role::Admin) {
        Ok(u) => u,
        Err(e) => return e,
    };
    match local_hangup(&s, &id).await {
        Ok(true) => {
            tracing::info!(call = %id, %user, "call ended by admin");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => {
            let cmd = json!({ "op": "hangup", "call": id });
            match super::cluster::find(&s, cmd).await {
                Some(v) => {
                    tracing::info!(call = %id, %user, node = %v["node"], "call on another node ended by admin");
                    StatusCode::NO_CONTENT.into_response()
                }
                None => ApiError::from(b2bua::CommandError::NoCall).into_response(),
            }
        }
        Err(e) => e,
    }
}
