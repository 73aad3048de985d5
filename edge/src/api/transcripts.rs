//! Chat transcripts from the SQLite store: `GET /api/v1/chats/{id}/transcript`
//! (JSON, plain text or a printable HTML page) and `GET /api/v1/transcripts`
//! (search by date, queue, agent).
//!
//! Who may read a transcript: supervisors and admins any; an agent the chats it
//! handled; the customer its own chat, with its chat token in `X-Chat-Token`
//! (customers never see consultation or internal notes).

// Handlers return their error response as the Err side.
#![allow(clippy::result_large_err)]

use super::auth::{authorize, authorize_user, error};
use super::error::ApiError;
use super::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chat::store::{token_hash, StoredMessage};
use control::Role;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};
use storage::transcript::{Query as Search, StoredChat};

pub const CHAT_TOKEN_HEADER: &str = "x-chat-token";

/// `2026-11-21 10:04:05 UTC`
fn utc(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    format!(
        "{} UTC",
        humantime::format_rfc3339_seconds(t)
            .to_string()
            .trim_end_matches('Z')
            .replace('T', " ")
    )
}

/// A `from`/`to` value that is none of the forms [`parse_time`] reads.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a date (YYYY-MM-DD), an RFC 3339 time or Unix ms")]
pub struct BadTime(String);

impl From<BadTime> for ApiError {
    fn from(e: BadTime) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// A date (`2026-11-21`), a date and time (`2026-11-21T10:00:00Z`) or Unix ms.
fn parse_time(s: &str) -> Result<u64, BadTime> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    humantime::parse_rfc3339_weak(full.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| BadTime(s.to_string()))
}

/// Who is asking, and whether it may see private entries. `Err` is the response.
fn reader(s: &AppState, headers: &HeaderMap, chat: &StoredChat) -> Result<bool, Response> {
    if let Some(t) = headers.get(CHAT_TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return if token_hash(t.trim()) == chat.token_hash {
            Ok(false)
        } else {
            Err(error(
                StatusCode::FORBIDDEN,
                "the chat token does not match this chat",
            ))
        };
    }
    let user = authorize_user(s, headers, Role::Agent)?;
    if user.has_role(Role::Supervisor) || chat.agents.contains(&user.name) {
        Ok(true)
    } else {
        Err(error(StatusCode::FORBIDDEN, "not a chat you handled"))
    }
}

struct Line {
    ts: u64,
    who: String,
    text: String,
    private: bool,
}

/// Messages (and the end) as lines; typing and other frames are not stored anyway.
fn lines(msgs: &[StoredMessage]) -> Vec<Line> {
    msgs.iter()
        .filter_map(|m| {
            let v: Value = serde_json::from_str(&m.frame).ok()?;
            let ts = v["ts"].as_u64().unwrap_or(0);
            match v["type"].as_str()? {
                "message" => {
                    let from = v["from"].as_str().unwrap_or("");
                    let name = v["name"].as_str().unwrap_or("");
                    let who = match (from, name) {
                        ("system", _) => "—".to_string(),
                        (f, "") => f.to_string(),
                        (_, n) => n.to_string(),
                    };
                    let mut text = v["text"].as_str().unwrap_or("").to_string();
                    if let Some(url) = v["attachment"]["url"].as_str() {
                        text = format!("{text} [{url}]");
                    }
                    Some(Line {
                        ts,
                        who,
                        text,
                        private: m.private,
                    })
                }
                "ended" => Some(Line {
                    ts,
                    who: "—".into(),
                    text: format!("chat ended: {}", v["reason"].as_str().unwrap_or("")),
                    private: false,
                }),
                _ => None,
            }
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn as_text(chat: &StoredChat, lines: &[Line]) -> String {
    let mut out = format!(
        "Chat {} (queue {}), started {}\n",
        chat.id,
        chat.queue,
        utc(chat.created_ms)
    );
    for (k, v) in &chat.fields {
        out.push_str(&format!("{k}: {}\n", v.as_str().unwrap_or(&v.to_string())));
    }
    out.push('\n');
    for l in lines {
        let p = if l.private { " (private)" } else { "" };
        out.push_str(&format!("[{}] {}{p}: {}\n", utc(l.ts), l.who, l.text));
    }
    out
}

fn as_html(chat: &StoredChat, lines: &[Line]) -> String {
    let mut rows = String::new();
    for l in lines {
        rows.push_str(&format!(
            "<tr{}><td class=t>{}</td><td class=w>{}</td><td>{}</td></tr>\n",
            if l.private { " class=private" } else { "" },
            escape(&utc(l.ts)),
            escape(&l.who),
            escape(&l.text)
        ));
    }
    let fields: String = chat
        .fields
        .iter()
        .map(|(k, v)| {
            format!(
                "<dt>{}</dt><dd>{}</dd>",
                escape(k),
                escape(v.as_str().unwrap_or(&v.to_string()))
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chat transcript {id}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}}
table{{border-collapse:collapse;width:100%}} td{{padding:4px 8px;vertical-align:top;border-bottom:1px solid #ddd}}
td.t{{white-space:nowrap;color:#555}} td.w{{font-weight:600;white-space:nowrap}}
tr.private td{{background:#fff6d5}} dl{{display:grid;grid-template-columns:max-content auto;gap:2px 12px}}
@media print{{button{{display:none}}}}
</style></head><body>
<h1>Chat transcript</h1>
<p>Chat <code>{id}</code>, queue {queue}, started {started}</p>
<dl>{fields}</dl>
<button onclick="window.print()">Print</button>
<table>{rows}</table>
</body></html>
"#,
        id = escape(&chat.id),
        queue = escape(&chat.queue),
        started = escape(&utc(chat.created_ms)),
    )
}

/// `GET /api/v1/chats/{id}/transcript?format=json|text|html`
pub async fn transcript(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let format = q.get("format").map(String::as_str).unwrap_or("json");
    if !matches!(format, "json" | "text" | "html") {
        return error(StatusCode::BAD_REQUEST, "format must be json, text or html");
    }
    // Cluster mode: JetStream holds the whole chat whichever nodes it lived on
    // (this node's own store has only what happened here).
    let shared = match s.cluster.as_ref().and_then(|c| c.chat.get()) {
        Some(log) => from_cluster(log, &id).await,
        None => None,
    };
    let store = s.transcripts.clone();
    let id2 = id.clone();
    let found = match shared {
        Some(x) => Ok(Ok(Some(x))),
        None => tokio::task::spawn_blocking(move || store.get(&id2, true)).await,
    };
    let (chat, mut msgs) = match found {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => return error(StatusCode::NOT_FOUND, "no such chat"),
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let private = match reader(&s, &headers, &chat) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !private {
        msgs.retain(|m| !m.private);
    }
    let ls = lines(&msgs);
    match format {
        "text" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            as_text(&chat, &ls),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            as_html(&chat, &ls),
        )
            .into_response(),
        _ => {
            let frames: Vec<Value> = msgs
                .iter()
                .filter_map(|m| serde_json::from_str(&m.frame).ok())
                .collect();
            Json(json!({"chat": chat, "messages": frames})).into_response()
        }
    }
}

/// A chat's record and every entry from JetStream; `None` when it is not there
/// or NATS does not answer (the local store is asked then).
async fn from_cluster(
    log: &crate::cluster::chat::ChatLog,
    id: &str,
) -> Option<(StoredChat, Vec<StoredMessage>)> {
    let got = async {
        let Some((r, agents)) = log.record(id).await? else {
            return Ok(None);
        };
        let msgs = log.entries(id).await?;
        Ok::<_, String>(Some((
            StoredChat {
                id: r.id,
                queue: r.queue,
                fields: r.fields,
                state: r.state,
                agent: r.agent,
                agents,
                created_ms: r.created_ms,
                ended_ms: r.ended_ms,
                token_hash: r.token_hash,
            },
            msgs,
        )))
    };
    match got.await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(chat = %id, error = %e, "transcript not read from the cluster; this node's copy is used");
            None
        }
    }
}

/// `GET /api/v1/transcripts?from=&to=&queue=&agent=&limit=` (supervisors).
pub async fn search(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Supervisor) {
        return e;
    }
    let time = |k: &str| q.get(k).map(|v| parse_time(v)).transpose();
    let (from_ms, to_ms) = match (time("from"), time("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into(),
    };
    let limit = match q.get("limit").map(|l| l.parse::<u32>()) {
        None => 100,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => return error(StatusCode::BAD_REQUEST, "limit must be 1 to 1000"),
    };
    let query = Search {
        from_ms,
        to_ms,
        queue: q.get("queue").cloned(),
        agent: q.get("agent").cloned(),
        limit,
    };
    let store = s.transcripts.clone();
    match tokio::task::spawn_blocking(move || store.search(&query)).await {
        Ok(Ok(chats)) => Json(json!({"chats": chats})).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[cfg(test)]
#[path = "transcripts_tests.rs"]
mod tests;
