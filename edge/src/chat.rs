//! Web chat over WebSocket: `/ws/chat` for customers, `/ws/agent` for agents and
//! supervisors (protocol in README), plus `GET /api/v1/chats` and
//! `DELETE /api/v1/chats/{id}`. The logic lives in `signaling::chat`; this module
//! moves frames between sockets and hub subscriptions.
//!
//! Close codes: 1000 chat ended, 4001 authentication failed, 4002 protocol error (bad
//! first frame), 4008 slow consumer (resume from your last offset), 4009 replaced by
//! a newer connection.

use crate::api::{authorize, error, AppState};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use control::Role;
use serde_json::{json, Map, Value};
use signaling::chat::hub::{Closed, Frame, Subscription};
use signaling::chat::service::{ChatError, Part, Resume, Target};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Largest frame a client may send.
pub const MAX_FRAME: usize = 64 * 1024;
const FIRST_FRAME: Duration = Duration::from_secs(10);

static CONN: AtomicU64 = AtomicU64::new(1);

fn next_conn() -> u64 {
    CONN.fetch_add(1, Ordering::Relaxed)
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

fn frame(f: &Frame) -> Message {
    Message::Text(Utf8Bytes::from(f.to_string()))
}

async fn close(sock: &mut WebSocket, code: u16, reason: &str) {
    let _ = sock
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

fn close_for(reason: Closed) -> (u16, &'static str) {
    match reason {
        Closed::SlowConsumer => (
            4008,
            "slow consumer: reconnect and resume from your last offset",
        ),
        Closed::Removed => (4009, "replaced by a newer connection"),
        Closed::Ended | Closed::Open => (1000, "chat ended"),
    }
}

/// The next JSON object from the client; `None` when the socket closed.
async fn next_json(sock: &mut WebSocket) -> Option<Result<Value, String>> {
    loop {
        match sock.recv().await? {
            Ok(Message::Text(t)) => {
                return Some(
                    serde_json::from_str::<Value>(&t)
                        .map_err(|e| format!("invalid JSON: {e}"))
                        .and_then(|v| {
                            if v.get("type").and_then(Value::as_str).is_some() {
                                Ok(v)
                            } else {
                                Err("a frame needs a string `type`".into())
                            }
                        }),
                )
            }
            Ok(Message::Binary(_)) => return Some(Err("binary frames are not accepted".into())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue, // ping/pong
        }
    }
}

fn err_frame(chat: Option<&str>, e: &str) -> Message {
    text(json!({"type":"error","chat":chat,"error":e}))
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn fields_of(v: &Value) -> Map<String, Value> {
    v.get("fields")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Frame limit, and a small read buffer: tungstenite's default allocates 128 KiB per
/// connection up front, which is most of an idle connection's memory (measured with
/// `bench/chat.sh`); chat frames are small and the buffer grows when one is not.
fn limits(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(READ_BUFFER)
}

const READ_BUFFER: usize = 4096;

pub async fn ws_customer(State(s): State<AppState>, ws: WebSocketUpgrade) -> Response {
    limits(ws).on_upgrade(move |sock| customer(sock, s))
}

/// Start or resume: returns the chat and the offset to replay from.
async fn customer_open(sock: &mut WebSocket, s: &AppState) -> Option<(String, u64)> {
    let snap = s.snapshot.load_full();
    loop {
        let first = match tokio::time::timeout(FIRST_FRAME, next_json(sock)).await {
            Ok(Some(Ok(v))) => v,
            Ok(Some(Err(e))) => {
                close(sock, 4002, &e).await;
                return None;
            }
            _ => return None,
        };
        let queue = str_of(&first, "queue");
        let fields = fields_of(&first);
        let start = || {
            s.chats
                .start(&snap, queue.unwrap_or(""), fields.clone(), Instant::now())
        };
        match str_of(&first, "type") {
            Some("start") => {
                let r = start();
                return match r {
                    Ok((id, token)) => {
                        let _ = sock
                            .send(text(json!({"type":"started","chat":id,"token":token})))
                            .await;
                        Some((id, 0))
                    }
                    Err(e) => {
                        close(sock, 4002, &e.to_string()).await;
                        None
                    }
                };
            }
            Some("resume") => {
                let token = str_of(&first, "token").unwrap_or("");
                let offset = first.get("offset").and_then(Value::as_u64).unwrap_or(0);
                let choice = match str_of(&first, "choice") {
                    Some("continue") => Some(true),
                    Some("new") => Some(false),
                    _ => None,
                };
                let has_fields = first.get("fields").is_some();
                let r = s
                    .chats
                    .resume(&snap, token, queue, has_fields.then_some(&fields), choice);
                match r {
                    Ok(Resume::Continue(id)) => {
                        let _ = sock.send(text(json!({"type":"resumed","chat":id}))).await;
                        return Some((id, offset));
                    }
                    Ok(Resume::Prompt(id)) => {
                        // Ask; the client answers with `resume` + `choice`.
                        let _ = sock.send(text(json!({"type":"prompt","chat":id}))).await;
                        continue;
                    }
                    Ok(Resume::StartNew) if queue.is_some() => {
                        let r = start();
                        return match r {
                            Ok((id, token)) => {
                                let _ = sock
                                    .send(text(json!({"type":"started","chat":id,"token":token,"previous_ended":true})))
                                    .await;
                                Some((id, 0))
                            }
                            Err(e) => {
                                close(sock, 4002, &e.to_string()).await;
                                None
                            }
                        };
                    }
                    Ok(Resume::StartNew) => {
                        let _ = sock
                            .send(text(json!({"type":"ended","chat":null,"reason":"the chat has ended; start a new one"})))
                            .await;
                        continue;
                    }
                    Err(e) => {
                        let _ = sock.send(err_frame(None, &e.to_string())).await;
                        continue;
                    }
                }
            }
            _ => {
                close(sock, 4002, "the first frame must be start or resume").await;
                return None;
            }
        }
    }
}

async fn customer(mut sock: WebSocket, s: AppState) {
    let Some((id, offset)) = customer_open(&mut sock, &s).await else {
        return;
    };
    let conn = next_conn();
    let mut sub = match s.chats.customer_attach(&id, conn, offset) {
        Ok(sub) => sub,
        Err(e) => {
            close(&mut sock, 1000, &e.to_string()).await;
            return;
        }
    };
    if !replay(&mut sock, &id, &mut sub).await {
        s.chats.customer_detach(&id, conn, Instant::now());
        return;
    }
    let shown = s.chats.customer_name(&id);
    loop {
        tokio::select! {
            f = sub.inbox.rx.recv() => match f {
                Some(f) => {
                    if sock.send(frame(&f)).await.is_err() {
                        break;
                    }
                }
                None => {
                    let (code, why) = close_for(sub.inbox.reason());
                    close(&mut sock, code, why).await;
                    break;
                }
            },
            m = next_json(&mut sock) => match m {
                None => break,
                Some(Err(e)) => {
                    let _ = sock.send(err_frame(Some(&id), &e)).await;
                }
                Some(Ok(v)) => {
                    if let Err(e) = customer_frame(&s, &id, conn, &shown, &v) {
                        let _ = sock.send(err_frame(Some(&id), &e)).await;
                    }
                }
            }
        }
    }
    s.chats.customer_detach(&id, conn, Instant::now());
}

/// `shown`: the customer's name from its start form, looked up once per connection
/// rather than under the service lock for every message.
fn customer_frame(s: &AppState, id: &str, conn: u64, shown: &str, v: &Value) -> Result<(), String> {
    let c = &s.chats;
    match str_of(v, "type").unwrap_or("") {
        "message" => {
            let name = str_of(v, "name").filter(|n| !n.is_empty()).unwrap_or(shown);
            let text = str_of(v, "text").unwrap_or("");
            c.message(id, "customer", name, str_of(v, "client_id"), text, false)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "typing" => {
            let on = v.get("on").and_then(Value::as_bool).unwrap_or(true);
            c.typing(id, conn, "customer", on)
                .map_err(|e| e.to_string())
        }
        "end" => {
            c.end(
                &s.snapshot.load(),
                id,
                "customer",
                "the customer ended the chat",
            );
            Ok(())
        }
        other => Err(format!("unknown frame type `{other}`")),
    }
}

/// A subscription's stored frames, preceded by `history_truncated` when the asked
/// offset was older than what the room keeps.
fn initial_frames(id: &str, sub: &mut Subscription) -> Vec<Frame> {
    let mut v = Vec::with_capacity(sub.replay.len() + 1);
    if sub.truncated {
        v.push(
            json!({"type":"history_truncated","chat":id})
                .to_string()
                .into(),
        );
    }
    v.append(&mut sub.replay);
    v
}

/// Send a subscription's stored frames to the socket.
async fn replay(sock: &mut WebSocket, id: &str, sub: &mut Subscription) -> bool {
    for f in initial_frames(id, sub) {
        if sock.send(frame(&f)).await.is_err() {
            return false;
        }
    }
    true
}

pub async fn ws_agent(
    State(s): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A bearer header (non-browser clients) or, from a browser, a first `auth` frame.
    let user = crate::api::authorize_user(&s, &headers, Role::Agent).ok();
    limits(ws).on_upgrade(move |sock| agent(sock, s, user))
}

enum Fwd {
    Frame(Frame),
    Closed(String, Closed),
}

/// Forward one room's frames (replay, then live) into the connection's queue.
fn forward(
    id: String,
    mut sub: Subscription,
    tx: mpsc::Sender<Fwd>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for f in initial_frames(&id, &mut sub) {
            if tx.send(Fwd::Frame(f)).await.is_err() {
                return;
            }
        }
        while let Some(f) = sub.inbox.rx.recv().await {
            if tx.send(Fwd::Frame(f)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Fwd::Closed(id, sub.inbox.reason())).await;
    })
}

async fn agent(mut sock: WebSocket, s: AppState, user: Option<control::User>) {
    let user = match user {
        Some(u) => u,
        None => {
            let first = tokio::time::timeout(FIRST_FRAME, next_json(&mut sock)).await;
            let token = match &first {
                Ok(Some(Ok(v))) if str_of(v, "type") == Some("auth") => str_of(v, "token"),
                _ => None,
            };
            let snap = s.snapshot.load();
            match token
                .and_then(|t| snap.user_by_token(t))
                .filter(|u| u.has_role(Role::Agent))
            {
                Some(u) => u.clone(),
                None => {
                    close(&mut sock, 4001, "authentication failed").await;
                    return;
                }
            }
        }
    };
    let conn = next_conn();
    let supervisor = user.has_role(Role::Supervisor);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Frame>(256);
    let (fwd_tx, mut fwd_rx) = mpsc::channel::<Fwd>(1024);
    // A user who takes chats (an agent of a chat queue) has one console: a newer
    // one replaces it (4009). Others (supervisors watching) may open any number.
    let takes_chats = s
        .snapshot
        .load()
        .config
        .queues
        .iter()
        .any(|q| q.channel == control::Channel::Chat && q.agents.contains(&user.name));
    let _keep_ctl;
    let mine = if takes_chats {
        s.chats.agent_connect(
            &s.snapshot.load(),
            &user.name,
            conn,
            ctl_tx,
            user.max_chats,
            Instant::now(),
        )
    } else {
        _keep_ctl = ctl_tx;
        Vec::new()
    };
    let snap = s.snapshot.load();
    let queues: Vec<&str> = snap
        .config
        .queues
        .iter()
        .filter(|q| q.channel == control::Channel::Chat)
        .map(|q| q.name.as_str())
        .collect();
    let hello = json!({"type":"hello","user":user.name,"role":user.role,"max_chats":user.max_chats,
        "chats":mine,"queues":queues,"canned":snap.config.chat.canned_responses});
    drop(snap);
    if sock.send(text(hello)).await.is_err() {
        s.chats
            .agent_disconnect(&s.snapshot.load(), &user.name, conn, Instant::now());
        return;
    }
    let mut subs: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            f = ctl_rx.recv() => match f {
                Some(f) => {
                    if sock.send(frame(&f)).await.is_err() { break; }
                }
                None => {
                    // The service dropped this console: the same agent connected again.
                    let (code, reason) = close_for(Closed::Removed);
                    close(&mut sock, code, reason).await;
                    break;
                }
            },
            f = fwd_rx.recv() => match f {
                Some(Fwd::Frame(f)) => {
                    if sock.send(frame(&f)).await.is_err() { break; }
                }
                Some(Fwd::Closed(id, why)) => {
                    subs.remove(&id);
                    if why == Closed::SlowConsumer {
                        let (code, reason) = close_for(why);
                        close(&mut sock, code, reason).await;
                        break;
                    }
                }
                None => break,
            },
            m = next_json(&mut sock) => match m {
                None => break,
                Some(Err(e)) => { let _ = sock.send(err_frame(None, &e)).await; }
                Some(Ok(v)) => {
                    let chat = str_of(&v, "chat").unwrap_or("").to_string();
                    let r = agent_frame(&s, &user, supervisor, conn, &v, &chat, &mut subs, &fwd_tx);
                    match r {
                        Ok(Some(reply)) => { let _ = sock.send(text(reply)).await; }
                        Ok(None) => {}
                        Err(e) => { let _ = sock.send(err_frame(Some(&chat), &e)).await; }
                    }
                }
            }
        }
    }
    for (id, h) in subs {
        s.chats.hub.unsubscribe(&id, conn);
        h.abort();
    }
    s.chats
        .agent_disconnect(&s.snapshot.load(), &user.name, conn, Instant::now());
}

#[allow(clippy::too_many_arguments)]
fn agent_frame(
    s: &AppState,
    user: &control::User,
    supervisor: bool,
    conn: u64,
    v: &Value,
    chat: &str,
    subs: &mut HashMap<String, tokio::task::JoinHandle<()>>,
    fwd: &mpsc::Sender<Fwd>,
) -> Result<Option<Value>, String> {
    let snap = s.snapshot.load();
    let now = Instant::now();
    let c = &s.chats;
    let e = |e: ChatError| e.to_string();
    let mut join = |offset: u64| -> Result<(), String> {
        let sub = c
            .hub
            .subscribe(chat, conn, offset, true)
            .map_err(|e| e.to_string())?;
        if let Some(old) = subs.insert(
            chat.to_string(),
            forward(chat.to_string(), sub, fwd.clone()),
        ) {
            old.abort();
        }
        Ok(())
    };
    let offset = v.get("offset").and_then(Value::as_u64).unwrap_or(0);
    match str_of(v, "type").unwrap_or("") {
        "accept" => {
            c.accept(&snap, &user.name, chat, now).map_err(e)?;
            join(0)?;
            Ok(Some(json!({"type":"accepted","chat":chat})))
        }
        "release" => {
            c.release(&snap, &user.name, chat, now).map_err(e)?;
            if let Some(h) = subs.remove(chat) {
                c.hub.unsubscribe(chat, conn);
                h.abort();
            }
            Ok(Some(json!({"type":"released","chat":chat})))
        }
        "message" => {
            // The chat's agent writes to everyone, or privately (consultation); a
            // consulted agent writes privately only.
            let private = v.get("private").and_then(Value::as_bool).unwrap_or(false);
            let Some(part) = c.part(&user.name, chat) else {
                return Err(if supervisor {
                    "supervisors watch chats read-only".into()
                } else {
                    ChatError::NotYours.to_string()
                });
            };
            let consultant = part == Part::Consultant;
            let text = str_of(v, "text").unwrap_or("");
            let private = private || consultant;
            c.message(
                chat,
                "agent",
                &user.name,
                str_of(v, "client_id"),
                text,
                private,
            )
            .map_err(e)?;
            Ok(None)
        }
        "transfer" => {
            let to = match (str_of(v, "to_agent"), str_of(v, "to_queue")) {
                (Some(a), None) => Target::Agent(a.to_string()),
                (None, Some(q)) => Target::Queue(q.to_string()),
                _ => return Err("transfer needs one of `to_agent` or `to_queue`".into()),
            };
            c.transfer(&snap, &user.name, chat, &to, now).map_err(e)?;
            if let Some(h) = subs.remove(chat) {
                h.abort();
            }
            Ok(Some(json!({"type":"transferred","chat":chat})))
        }
        "consult" => {
            let other = str_of(v, "agent").ok_or("consult needs `agent`")?;
            c.consult(&user.name, chat, other).map_err(e)?;
            Ok(Some(json!({"type":"consulting","chat":chat,"agent":other})))
        }
        "consult_end" => {
            c.consult_end(&user.name, chat, str_of(v, "agent"))
                .map_err(e)?;
            Ok(None)
        }
        "typing" => {
            if !c.is_agent_of(&user.name, chat) {
                return Err(ChatError::NotYours.to_string());
            }
            let on = v.get("on").and_then(Value::as_bool).unwrap_or(true);
            c.typing(chat, conn, "agent", on).map_err(e)?;
            Ok(None)
        }
        "end" => {
            if !c.is_agent_of(&user.name, chat) {
                return Err(ChatError::NotYours.to_string());
            }
            c.end(&snap, chat, "agent", "the agent ended the chat");
            Ok(None)
        }
        // An agent's own chat after a reconnect, a consulted agent joining the side
        // conversation, or a supervisor watching any chat (read-only; the customer
        // and the agent are not told).
        "watch" => {
            let allowed = supervisor || c.part(&user.name, chat).is_some();
            if !allowed {
                return Err(ChatError::NotYours.to_string());
            }
            join(offset)?;
            Ok(Some(json!({"type":"watching","chat":chat})))
        }
        "unwatch" => {
            if let Some(h) = subs.remove(chat) {
                c.hub.unsubscribe(chat, conn);
                h.abort();
            }
            Ok(None)
        }
        other => Err(format!("unknown frame type `{other}`")),
    }
}

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
    page(include_str!("../static/chat.html"))
}

/// `GET /console`: the agent console; supervisors also get the live chat list.
pub async fn page_console() -> Response {
    page(include_str!("../static/console.html"))
}

/// `GET /api/v1/chats`: live and queued chats (supervisors and admins).
pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers, Role::Supervisor) {
        return e;
    }
    Json(json!({"chats": s.chats.list(Instant::now())})).into_response()
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
    if !s.chats.exists(&id) {
        return error(StatusCode::NOT_FOUND, "no such chat");
    }
    s.chats.end(
        &s.snapshot.load(),
        &id,
        "admin",
        "ended by an administrator",
    );
    StatusCode::NO_CONTENT.into_response()
}

/// Offers that time out and customers who do not come back: checked twice a second.
pub fn spawn_sweeper(s: AppState) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_millis(500));
        loop {
            t.tick().await;
            s.chats.sweep(&s.snapshot.load(), Instant::now());
        }
    });
}
