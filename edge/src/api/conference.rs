//! `/api/v1/calls/{id}/participants`: conferences. The call's agent (its
//! `user`), supervisors and admins may add, change and remove parties; another
//! agent gets 403. Digits are never logged (they may be card numbers).

// Handlers return an axum `Response` as their error: it goes straight to the client.
#![allow(clippy::result_large_err)]

use super::auth::authorize_user;
use super::error::error;
use super::state::AppState;
use super::supervision::{acting_agent, command, user_and_body};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use b2bua::{CallCommand, ParticipantFlags};
use control::Role;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewParticipant {
    to: String,
}

pub async fn add(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(call): Path<String>,
    b: Body,
) -> Response {
    let (me, req): (_, NewParticipant) = match user_and_body(&s, &headers, Role::Agent, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    if req.to.trim().is_empty() || req.to.len() > 256 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`to` names an agent, queue:NAME, a number or a SIP URI (at most 256 bytes)",
        );
    }
    let cmd = CallCommand::AddParticipant {
        call: call.clone(),
        to: req.to.clone(),
        by_agent: acting_agent(&s, &me),
    };
    match command(&s, cmd).await {
        Ok(id) => {
            tracing::info!(%call, by = %me.name, to = %req.to, participant = ?id, "participant added");
            (
                StatusCode::CREATED,
                Json(json!({ "id": id, "to": req.to, "state": "calling" })),
            )
                .into_response()
        }
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    muted: Option<bool>,
    deaf: Option<bool>,
    held: Option<bool>,
}

pub async fn patch(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((call, participant)): Path<(String, String)>,
    b: Body,
) -> Response {
    let (me, req): (_, Patch) = match user_and_body(&s, &headers, Role::Agent, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let flags = ParticipantFlags {
        muted: req.muted,
        deaf: req.deaf,
        held: req.held,
    };
    let cmd = CallCommand::SetParticipant {
        call: call.clone(),
        participant: participant.clone(),
        flags,
        by_agent: acting_agent(&s, &me),
    };
    match command(&s, cmd).await {
        Ok(_) => {
            tracing::info!(%call, %participant, by = %me.name, ?flags, "participant changed");
            Json(json!({
                "id": participant, "muted": req.muted, "deaf": req.deaf, "held": req.held,
            }))
            .into_response()
        }
        Err(e) => e,
    }
}

pub async fn remove(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((call, participant)): Path<(String, String)>,
) -> Response {
    let me = match authorize_user(&s, &headers, Role::Agent) {
        Ok(u) => u,
        Err(e) => return e,
    };
    let cmd = CallCommand::RemoveParticipant {
        call: call.clone(),
        participant: participant.clone(),
        by_agent: acting_agent(&s, &me),
    };
    match command(&s, cmd).await {
        Ok(_) => {
            tracing::info!(%call, %participant, by = %me.name, "participant removed");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Digits {
    digits: String,
}

pub async fn dtmf(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((call, participant)): Path<(String, String)>,
    b: Body,
) -> Response {
    let (me, req): (_, Digits) = match user_and_body(&s, &headers, Role::Agent, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let n = req.digits.chars().count();
    let cmd = CallCommand::ParticipantDtmf {
        call: call.clone(),
        participant: participant.clone(),
        digits: req.digits,
        by_agent: acting_agent(&s, &me),
    };
    match command(&s, cmd).await {
        Ok(_) => {
            tracing::info!(%call, %participant, by = %me.name, digits = n, "DTMF sent");
            (StatusCode::ACCEPTED, Json(json!({ "queued": n }))).into_response()
        }
        Err(e) => e,
    }
}
