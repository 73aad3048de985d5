//! `/ws/agent`: an agent's console (offers, accept, release, messages, transfer,
//! consult) or a supervisor watching chats read-only.

use super::relay::{Down, Links};
use super::{
    close, close_for, err_frame, initial_frames, limits, next_conn, next_frame, send_frame, stored,
    Refusal, FIRST_FRAME,
};
use crate::api::AppState;
use crate::desk::{self, ConsoleMsg};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chat::hub::{Closed, Frame, Subscription};
use chat::service::{ChatError, Part, Target};
use chat::{Author, ClientFrame, Offset, ServerFrame};
use control::Role;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tracing::Instrument;

pub async fn ws_agent(
    State(s): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A bearer header (non-browser clients) or, from a browser, a first `auth` frame.
    let user = crate::api::authorize_user(&s, &headers, Role::Agent).ok();
    // A link from another node's console (see `relay`): it opens no links itself.
    let relayed = headers.contains_key(super::relay::RELAY_HEADER);
    limits(ws).on_upgrade(move |sock| {
        agent(sock, s, user, relayed).instrument(tracing::debug_span!(
            "console",
            user = tracing::field::Empty
        ))
    })
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

/// The user of a socket without a bearer header: its first frame must be `auth`.
async fn authenticate(sock: &mut WebSocket, s: &AppState) -> Option<control::User> {
    let first = tokio::time::timeout(FIRST_FRAME, next_frame(sock)).await;
    let token = match first {
        Ok(Some(Ok(ClientFrame::Auth { token }))) => Some(token),
        _ => None,
    };
    let snap = s.snapshot.load();
    token
        .and_then(|t| snap.user_by_token(&t))
        .filter(|u| u.has_role(Role::Agent))
        .cloned()
}

/// The connection's open room subscriptions (chat → forwarder task).
struct Rooms<'a> {
    conn: u64,
    s: &'a AppState,
    subs: HashMap<String, tokio::task::JoinHandle<()>>,
    fwd: mpsc::Sender<Fwd>,
}

impl Rooms<'_> {
    fn join(&mut self, chat: &str, offset: Offset) -> Result<(), Refusal> {
        let sub = self
            .s
            .chats
            .rooms
            .hub
            .subscribe(chat, self.conn, offset, true)?;
        let task = forward(chat.to_string(), sub, self.fwd.clone());
        if let Some(old) = self.subs.insert(chat.to_string(), task) {
            old.abort();
        }
        Ok(())
    }

    /// Stop the room's frames; `unsubscribe` also takes the hub's subscriber out.
    fn leave(&mut self, chat: &str, unsubscribe: bool) {
        if let Some(h) = self.subs.remove(chat) {
            if unsubscribe {
                self.s.chats.rooms.hub.unsubscribe(chat, self.conn);
            }
            h.abort();
        }
    }

    fn leave_all(&mut self) {
        for (id, h) in self.subs.drain() {
            self.s.chats.rooms.hub.unsubscribe(&id, self.conn);
            h.abort();
        }
    }
}

async fn agent(mut sock: WebSocket, s: AppState, user: Option<control::User>, relayed: bool) {
    let user = match user {
        Some(u) => u,
        None => match authenticate(&mut sock, &s).await {
            Some(u) => u,
            None => {
                close(&mut sock, 4001, "authentication failed").await;
                return;
            }
        },
    };
    tracing::Span::current().record("user", user.name.as_str());
    let conn = next_conn();
    let supervisor = user.has_role(Role::Supervisor);
    let (fwd_tx, mut fwd_rx) = mpsc::channel::<Fwd>(1024);
    let snap = s.snapshot.load_full();
    // A user who takes chats (an agent of a chat queue) has one console: a newer
    // one replaces it (4009). Others (supervisors watching) may open any number.
    let takes_chats = snap
        .config
        .queues
        .iter()
        .any(|q| q.channel == control::Channel::Chat && q.agents.contains(&user.name));
    let mut ctl_rx = s.chats.open_console(conn);
    let mine = if takes_chats {
        s.chats
            .run(|c, at| c.agent_connect(&snap, &user.name, conn, user.max_chats, at.now))
    } else {
        // No chats, but its calls and its agent's state reach it all the same.
        s.chats.run(|c, _| c.listen(&user.name, conn));
        Vec::new()
    };
    let hello = ServerFrame::Hello {
        user: user.name.clone(),
        role: user.role,
        max_chats: user.max_chats,
        chats: mine,
        queues: snap
            .config
            .queues
            .iter()
            .filter(|q| q.channel == control::Channel::Chat)
            .map(|q| q.name.clone())
            .collect(),
        canned: snap.config.chat.canned_responses.clone(),
    };
    drop(snap);
    let mut rooms = Rooms {
        conn,
        s: &s,
        subs: HashMap::new(),
        fwd: fwd_tx,
    };
    // Cluster mode: signed in at every other node too, for their chats.
    let mut links = (s.cluster.is_some() && !relayed).then(|| {
        let mut l = Links::new(&user, takes_chats);
        l.refresh(&s);
        l
    });
    if sock.send(send_frame(&hello)).await.is_ok() {
        serve(
            &mut sock,
            &mut rooms,
            &user,
            supervisor,
            &mut ctl_rx,
            &mut fwd_rx,
            &mut links,
        )
        .await;
    }
    drop(links);
    rooms.leave_all();
    s.chats.close_console(conn);
    let snap = s.snapshot.load();
    s.chats.run(|c, at| {
        c.agent_disconnect(&snap, &user.name, conn, at);
        c.unlisten(&user.name, conn);
    });
}

async fn serve(
    sock: &mut WebSocket,
    rooms: &mut Rooms<'_>,
    user: &control::User,
    supervisor: bool,
    ctl_rx: &mut mpsc::Receiver<ConsoleMsg>,
    fwd_rx: &mut mpsc::Receiver<Fwd>,
    links: &mut Option<Links>,
) {
    // New nodes are linked as they join.
    let mut relink = tokio::time::interval(std::time::Duration::from_secs(2));
    relink.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(l) = links.as_mut() {
            tell_counts(rooms, l, user);
        }
        tokio::select! {
            _ = relink.tick(), if links.is_some() => {
                if let Some(l) = links.as_mut() { l.refresh(rooms.s); }
            }
            d = down(links) => {
                let (Some((node, d)), Some(l)) = (d, links.as_mut()) else { continue };
                let replaced = matches!(d, Down::Closed(Some(4009)));
                let passed = l.on_down(&node, d);
                // Every node knows where the agent's chats are before the console
                // hears of a change.
                tell_counts(rooms, l, user);
                if let Some(t) = passed {
                    if sock.send(Message::Text(t.into())).await.is_err() { break; }
                }
                if replaced {
                    // The agent's console was opened again elsewhere.
                    let (code, reason) = close_for(Closed::Removed);
                    close(sock, code, reason).await;
                    break;
                }
            }
            m = ctl_rx.recv() => match m {
                Some(ConsoleMsg::Frame(f)) => {
                    if sock.send(stored(&f)).await.is_err() { break; }
                }
                Some(ConsoleMsg::Join(chat)) => {
                    // Shown as if accepted here; the room replays from its start.
                    let reply = match rooms.join(&chat, Offset(0)) {
                        Ok(()) => send_frame(&ServerFrame::Accepted { chat }),
                        Err(e) => err_frame(Some(&chat), &e),
                    };
                    if sock.send(reply).await.is_err() { break; }
                }
                Some(ConsoleMsg::Replaced) | None => {
                    let (code, reason) = close_for(Closed::Removed);
                    close(sock, code, reason).await;
                    break;
                }
            },
            f = fwd_rx.recv() => match f {
                Some(Fwd::Frame(f)) => {
                    if sock.send(stored(&f)).await.is_err() { break; }
                }
                Some(Fwd::Closed(id, why)) => {
                    rooms.subs.remove(&id);
                    if why == Closed::SlowConsumer {
                        let (code, reason) = close_for(why);
                        close(sock, code, reason).await;
                        break;
                    }
                }
                None => break,
            },
            m = next_frame(sock) => match m {
                None => break,
                Some(Err(e)) => { let _ = sock.send(err_frame(None, &e)).await; }
                Some(Ok(f)) => {
                    let chat = f.chat().unwrap_or("").to_string();
                    if let Some(l) = links.as_mut() {
                        if let Some(reply) = route(rooms.s, l, user, &f, &chat).await {
                            if let Some(reply) = reply {
                                let _ = sock.send(reply).await;
                            }
                            continue;
                        }
                    }
                    let handled = {
                        let _span = tracing::debug_span!("chat", chat = %chat).entered();
                        agent_frame(rooms, user, supervisor, f)
                    };
                    match handled {
                        Ok(Some(reply)) => { let _ = sock.send(send_frame(&reply)).await; }
                        Ok(None) => {}
                        Err(e) => { let _ = sock.send(err_frame(Some(&chat), &e)).await; }
                    }
                }
            }
        }
    }
}

/// Tell this node and the linked ones the agent's chats on the other nodes.
fn tell_counts(rooms: &Rooms<'_>, links: &mut Links, user: &control::User) {
    if !links.counts() {
        return;
    }
    let (s, conn) = (rooms.s, rooms.conn);
    let local = s.chats.read(|c| c.console_chats(&user.name)) as u32;
    links.tell_counts(local, |n| {
        let snap = s.snapshot.load();
        s.chats
            .run(|c, at| c.agent_elsewhere(&snap, &user.name, conn, n, at.now));
    });
}

/// The next report of the console's links (never, without links).
async fn down(links: &mut Option<Links>) -> Option<(String, Down)> {
    match links {
        Some(l) => l.down.recv().await,
        None => std::future::pending().await,
    }
}

/// Cluster mode: a console frame about a chat another node owns goes there.
/// `None`: handled here. `Some(reply)`: routed (or refused, with the reply).
async fn route(
    s: &AppState,
    links: &mut Links,
    user: &control::User,
    f: &ClientFrame,
    chat: &str,
) -> Option<Option<Message>> {
    if let ClientFrame::Accept { .. } = f {
        // max_chats counts the agent's chats on every node.
        let local = s.chats.read(|c| c.console_chats(&user.name)) as u32;
        let remote = links.remote_active();
        if remote > 0 && local + remote >= user.max_chats {
            let e = format!(
                "you have {} chats, {remote} of them on other nodes (max_chats {})",
                local + remote,
                user.max_chats
            );
            return Some(Some(err_frame(Some(chat), &e)));
        }
    }
    let node = match links.owner_of(s, chat).await {
        Ok(node) => node?,
        Err(e) => {
            let e = format!("cannot find the chat's node now ({e}): try again");
            return Some(Some(err_frame(Some(chat), &e)));
        }
    };
    let text = serde_json::to_string(f).unwrap_or_default();
    if links.send(s, &node, text) {
        return Some(None);
    }
    let e = format!("the chat is on node {node}, which cannot be reached now");
    Some(Some(err_frame(Some(chat), &e)))
}

fn agent_frame(
    rooms: &mut Rooms<'_>,
    user: &control::User,
    supervisor: bool,
    f: ClientFrame,
) -> Result<Option<ServerFrame>, Refusal> {
    let s = rooms.s;
    let snap = s.snapshot.load();
    let me = user.name.as_str();
    match f {
        ClientFrame::Accept { chat } => {
            s.chats.run(|c, at| c.accept(&snap, me, &chat, at))?;
            rooms.join(&chat, Offset(0))?;
            Ok(Some(ServerFrame::Accepted { chat }))
        }
        ClientFrame::Release { chat } => {
            s.chats.run(|c, at| c.release(&snap, me, &chat, at))?;
            rooms.leave(&chat, true);
            Ok(Some(ServerFrame::Released { chat }))
        }
        ClientFrame::Message {
            chat,
            client_id,
            text,
            private,
            ..
        } => {
            // The chat's agent writes to everyone, or privately (consultation); a
            // consulted agent writes privately only.
            let Some(part) = s.chats.read(|c| c.part(me, &chat)) else {
                return Err(if supervisor {
                    Refusal::ReadOnly
                } else {
                    ChatError::NotYours.into()
                });
            };
            let private = private || part == Part::Consultant;
            s.chats.rooms.message(
                &chat,
                Author::Agent,
                me,
                client_id.as_deref(),
                &text,
                private,
                desk::unix_ms(),
            )?;
            Ok(None)
        }
        ClientFrame::Transfer {
            chat,
            to_agent,
            to_queue,
        } => {
            let to = match (to_agent, to_queue) {
                (Some(a), None) => Target::Agent(a),
                (None, Some(q)) => Target::Queue(q),
                _ => return Err(Refusal::TransferTarget),
            };
            s.chats.run(|c, at| c.transfer(&snap, me, &chat, &to, at))?;
            rooms.leave(&chat, false);
            Ok(Some(ServerFrame::Transferred { chat }))
        }
        ClientFrame::Consult { chat, agent } => {
            let other = agent.ok_or(Refusal::ConsultAgent)?;
            s.chats.run(|c, at| c.consult(me, &chat, &other, at))?;
            Ok(Some(ServerFrame::Consulting { chat, agent: other }))
        }
        ClientFrame::ConsultEnd { chat, agent } => {
            s.chats
                .run(|c, at| c.consult_end(me, &chat, agent.as_deref(), at))?;
            Ok(None)
        }
        ClientFrame::Typing { chat, on } => {
            if !s.chats.read(|c| c.is_agent_of(me, &chat)) {
                return Err(ChatError::NotYours.into());
            }
            s.chats.rooms.typing(&chat, rooms.conn, Author::Agent, on)?;
            Ok(None)
        }
        ClientFrame::End { chat } => {
            if !s.chats.read(|c| c.is_agent_of(me, &chat)) {
                return Err(ChatError::NotYours.into());
            }
            s.chats
                .run(|c, at| c.end(&snap, &chat, "agent", "the agent ended the chat", at));
            Ok(None)
        }
        // An agent's own chat after a reconnect, a consulted agent joining the side
        // conversation, or a supervisor watching any chat (read-only; the customer
        // and the agent are not told).
        ClientFrame::Watch { chat, offset } => {
            let allowed = supervisor || s.chats.read(|c| c.part(me, &chat).is_some());
            if !allowed {
                return Err(ChatError::NotYours.into());
            }
            rooms.join(&chat, offset)?;
            Ok(Some(ServerFrame::Watching { chat }))
        }
        ClientFrame::Unwatch { chat } => {
            rooms.leave(&chat, true);
            Ok(None)
        }
        // From another node's link: the agent's chats on the other nodes.
        ClientFrame::Elsewhere { chats } => {
            s.chats
                .run(|c, at| c.agent_elsewhere(&snap, me, rooms.conn, chats, at.now));
            Ok(None)
        }
        other => Err(Refusal::NotForAgents(other.kind())),
    }
}
