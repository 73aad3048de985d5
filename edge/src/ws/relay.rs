//! Cluster mode: chat clients on a node that does not own their chat. A room lives
//! on one node (its owner assigns the offsets, so everyone sees one order); a
//! client that reached another node is relayed to the owner over a WebSocket
//! between the nodes, to the owner's `advertise_https` over `wss:` when it serves
//! HTTPS (its certificate checked against `[tls] ca`; never falling back to its
//! plain HTTP), else to its `advertise_http` (plain HTTP: keep the nodes on a
//! private network):
//!
//! - a **customer** resuming a chat owned by another live node: its socket is
//!   piped to the owner's `/ws/chat` (the resume frame first), frames and close
//!   codes both ways;
//! - a **console** (`/ws/agent`, agents and supervisors): besides its own node,
//!   the console is signed in at every other live node by a *link* (the user's
//!   token as bearer), so an agent takes chats from every node's queues and a
//!   supervisor watches any chat. The links' frames reach the console (not their
//!   `hello` nor `agent_state`, which its own node sends); a frame the console
//!   sends about a chat goes to the node that owns the chat. An agent's chats
//!   on the other nodes count against its `max_chats` on each node (the
//!   `elsewhere` frame), and an `accept` beyond it is refused here.
//!
//! A relayed connection carries the header `x-edge-relay: NODE` and is never
//! relayed again (no loops). The token goes only into the link's Authorization
//! header, never into a log line.

use super::close;
use crate::api::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{self, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as Up;
use tokio_tungstenite::WebSocketStream;

/// The header naming the node a relayed connection comes from.
pub const RELAY_HEADER: &str = "x-edge-relay";
/// Connecting to another node (TCP and the WebSocket handshake), each.
const CONNECT: Duration = Duration::from_secs(3);
/// Most console frames held for a link being opened.
const PENDING: usize = 64;

/// A connection to another node: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}
type UpSocket = WebSocketStream<Box<dyn Io>>;

/// Relays counted for `edge_cluster_chat_relays_*`.
pub static CUSTOMERS: AtomicU64 = AtomicU64::new(0);
pub static LINKS: AtomicU64 = AtomicU64::new(0);
pub static LINK_FAILURES: AtomicU64 = AtomicU64::new(0);
pub static ROUTED: AtomicU64 = AtomicU64::new(0);
/// Relays (of either kind) opened over TLS.
pub static OVER_TLS: AtomicU64 = AtomicU64::new(0);

pub fn render_metrics(out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP edge_cluster_chat_relays_total Chat connections relayed to the node owning the chat (customer: a resumed chat; link: a console signed in at another node).\n\
         # TYPE edge_cluster_chat_relays_total counter\n\
         edge_cluster_chat_relays_total{{kind=\"customer\"}} {}\n\
         edge_cluster_chat_relays_total{{kind=\"link\"}} {}\n\
         # HELP edge_cluster_chat_link_failures_total Console links to another node that could not be opened.\n\
         # TYPE edge_cluster_chat_link_failures_total counter\n\
         edge_cluster_chat_link_failures_total {}\n\
         # HELP edge_cluster_chat_routed_frames_total Console frames sent to the node owning their chat.\n\
         # TYPE edge_cluster_chat_routed_frames_total counter\n\
         edge_cluster_chat_routed_frames_total {}\n\
         # HELP edge_cluster_chat_relays_tls_total Relays to another node opened over TLS (wss:, to a node serving HTTPS).\n\
         # TYPE edge_cluster_chat_relays_tls_total counter\n\
         edge_cluster_chat_relays_tls_total {}",
        CUSTOMERS.load(Ordering::Relaxed),
        LINKS.load(Ordering::Relaxed),
        LINK_FAILURES.load(Ordering::Relaxed),
        ROUTED.load(Ordering::Relaxed),
        OVER_TLS.load(Ordering::Relaxed),
    );
}

/// Open a WebSocket to `path` on live node `node`.
async fn dial(
    s: &AppState,
    node: &str,
    path: &str,
    bearer: Option<&str>,
) -> Result<UpSocket, String> {
    let cl = s.cluster.as_ref().ok_or("not in cluster mode")?;
    let info = cl
        .live()
        .into_iter()
        .find(|n| n.node == node)
        .ok_or_else(|| format!("node {node} is not live"))?;
    // A node serving HTTPS is reached there only: the connection carries tokens.
    let (scheme, addr, tls) = match info.https {
        Some(a) => {
            let tls = cl.relay_tls.clone().ok_or_else(|| {
                format!(
                    "node {node} serves relays over HTTPS only and this node cannot check \
                     its certificate (no [tls], or no trusted roots)"
                )
            })?;
            ("wss", a, Some(tls))
        }
        None => ("ws", info.http, None),
    };
    let mut req = format!("{scheme}://{addr}{path}")
        .into_client_request()
        .map_err(|e| format!("node {node}'s address {addr}: {e}"))?;
    let h = req.headers_mut();
    h.insert(
        RELAY_HEADER,
        cl.node.parse().map_err(|_| "bad node name".to_string())?,
    );
    if let Some(b) = bearer {
        // Never logged: a bad token gives a parse error without its text.
        let v = format!("Bearer {b}")
            .parse()
            .map_err(|_| "a token that is no valid header value".to_string())?;
        h.insert(axum::http::header::AUTHORIZATION, v);
    }
    let tcp = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connecting to node {node} at {addr} timed out"))?
        .map_err(|e| format!("connecting to node {node} at {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let over_tls = tls.is_some();
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(tls) => {
            // The certificate must name the address the node advertises.
            let ip = addr
                .parse::<std::net::SocketAddr>()
                .map_err(|e| format!("node {node}'s HTTPS address {addr}: {e}"))?
                .ip();
            let name = rustls::pki_types::ServerName::IpAddress(ip.into());
            let s = tokio::time::timeout(CONNECT, tls.connect(name, tcp))
                .await
                .map_err(|_| format!("the TLS handshake with node {node} at {addr} timed out"))?
                .map_err(|e| format!("the TLS handshake with node {node} at {addr}: {e}"))?;
            Box::new(s)
        }
    };
    let mut cfg = WebSocketConfig::default();
    cfg.max_message_size = Some(4 * super::MAX_FRAME);
    cfg.max_frame_size = Some(4 * super::MAX_FRAME);
    let (ws, _) = tokio::time::timeout(
        CONNECT,
        tokio_tungstenite::client_async_with_config(req, io, Some(cfg)),
    )
    .await
    .map_err(|_| format!("the WebSocket handshake with node {node} timed out"))?
    .map_err(|e| format!("the WebSocket handshake with node {node}: {e}"))?;
    if over_tls {
        OVER_TLS.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ws)
}

fn close_of(f: Option<protocol::CloseFrame>) -> (u16, String) {
    match f {
        Some(f) => (u16::from(f.code), f.reason.to_string()),
        None => (1000, String::new()),
    }
}

/// Relay a customer whose chat node `node` owns: `first` (its resume frame) goes
/// there, then every frame both ways until either side closes. `Err`: the owner
/// could not be reached (nothing was relayed; the caller says where the chat is).
pub async fn customer(
    sock: &mut WebSocket,
    s: &AppState,
    node: &str,
    first: String,
) -> Result<(), String> {
    let mut up = dial(s, node, "/ws/chat", None).await?;
    up.send(Up::Text(first.into()))
        .await
        .map_err(|e| format!("node {node}: {e}"))?;
    CUSTOMERS.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(node, "customer relayed to the chat's node");
    loop {
        tokio::select! {
            m = sock.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    if up.send(Up::Text(t.as_str().into())).await.is_err() { break; }
                }
                Some(Ok(Message::Binary(b))) => {
                    // The owner answers it (a protocol error) as it would directly.
                    if up.send(Up::Binary(b)).await.is_err() { break; }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = up.close(None).await;
                    return Ok(());
                }
                Some(Ok(_)) => {}
            },
            m = up.next() => match m {
                Some(Ok(Up::Text(t))) => {
                    if sock.send(Message::Text(t.as_str().into())).await.is_err() {
                        let _ = up.close(None).await;
                        return Ok(());
                    }
                }
                Some(Ok(Up::Close(f))) => {
                    let (code, reason) = close_of(f);
                    let _ = sock
                        .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                        .await;
                    return Ok(());
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    // The owner went away: the customer resumes (anywhere) from its last offset.
    close(
        sock,
        1012,
        "the chat's node went away: resume from your last offset",
    )
    .await;
    Ok(())
}

/// What a console's link reports.
pub enum Down {
    /// The link to the node is up: frames for it go here.
    Opened(mpsc::Sender<String>),
    /// A frame from the node.
    Text(String),
    /// The link closed (the node's close code, if it sent one) or never opened.
    Closed(Option<u16>),
}

/// A console's links to the other live nodes.
pub struct Links {
    token: String,
    /// The agent takes chats: its chats elsewhere are counted and told.
    counts: bool,
    up: HashMap<String, mpsc::Sender<String>>,
    dialing: HashSet<String>,
    /// Frames for a node whose link is being opened.
    pending: HashMap<String, Vec<String>>,
    down_tx: mpsc::Sender<(String, Down)>,
    pub down: mpsc::Receiver<(String, Down)>,
    /// Chat → the node whose link spoke of it.
    owner: HashMap<String, String>,
    /// The agent's active chats on other nodes (chat → node).
    active: HashMap<String, String>,
    /// The `elsewhere` count last told to each node ("" is this node).
    told: HashMap<String, u32>,
    /// Bumped when `active` or the links change; with the local count, what
    /// every node was last told for (nothing to work out while it stands).
    changes: u64,
    told_for: Option<(u32, u64)>,
}

/// What [`Links::on_down`] reads of a link's frame: its type and chat (and a
/// `hello`'s chats), not the whole frame.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    chat: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    chats: Vec<std::borrow::Cow<'a, str>>,
}

impl Links {
    pub fn new(user: &control::User, counts: bool) -> Links {
        let (down_tx, down) = mpsc::channel(1024);
        Links {
            token: user.token.clone(),
            counts,
            up: HashMap::new(),
            dialing: HashSet::new(),
            pending: HashMap::new(),
            down_tx,
            down,
            owner: HashMap::new(),
            active: HashMap::new(),
            told: HashMap::new(),
            changes: 0,
            told_for: None,
        }
    }

    /// Whether the agent's chats elsewhere are counted and told (it takes chats).
    pub fn counts(&self) -> bool {
        self.counts
    }

    /// Link to every live node not linked yet (called at start and periodically).
    pub fn refresh(&mut self, s: &AppState) {
        let Some(cl) = s.cluster.as_ref() else { return };
        for n in cl.live() {
            // A draining node too: the agent's chats there go on.
            if n.node == cl.node
                || self.up.contains_key(&n.node)
                || !self.dialing.insert(n.node.clone())
            {
                continue;
            }
            tokio::spawn(link(
                s.clone(),
                n.node,
                self.token.clone(),
                self.down_tx.clone(),
            ));
        }
    }

    /// A report from a link: `Some(text)` to pass on to the console.
    pub fn on_down(&mut self, node: &str, d: Down) -> Option<String> {
        match d {
            Down::Opened(tx) => {
                self.dialing.remove(node);
                for t in self.pending.remove(node).unwrap_or_default() {
                    if tx.try_send(t).is_ok() {
                        ROUTED.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.up.insert(node.to_string(), tx);
                self.told.remove(node);
                self.changes += 1;
                None
            }
            Down::Closed(_) => {
                self.dialing.remove(node);
                self.pending.remove(node);
                self.up.remove(node);
                self.told.remove(node);
                self.owner.retain(|_, n| n != node);
                self.active.retain(|_, n| n != node);
                self.changes += 1;
                None
            }
            Down::Text(t) => {
                let h: Head = serde_json::from_str(&t).ok()?;
                match (h.kind.as_ref(), h.chat) {
                    ("hello", _) => {
                        // The agent's chats there (after a console reconnect).
                        for c in h.chats {
                            self.owner.insert(c.to_string(), node.to_string());
                            self.active.insert(c.into_owned(), node.to_string());
                        }
                        self.changes += 1;
                        return None;
                    }
                    // Its own node tells the console of the agent's state.
                    ("agent_state", _) => return None,
                    // Room frames pass by the thousand: the map is written only
                    // when a chat is new to it.
                    (kind, Some(chat)) => {
                        if !self.owner.contains_key(chat.as_ref()) {
                            self.owner.insert(chat.to_string(), node.to_string());
                        }
                        match kind {
                            "accepted" => {
                                self.active.insert(chat.into_owned(), node.to_string());
                                self.changes += 1;
                            }
                            "released" | "transferred" | "chat_ended" => {
                                self.active.remove(chat.as_ref());
                                self.changes += 1;
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
                Some(t)
            }
        }
    }

    /// The node a frame about `chat` goes to, if another node owns it (`Err`: the
    /// shared record could not be read now).
    pub async fn owner_of(&mut self, s: &AppState, chat: &str) -> Result<Option<String>, String> {
        if chat.is_empty() || s.chats.read(|c| c.exists(chat)) {
            return Ok(None);
        }
        if let Some(n) = self.owner.get(chat) {
            return Ok(Some(n.clone()));
        }
        let Some(log) = s.cluster.as_ref().and_then(|c| c.chat.get()) else {
            return Ok(None);
        };
        // A chat of a node that is gone is taken over here (then it is local).
        let node = match log.adopt(chat).await? {
            crate::cluster::chat::Adopted::Elsewhere(n) => n,
            crate::cluster::chat::Adopted::Here => return Ok(None),
            // No record yet: a chat started an instant ago (its record is on
            // its way to the bucket). The node that has it says so.
            crate::cluster::chat::Adopted::Nothing => {
                let ask = serde_json::json!({ "op": "has_chat", "chat": chat });
                match crate::api::cluster::find(s, ask).await {
                    Some(found) => match found["node"].as_str() {
                        Some(n) => n.to_string(),
                        None => return Ok(None),
                    },
                    None => return Ok(None),
                }
            }
        };
        self.owner.insert(chat.to_string(), node.clone());
        Ok(Some(node))
    }

    /// Send a console frame to `node`'s link (held until a link being opened is
    /// up); `false` when there is no link to it.
    pub fn send(&mut self, s: &AppState, node: &str, text: String) -> bool {
        if let Some(tx) = self.up.get(node) {
            if tx.try_send(text).is_err() {
                return false;
            }
            ROUTED.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if !self.dialing.contains(node) {
            self.refresh(s);
        }
        if !self.dialing.contains(node) {
            return false;
        }
        let held = self.pending.entry(node.to_string()).or_default();
        if held.len() >= PENDING {
            return false;
        }
        held.push(text);
        true
    }

    /// The agent's active chats on other nodes.
    pub fn remote_active(&self) -> u32 {
        self.active.len() as u32
    }

    /// Tell every node (this one through `here`) how many chats the agent has on
    /// the others, when that changed. `local`: its active chats on this node.
    pub fn tell_counts(&mut self, local: u32, mut here: impl FnMut(u32)) {
        if !self.counts || self.told_for == Some((local, self.changes)) {
            return;
        }
        let mut all_told = true;
        let mut per: HashMap<&str, u32> = HashMap::new();
        for n in self.active.values() {
            *per.entry(n.as_str()).or_default() += 1;
        }
        let total = local + self.active.len() as u32;
        if self.told.get("") != Some(&(total - local)) {
            self.told.insert(String::new(), total - local);
            here(total - local);
        }
        let nodes: Vec<String> = self.up.keys().cloned().collect();
        for node in nodes {
            let n = total - per.get(node.as_str()).copied().unwrap_or(0);
            if self.told.get(&node) == Some(&n) {
                continue;
            }
            let frame = serde_json::json!({"type": "elsewhere", "chats": n}).to_string();
            if self
                .up
                .get(&node)
                .is_some_and(|tx| tx.try_send(frame).is_ok())
            {
                self.told.insert(node, n);
            } else {
                all_told = false;
            }
        }
        if all_told {
            self.told_for = Some((local, self.changes));
        }
    }
}

/// One link: the console signed in at `node` as its user, frames both ways.
async fn link(s: AppState, node: String, token: String, down: mpsc::Sender<(String, Down)>) {
    let mut ws = match dial(&s, &node, "/ws/agent", Some(&token)).await {
        Ok(ws) => ws,
        Err(e) => {
            LINK_FAILURES.fetch_add(1, Ordering::Relaxed);
            // Every console tries every node: one warning per node a minute,
            // not one per console and retry.
            if crate::throttle::warn_now(&format!("links to {node}")) {
                tracing::warn!(node = %node, error = %e, "cannot link consoles to another node (counted in edge_cluster_chat_link_failures_total; next warning in a minute)");
            } else {
                tracing::debug!(node = %node, error = %e, "cannot link a console to another node");
            }
            let _ = down.send((node, Down::Closed(None))).await;
            return;
        }
    };
    drop(token);
    LINKS.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<String>(256);
    if down.send((node.clone(), Down::Opened(tx))).await.is_err() {
        let _ = ws.close(None).await;
        return;
    }
    let code = loop {
        tokio::select! {
            t = rx.recv() => match t {
                Some(t) => {
                    if ws.send(Up::Text(t.into())).await.is_err() { break None; }
                }
                None => {
                    let _ = ws
                        .close(Some(protocol::CloseFrame {
                            code: CloseCode::Normal,
                            reason: "console closed".into(),
                        }))
                        .await;
                    return;
                }
            },
            m = ws.next() => match m {
                Some(Ok(Up::Text(t))) => {
                    if down.send((node.clone(), Down::Text(t.to_string()))).await.is_err() {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
                Some(Ok(Up::Close(f))) => break Some(close_of(f).0),
                None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
        }
    };
    tracing::debug!(node = %node, code = ?code, "console link closed");
    let _ = down.send((node, Down::Closed(code))).await;
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
