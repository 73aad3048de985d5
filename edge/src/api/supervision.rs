//! API for supervising live calls: monitors (listen / whisper / barge) and pausing
//! the recording. Supervisors and admins may monitor; a supervisor monitors from their
//! own phone (`user` defaults to, and must be, themselves), an admin may name any
//! supervisor. Any signed-in user (agents included) may pause and resume a call's
//! recording, so an agent can keep a card number out of it, and send DTMF into a
//! call (digits are never logged: they may be card numbers).

// Handlers return an axum `Response` as their error: it goes straight to the client.
#![allow(clippy::result_large_err)]

use super::auth::{authorize_user, declared_length};
use super::error::{error, ApiError};
use super::state::{ask, AppState};
use crate::core::CoreMsg;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use b2bua::{parse_mode, MonitorMode};
use b2bua::{CallCommand, Reply};
use control::Role;
use serde::Deserialize;
use serde_json::json;

/// The signed-in user (at least `role`) and the parsed JSON body. The token is
/// checked before a byte of the body is read, and the body may not exceed
/// [`JSON_LIMIT`] (413 otherwise, from Content-Length when it says so).
pub(super) async fn user_and_body<T: for<'de> Deserialize<'de>>(
    s: &AppState,
    headers: &HeaderMap,
    role: Role,
    body: Body,
) -> Result<(control::User, T), Response> {
    let user = authorize_user(s, headers, role)?;
    let b = read_limited(headers, body, JSON_LIMIT).await?;
    let parsed = serde_json::from_slice(&b)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))?;
    Ok((user, parsed))
}

/// Largest JSON body of a call command.
pub const JSON_LIMIT: usize = 16 * 1024;

/// The body, at most `limit` bytes: 413 (the API's JSON error) when the
/// Content-Length says more, or when more arrives.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is limited to {limit} bytes"),
        )
    };
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

fn mode(s: &str) -> Result<MonitorMode, Response> {
    parse_mode(s).ok_or_else(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "mode must be listen, whisper or barge",
        )
    })
}

/// "customer" → A, "agent" → B; `field` names the JSON field in the error.
fn party(s: &str, field: &str) -> Result<media::Side, Response> {
    match s {
        "customer" => Ok(media::Side::A),
        "agent" => Ok(media::Side::B),
        _ => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{field} must be customer or agent"),
        )),
    }
}

pub(super) async fn command(s: &AppState, cmd: CallCommand) -> Result<Option<String>, Response> {
    match ask(&s.core, |tx| CoreMsg::Command(cmd, tx)).await? {
        Ok(Reply::Monitor(id) | Reply::Participant(id)) => Ok(Some(id)),
        Ok(Reply::Done) => Ok(None),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMonitor {
    user: Option<String>,
    mode: Option<String>,
}

pub async fn add_monitor(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(call): Path<String>,
    b: Body,
) -> Response {
    let (me, req): (_, NewMonitor) = match user_and_body(&s, &headers, Role::Supervisor, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let m = match mode(req.mode.as_deref().unwrap_or("listen")) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let user = req.user.unwrap_or_else(|| me.name.clone());
    if user != me.name && me.role != Role::Admin {
        return error(
            StatusCode::FORBIDDEN,
            "a supervisor can only monitor from their own phone",
        );
    }
    let snap = s.snapshot.load();
    match snap.user(&user) {
        None => return error(StatusCode::UNPROCESSABLE_ENTITY, "no such user"),
        Some(u) if !u.has_role(Role::Supervisor) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "that user is not a supervisor",
            )
        }
        Some(_) => {}
    }
    let cmd = CallCommand::AddMonitor {
        call: call.clone(),
        user: user.clone(),
        mode: m,
    };
    match command(&s, cmd).await {
        Ok(id) => {
            tracing::info!(%call, by = %me.name, %user, "monitor requested");
            (
                StatusCode::CREATED,
                Json(json!({ "id": id, "user": user, "mode": b2bua::mode_str(m), "state": "calling" })),
            )
                .into_response()
        }
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeChange {
    mode: String,
}

pub async fn patch_monitor(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((call, monitor)): Path<(String, String)>,
    b: Body,
) -> Response {
    let (_, req): (_, ModeChange) = match user_and_body(&s, &headers, Role::Supervisor, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let m = match mode(&req.mode) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let cmd = CallCommand::SetMode {
        call,
        monitor: monitor.clone(),
        mode: m,
    };
    match command(&s, cmd).await {
        Ok(_) => Json(json!({ "id": monitor, "mode": req.mode })).into_response(),
        Err(e) => e,
    }
}

pub async fn delete_monitor(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((call, monitor)): Path<(String, String)>,
) -> Response {
    if let Err(e) = authorize_user(&s, &headers, Role::Supervisor) {
        return e;
    }
    match command(&s, CallCommand::RemoveMonitor { call, monitor }).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingState {
    state: String,
}

pub async fn set_recording(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(call): Path<String>,
    b: Body,
) -> Response {
    let (me, req): (_, RecordingState) = match user_and_body(&s, &headers, Role::Agent, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let paused = match req.state.as_str() {
        "paused" => true,
        "recording" => false,
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "state must be paused or recording",
            )
        }
    };
    match command(
        &s,
        CallCommand::Recording {
            call: call.clone(),
            paused,
        },
    )
    .await
    {
        Ok(_) => {
            tracing::info!(%call, by = %me.name, paused, "recording state");
            Json(json!({ "state": req.state })).into_response()
        }
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dtmf {
    digits: String,
    /// "customer" (default) or "agent".
    to: Option<String>,
}

pub async fn send_dtmf(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(call): Path<String>,
    b: Body,
) -> Response {
    let (me, req): (_, Dtmf) = match user_and_body(&s, &headers, Role::Agent, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let to = match party(req.to.as_deref().unwrap_or("customer"), "to") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let n = req.digits.chars().count();
    let cmd = CallCommand::Dtmf {
        call: call.clone(),
        digits: req.digits,
        to,
    };
    match command(&s, cmd).await {
        Ok(_) => {
            tracing::info!(%call, by = %me.name, digits = n, "DTMF sent");
            (StatusCode::ACCEPTED, Json(json!({ "queued": n }))).into_response()
        }
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hold {
    /// "customer" or "agent": who is put on hold.
    party: String,
    held: bool,
}

/// `POST /api/v1/calls/{id}/hold {"party":"customer","held":true}`: the held party
/// hears the queue's hold audio (or silence), the other party hears silence. Any
/// signed-in user (the agent holds their customer).
pub async fn set_hold(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(call): Path<String>,
    b: Body,
) -> Response {
    let (me, req): (_, Hold) = match user_and_body(&s, &headers, Role::Agent, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let side = match party(&req.party, "party") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let cmd = CallCommand::Hold {
        call: call.clone(),
        side,
        held: req.held,
    };
    match command(&s, cmd).await {
        Ok(_) => {
            tracing::info!(%call, by = %me.name, party = %req.party, held = req.held, "hold");
            Json(json!({ "party": req.party, "held": req.held })).into_response()
        }
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    to: String,
}

/// `POST /api/v1/calls/{id}/transfer {"to": "1002" | "queue:sales" | "sip:…"}`:
/// blind transfer. The call's own agent, supervisors and admins may; another
/// agent gets 403.
pub async fn transfer(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(call): Path<String>,
    b: Body,
) -> Response {
    move_call(s, headers, call, b, false).await
}

/// A blind transfer, or (`consult`) a consultation, of `call` to the body's `to`.
async fn move_call(
    s: AppState,
    headers: HeaderMap,
    call: String,
    b: Body,
    consult: bool,
) -> Response {
    let (me, req): (_, Transfer) = match user_and_body(&s, &headers, Role::Agent, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    if req.to.trim().is_empty() || req.to.len() > 256 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`to` names an agent, a number, queue:NAME or a SIP URI (at most 256 bytes)",
        );
    }
    let (call_, to, by_agent) = (call.clone(), req.to.clone(), acting_agent(&s, &me));
    let (cmd, what, state) = if consult {
        let cmd = CallCommand::Consult {
            call: call_,
            to,
            by_agent,
        };
        (cmd, "consultation", "consulting")
    } else {
        let cmd = CallCommand::Transfer {
            call: call_,
            to,
            by_agent,
        };
        (cmd, "transfer", "transferring")
    };
    match command(&s, cmd).await {
        Ok(_) => {
            tracing::info!(%call, by = %me.name, to = %req.to, "{what}");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "call": call, "to": req.to, "state": state })),
            )
                .into_response()
        }
        Err(e) => e,
    }
}

/// `None` for supervisors and admins (any call); an agent acts only on a call it
/// is on (a user linked to no agent: on none).
pub(super) fn acting_agent(s: &AppState, me: &control::User) -> Option<String> {
    if me.has_role(Role::Supervisor) {
        return None;
    }
    Some(
        s.snapshot
            .load()
            .agent_of_user(&me.name)
            .map_or_else(String::new, |a| a.id.clone()),
    )
}

/// `POST /api/v1/calls/{id}/consult {"to"}`: the customer on hold, the agent
/// talks to `to` (consult transfer). Same permissions as a transfer.
pub async fn consult(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(call): Path<String>,
    b: Body,
) -> Response {
    move_call(s, headers, call, b, true).await
}

/// `POST /api/v1/calls/{id}/consult/{action}`: `complete` (the target takes the
/// customer, the agent leaves) or `cancel` (back to the customer).
pub async fn consult_action(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((call, action)): Path<(String, String)>,
) -> Response {
    let me = match super::auth::authorize_user(&s, &headers, Role::Agent) {
        Ok(u) => u,
        Err(e) => return e,
    };
    let by_agent = acting_agent(&s, &me);
    let cmd = match action.as_str() {
        "complete" => CallCommand::ConsultComplete {
            call: call.clone(),
            by_agent,
        },
        "cancel" => CallCommand::ConsultCancel {
            call: call.clone(),
            by_agent,
        },
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "use consult/complete or consult/cancel",
            )
        }
    };
    match command(&s, cmd).await {
        Ok(_) => {
            tracing::info!(%call, by = %me.name, %action, "consultation");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "call": call, "consult": action })),
            )
                .into_response()
        }
        Err(e) => e,
    }
}
