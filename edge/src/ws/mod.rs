//! Web chat over WebSocket: `/ws/chat` for customers ([`customer`]), `/ws/agent` for
//! agents and supervisors ([`agent`]). Frames are `chat::protocol` types; the logic
//! lives in the `chat` crate (driven through [`crate::desk`]); these modules move
//! frames between sockets, hub subscriptions and console channels.
//!
//! Close codes: 1000 chat ended, 4001 authentication failed, 4002 protocol error (bad
//! first frame), 4008 slow consumer (resume from your last offset), 4009 replaced by
//! a newer connection, 4010 (cluster mode) the chat is on another node that could
//! not be reached, named in the reason (a reachable one is relayed to: [`relay`]),
//! 1012 the relayed chat's node went away (resume).

pub mod agent;
pub mod customer;
pub mod relay;
pub mod sip;

/// `/ws/chat` (customers), `/ws/agent` (agents, supervisors) and `/ws/sip` (SIP
/// over WebSocket for browser phones).
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/ws/chat", axum::routing::get(customer::ws_customer))
        .route("/ws/agent", axum::routing::get(agent::ws_agent))
        .route("/ws/sip", axum::routing::get(sip::ws_sip))
}

use crate::api::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use chat::hub::{Closed, Frame, Subscription};
use chat::protocol::FrameError;
use chat::{ClientFrame, ServerFrame};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Largest frame a client may send.
pub const MAX_FRAME: usize = 64 * 1024;
const FIRST_FRAME: Duration = Duration::from_secs(10);
/// A small read buffer: tungstenite's default allocates 128 KiB per connection up
/// front, which was most of an idle connection's memory (measured with
/// `bench/chat.sh`); chat frames are small and the buffer grows when one is not.
const READ_BUFFER: usize = 4096;

static CONN: AtomicU64 = AtomicU64::new(1);

fn next_conn() -> u64 {
    CONN.fetch_add(1, Ordering::Relaxed)
}

fn send_frame(f: &ServerFrame) -> Message {
    Message::Text(f.to_json().into())
}

fn stored(f: &Frame) -> Message {
    Message::Text(Utf8Bytes::from(f.to_string()))
}

/// Why a client's frame was refused: the text goes back in an `error` frame and the
/// connection stays open.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error(transparent)]
    Chat(#[from] chat::service::ChatError),
    #[error(transparent)]
    Room(#[from] chat::hub::HubError),
    #[error("supervisors watch chats read-only")]
    ReadOnly,
    #[error("transfer needs one of `to_agent` or `to_queue`")]
    TransferTarget,
    #[error("consult needs `agent`")]
    ConsultAgent,
    #[error("a customer cannot send `{0}` frames")]
    NotForCustomers(&'static str),
    #[error("an agent cannot send `{0}` frames")]
    NotForAgents(&'static str),
}

fn err_frame(chat: Option<&str>, e: &dyn std::fmt::Display) -> Message {
    send_frame(&ServerFrame::Error {
        chat: chat.map(str::to_string),
        error: e.to_string(),
    })
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

/// The next client frame; `None` when the socket closed. A socket that breaks the
/// protocol is closed with the code RFC 6455 §7.4.1 names for it (1009 a frame over
/// the limit, 1007 text that is not UTF-8, 1002 any other protocol error) rather
/// than dropped without a Close frame.
async fn next_frame(sock: &mut WebSocket) -> Option<Result<ClientFrame, FrameError>> {
    loop {
        match sock.recv().await? {
            Ok(Message::Text(t)) => return Some(ClientFrame::parse(&t)),
            Ok(Message::Binary(_)) => return Some(Err(FrameError::Binary)),
            Ok(Message::Close(_)) => return None,
            Err(e) => {
                if let Some((code, reason)) = close_code_for(e) {
                    tracing::debug!(
                        code,
                        reason,
                        "closing a chat socket that broke the protocol"
                    );
                    close(sock, code, reason).await;
                }
                return None;
            }
            Ok(_) => continue, // ping/pong
        }
    }
}

/// The close code for a read error, if the peer is still there to be told.
fn close_code_for(e: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::{CapacityError, Error};
    let inner = e.into_inner();
    match inner.downcast_ref::<Error>()? {
        Error::Capacity(CapacityError::MessageTooLong { .. }) => {
            Some((1009, "frame too big: the limit is 64 KiB"))
        }
        Error::Capacity(_) => Some((1009, "frame too big")),
        Error::Utf8(_) => Some((1007, "text frame is not UTF-8")),
        Error::Protocol(_) => Some((1002, "WebSocket protocol error")),
        _ => None,
    }
}

/// Frame limit and read buffer for every chat socket.
fn limits(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(READ_BUFFER)
}

/// A subscription's stored frames, preceded by `history_truncated` when the asked
/// offset was older than what the room keeps.
fn initial_frames(id: &str, sub: &mut Subscription) -> Vec<Frame> {
    let mut v = Vec::with_capacity(sub.replay.len() + 1);
    if sub.truncated {
        v.push(
            ServerFrame::HistoryTruncated {
                chat: id.to_string(),
            }
            .to_json()
            .into(),
        );
    }
    v.append(&mut sub.replay);
    v
}

/// Offers that time out and customers who do not come back: checked twice a second.
pub fn spawn_sweeper(s: AppState) {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_millis(500));
        loop {
            t.tick().await;
            let snap = s.snapshot.load();
            s.chats.run(|c, at| c.sweep(&snap, at));
        }
    });
}
