//! `GET /api/v1/agents` (supervisors and admins: every agent; an agent: itself) and
//! `PUT /api/v1/agents/{id}/state` (the agent itself — the `[[users]]` entry its
//! `user` names —, a supervisor, an admin; another agent gets 403).

use super::auth::{authorize_user, error};
use super::state::{ask, AppState};
use super::supervision::user_and_body;
use crate::core::CoreMsg;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use b2bua::{AgentError, AgentInfo};
use control::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

fn unix_ms(t: std::time::SystemTime) -> u64 {
    storage::unix_ms(t)
}

fn agent_json(a: &AgentInfo, chats_now: usize) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "user": a.user,
        "state": a.state,
        "reason": a.reason,
        "since": unix_ms(a.since),
        "calls_today": a.calls_today,
        "chats_now": chats_now,
        "missed_in_a_row": a.missed_in_a_row,
        "idle_secs": a.idle_secs,
        "bindings": a.bindings,
        "static_contact": a.static_contact,
    })
}

/// Whether `user` may see and set agent `agent`: supervisors and admins any, an
/// agent only the agent that is it.
fn may_act_for(s: &AppState, user: &control::User, agent: &str) -> bool {
    user.has_role(Role::Supervisor)
        || s.snapshot
            .load()
            .agent(agent)
            .is_some_and(|a| a.user.as_deref() == Some(user.name.as_str()))
}

/// The agent's active chats: this node's, plus (cluster mode) the other live
/// nodes' in `elsewhere`.
fn chats_now(s: &AppState, a: &AgentInfo, elsewhere: &HashMap<String, usize>) -> usize {
    a.user.as_deref().map_or(0, |u| {
        s.chats.read(|c| c.active_chats_of(u)) + elsewhere.get(u).copied().unwrap_or(0)
    })
}

/// Cluster mode: each agent's active chats on the other live nodes (an agent
/// takes chats from every node's queues through its console's links).
async fn chats_elsewhere(s: &AppState) -> HashMap<String, usize> {
    let mut out: HashMap<String, usize> = HashMap::new();
    let Some(cl) = &s.cluster else {
        return out;
    };
    for (_, a) in cl.ask_others(&json!({ "op": "agent_chats" })).await.answers {
        for (user, n) in a["chats"].as_object().into_iter().flatten() {
            *out.entry(user.clone()).or_default() += n.as_u64().unwrap_or(0) as usize;
        }
    }
    out
}

pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let me = match authorize_user(&s, &headers, Role::Agent) {
        Ok(u) => u,
        Err(e) => return e,
    };
    match ask(&s.core, CoreMsg::ListAgents).await {
        Ok(list) => {
            let elsewhere = chats_elsewhere(&s).await;
            let items: Vec<Value> = list
                .iter()
                .filter(|a| may_act_for(&s, &me, &a.id))
                .map(|a| agent_json(a, chats_now(&s, a, &elsewhere)))
                .collect();
            Json(json!({ "agents": items })).into_response()
        }
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetState {
    state: String,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn set_state(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(agent): Path<String>,
    b: Body,
) -> Response {
    let (me, req): (_, SetState) = match user_and_body(&s, &headers, Role::Agent, b).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    if s.snapshot.load().agent(&agent).is_none() {
        return error(StatusCode::NOT_FOUND, "no such agent");
    }
    if !may_act_for(&s, &me, &agent) {
        tracing::info!(user = %me.name, %agent, "forbidden: another agent's state");
        return error(StatusCode::FORBIDDEN, "an agent may set only its own state");
    }
    let choice = match b2bua::parse_choice(&req.state, req.reason.as_deref()) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    };
    let agent_id = agent.clone();
    match ask(&s.core, |reply| CoreMsg::SetAgentState {
        agent: agent_id,
        choice,
        reply,
    })
    .await
    {
        Ok(Ok(info)) => {
            tracing::info!(%agent, by = %me.name, state = %req.state, "agent state set");
            let elsewhere = chats_elsewhere(&s).await;
            Json(agent_json(&info, chats_now(&s, &info, &elsewhere))).into_response()
        }
        Ok(Err(AgentError::NoAgent)) => error(StatusCode::NOT_FOUND, "no such agent"),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(e) => e,
    }
}
