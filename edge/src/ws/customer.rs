//! `/ws/chat`: a customer starts or resumes a chat, then writes and reads the room.

use super::{
    close, close_for, err_frame, initial_frames, limits, next_conn, next_frame, send_frame, stored,
    Refusal, FIRST_FRAME,
};
use crate::api::state::ask;
use crate::api::AppState;
use crate::cluster::chat::Adopted;
use crate::core::CoreMsg;
use crate::desk;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use chat::hub::Subscription;
use chat::service::{ChatError, Resume};
use chat::{Author, ClientFrame, Offset, ServerFrame};
use serde_json::Map;
use std::sync::atomic::Ordering;
use tracing::Instrument;

pub async fn ws_customer(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Already relayed here by another node: never relayed on (no loops).
    let relayed = headers.contains_key(super::relay::RELAY_HEADER);
    limits(ws).on_upgrade(move |sock| customer(sock, s, relayed))
}

/// Start a chat in `queue`; tells the socket. `previous_ended`: a resume found the
/// old chat over and this one replaces it.
async fn start(
    sock: &mut WebSocket,
    s: &AppState,
    queue: Option<&str>,
    fields: Map<String, serde_json::Value>,
    previous_ended: bool,
) -> Option<(String, Offset)> {
    // A node taking no new work (draining, or a cluster node without NATS) takes
    // no new chat either; chats in progress (resume) go on. 1013: try again later,
    // on another node behind the load balancer.
    let refusing = match ask(&s.core, CoreMsg::Stats).await {
        Ok(st) => (st.draining || st.held).then_some(if st.draining { "draining" } else { "held" }),
        Err(_) => Some("the SIP core does not answer"),
    };
    if let Some(why) = refusing {
        s.metrics.chats_refused_busy.fetch_add(1, Ordering::Relaxed);
        tracing::info!(why, "new chat refused: this node takes no new work");
        close(sock, 1013, "this node takes no new chats; try again").await;
        return None;
    }
    let snap = s.snapshot.load_full();
    let keys = desk::keys();
    let r = s
        .chats
        .run(|c, at| c.start(&snap, queue.unwrap_or(""), fields, at, keys));
    match r {
        Ok((chat, token)) => {
            let started = ServerFrame::Started {
                chat: chat.clone(),
                token,
                previous_ended,
            };
            let _ = sock.send(send_frame(&started)).await;
            Some((chat, Offset(0)))
        }
        Err(ChatError::Closed(message)) => {
            // Not a protocol error: the queue keeps hours and is closed. The customer
            // reads the queue's message and the chat is over before it began.
            s.metrics.chats_after_hours.fetch_add(1, Ordering::Relaxed);
            let ended = ServerFrame::Ended {
                chat: None,
                offset: None,
                by: Some("system".into()),
                reason: message,
            };
            let _ = sock.send(send_frame(&ended)).await;
            close(sock, 1000, "closed").await;
            None
        }
        Err(e) => {
            close(sock, 4002, &e.to_string()).await;
            None
        }
    }
}

/// Cluster mode: a token this node does not know may be a chat of a node that
/// died; it is taken over first. `Some(node)`: the chat is on that other live node
/// (the customer is relayed there).
async fn take_over(s: &AppState, token: &str) -> Option<String> {
    let log = s.cluster.as_ref()?.chat.get()?;
    if s.chats.read(|c| c.chat_of_token(token).is_some()) {
        return None;
    }
    match log.adopt_token(&chat::store::token_hash(token)).await {
        Ok(Adopted::Elsewhere(node)) => Some(node),
        Ok(_) => None,
        Err(e) => {
            // Resume goes on; an unknown token gets its usual answer.
            tracing::warn!(error = %e, "chat take-over failed");
            None
        }
    }
}

/// Start or resume: returns the chat and the offset to replay from.
/// `relayed`: another node relayed this customer here (a chat owned elsewhere is
/// not relayed again).
async fn customer_open(
    sock: &mut WebSocket,
    s: &AppState,
    relayed: bool,
) -> Option<(String, Offset)> {
    loop {
        let first = match tokio::time::timeout(FIRST_FRAME, next_frame(sock)).await {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                close(sock, 4002, &e.to_string()).await;
                return None;
            }
            _ => return None,
        };
        match first {
            ClientFrame::Start { queue, fields } => {
                return start(sock, s, queue.as_deref(), fields.unwrap_or_default(), false).await;
            }
            ClientFrame::Resume {
                token,
                offset,
                choice,
                queue,
                fields,
            } => {
                if let Some(node) = take_over(s, &token).await {
                    // The owner assigns the offsets: the customer is relayed there.
                    let first = ClientFrame::Resume {
                        token,
                        offset,
                        choice,
                        queue,
                        fields,
                    };
                    let first = serde_json::to_string(&first).unwrap_or_default();
                    let relay = if relayed {
                        Err("relayed here already".to_string())
                    } else {
                        super::relay::customer(sock, s, &node, first).await
                    };
                    if let Err(e) = relay {
                        if crate::throttle::warn_now(&format!("customers to {node}")) {
                            tracing::warn!(node = %node, error = %e, "cannot relay customers to their chat's node (closed 4010; next warning in a minute)");
                        } else {
                            tracing::debug!(node = %node, error = %e, "cannot relay a customer to its chat's node");
                        }
                        close(sock, 4010, &format!("this chat is on node {node}")).await;
                    }
                    return None;
                }
                let snap = s.snapshot.load_full();
                let r = s.chats.run(|c, at| {
                    c.resume(&snap, &token, queue.as_deref(), fields.as_ref(), choice, at)
                });
                match r {
                    Ok(Resume::Continue(chat)) => {
                        let _ = sock
                            .send(send_frame(&ServerFrame::Resumed { chat: chat.clone() }))
                            .await;
                        return Some((chat, offset));
                    }
                    Ok(Resume::Prompt(chat)) => {
                        // Ask; the client answers with `resume` + `choice`.
                        let _ = sock.send(send_frame(&ServerFrame::Prompt { chat })).await;
                    }
                    Ok(Resume::StartNew) if queue.is_some() => {
                        return start(sock, s, queue.as_deref(), fields.unwrap_or_default(), true)
                            .await;
                    }
                    Ok(Resume::StartNew) => {
                        let ended = ServerFrame::Ended {
                            chat: None,
                            offset: None,
                            by: None,
                            reason: "the chat has ended; start a new one".into(),
                        };
                        let _ = sock.send(send_frame(&ended)).await;
                    }
                    Err(e) => {
                        let _ = sock.send(err_frame(None, &e)).await;
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

async fn customer(mut sock: WebSocket, s: AppState, relayed: bool) {
    let Some((id, offset)) = customer_open(&mut sock, &s, relayed).await else {
        return;
    };
    // Every log line of this chat's customer connection carries the chat id.
    let span = tracing::debug_span!("chat", chat = %id);
    customer_chat(sock, s, id, offset).instrument(span).await
}

async fn customer_chat(mut sock: WebSocket, s: AppState, id: String, offset: Offset) {
    let conn = next_conn();
    let mut sub = match s.chats.run(|c, _| c.customer_attach(&id, conn, offset)) {
        Ok(sub) => sub,
        Err(e) => {
            close(&mut sock, 1000, &e.to_string()).await;
            return;
        }
    };
    if !replay(&mut sock, &id, &mut sub).await {
        s.chats.run(|c, at| c.customer_detach(&id, conn, at.now));
        return;
    }
    // The customer's shown name, looked up once per connection rather than under the
    // service lock for every message.
    let shown = s.chats.read(|c| c.customer_name(&id));
    loop {
        tokio::select! {
            f = sub.inbox.rx.recv() => match f {
                Some(f) => {
                    if sock.send(stored(&f)).await.is_err() {
                        break;
                    }
                }
                None => {
                    let (code, why) = close_for(sub.inbox.reason());
                    close(&mut sock, code, why).await;
                    break;
                }
            },
            m = next_frame(&mut sock) => match m {
                None => break,
                Some(Err(e)) => {
                    let _ = sock.send(err_frame(Some(&id), &e.to_string())).await;
                }
                Some(Ok(f)) => {
                    if let Err(e) = customer_frame(&s, &id, conn, &shown, f) {
                        let _ = sock.send(err_frame(Some(&id), &e)).await;
                    }
                }
            }
        }
    }
    s.chats.run(|c, at| c.customer_detach(&id, conn, at.now));
}

fn customer_frame(
    s: &AppState,
    id: &str,
    conn: u64,
    shown: &str,
    f: ClientFrame,
) -> Result<(), Refusal> {
    match f {
        ClientFrame::Message {
            client_id, text, ..
        } => {
            // Shown as the start form said: a frame cannot rename its author.
            let name = shown;
            s.chats
                .rooms
                .message(
                    id,
                    Author::Customer,
                    name,
                    client_id.as_deref(),
                    &text,
                    false,
                    desk::unix_ms(),
                )
                .map(|_| ())
                .map_err(Refusal::from)
        }
        ClientFrame::Typing { on, .. } => s
            .chats
            .rooms
            .typing(id, conn, Author::Customer, on)
            .map_err(Refusal::from),
        ClientFrame::End { .. } => {
            let snap = s.snapshot.load();
            s.chats
                .run(|c, at| c.end(&snap, id, "customer", "the customer ended the chat", at));
            Ok(())
        }
        other => Err(Refusal::NotForCustomers(other.kind())),
    }
}

/// Send a subscription's stored frames to the socket.
async fn replay(sock: &mut WebSocket, id: &str, sub: &mut Subscription) -> bool {
    for f in initial_frames(id, sub) {
        if sock.send(stored(&f)).await.is_err() {
            return false;
        }
    }
    true
}
