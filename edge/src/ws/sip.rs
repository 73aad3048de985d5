//! `/ws/sip`: SIP over WebSocket (RFC 7118) on the HTTP listener. Each socket is
//! a SIP flow like a TCP connection (transport `WS`): one SIP message per
//! WebSocket message (text or binary), no Content-Length framing needed; what the
//! core sends to the flow goes back as text messages. REGISTER is challenged with
//! digest like any phone; requests to a binding made over a socket go down that
//! socket, and fail at once (a transport error) when it has closed.
//!
//! The handshake must ask for the `sip` subprotocol (RFC 7118 §4.1): without it
//! the upgrade is refused with 400 and counted.
//!
//! A browser whose page already holds an API token (our console) may open the
//! socket as `/ws/sip?token=TOKEN` instead of keeping a SIP password: its REGISTER
//! for that user (a supervisor) or for the agent linked to the user (`[[agents]]
//! user`) is then accepted without a digest challenge. A wrong token is refused
//! (401) before the upgrade. The token is never logged.

use crate::api::{error, AppState, Peer};
use crate::core::CoreMsg;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use control::Transport;
use sip::Flow;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info};

/// Messages queued towards one socket before the core's sends to it fail
/// (a browser that does not read).
const QUEUE: usize = 1024;
/// A socket with no SIP message and no WebSocket ping for this long is closed
/// (JsSIP and SIP.js keep their sockets alive with OPTIONS or CRLF; browsers
/// answer pings).
const IDLE: Duration = Duration::from_secs(300);

/// Did the client offer the `sip` subprotocol (a comma-separated list, maybe in
/// several headers)?
fn offers_sip(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"))
}

/// `?token=`: the user's API token (see the module documentation).
#[derive(serde::Deserialize)]
pub struct SipWsQuery {
    token: Option<String>,
}

pub async fn ws_sip(
    State(s): State<AppState>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<SipWsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let user = match q.token {
        None => None,
        Some(t) => match s.snapshot.load().user_by_token(&t) {
            Some(u) => Some(u.name.clone()),
            None => {
                debug!(remote = %peer.remote, "SIP WebSocket with an invalid token: refused");
                return error(StatusCode::UNAUTHORIZED, "invalid token");
            }
        },
    };
    if !offers_sip(&headers) {
        s.metrics.sip_ws_refused.fetch_add(1, Relaxed);
        debug!(remote = %peer.remote, "SIP WebSocket without the `sip` subprotocol: refused");
        return error(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol `sip` is required (RFC 7118)",
        );
    }
    super::limits(ws)
        .protocols(["sip"])
        .on_upgrade(move |sock| run(sock, s, peer, user))
}

/// One SIP WebSocket: frames in → the core's inbox; the core's sends → frames out.
async fn run(mut sock: WebSocket, s: AppState, peer: Peer, user: Option<String>) {
    // Over HTTPS the socket is `wss:` (Via SIP/2.0/WSS, `transport=wss`).
    let transport = if peer.secure {
        Transport::Wss
    } else {
        Transport::Ws
    };
    let flow = Flow {
        transport,
        local: peer.local,
        remote: peer.remote,
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    s.metrics.sip_ws_connections.fetch_add(1, Relaxed);
    let up = CoreMsg::TcpUp {
        transport,
        remote: peer.remote,
        tx,
    };
    if s.core.send(up).await.is_err() {
        s.metrics.sip_ws_connections.fetch_sub(1, Relaxed);
        return;
    }
    if let Some(user) = user {
        debug!(remote = %peer.remote, %user, "SIP WebSocket signed in with a token");
        let _ = s.core.send(CoreMsg::WsSignedIn { flow, user }).await;
    }
    debug!(remote = %peer.remote, "SIP WebSocket open");
    let mut reason = "closed by the peer";
    // RFC 6455 §7.4.1: a socket that broke the protocol is told why.
    let mut close_with: Option<(u16, &'static str)> = None;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(data) = out else {
                    reason = "closed by the edge";
                    break;
                };
                // SIP is UTF-8 text; a body that is not goes as a binary message.
                let msg = match std::str::from_utf8(&data) {
                    Ok(text) => Message::Text(text.into()),
                    Err(_) => Message::Binary(data),
                };
                if sock.send(msg).await.is_err() {
                    reason = "send failed";
                    break;
                }
            }
            inbound = tokio::time::timeout(IDLE, sock.recv()) => {
                let data = match inbound {
                    Err(_) => {
                        reason = "idle";
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        debug!(remote = %peer.remote, error = %e, "SIP WebSocket read failed");
                        close_with = super::close_code_for(e);
                        reason = close_with.map_or("read failed", |(_, r)| r);
                        break;
                    }
                    Ok(Some(Ok(m))) => match m {
                        Message::Text(t) => Bytes::from(t),
                        Message::Binary(b) => b,
                        Message::Ping(_) | Message::Pong(_) => continue,
                        Message::Close(_) => break,
                    },
                };
                // Garbage is the core's to judge (400 when it can be answered,
                // counted either way); the socket stays open, as a TCP flow does.
                let msg = CoreMsg::Inbound {
                    flow,
                    data,
                    at: Instant::now(),
                };
                if s.core.send(msg).await.is_err() {
                    reason = "the SIP core stopped";
                    break;
                }
            }
        }
    }
    s.metrics.sip_ws_connections.fetch_sub(1, Relaxed);
    info!(remote = %peer.remote, reason, "SIP WebSocket closed");
    let _ = s
        .core
        .send(CoreMsg::TcpDown {
            transport,
            remote: peer.remote,
            local: peer.local,
            // Nothing more can arrive on it: what waits for a response fails now.
            failed: true,
        })
        .await;
    match close_with {
        Some((code, why)) => super::close(&mut sock, code, why).await,
        None => {
            let _ = sock.send(Message::Close(None)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sip_subprotocol_is_found_in_any_offer() {
        let mut h = HeaderMap::new();
        assert!(!offers_sip(&h));
        h.append("sec-websocket-protocol", "chat, SIP".parse().unwrap());
        assert!(offers_sip(&h));
        let mut h = HeaderMap::new();
        h.append("sec-websocket-protocol", "chat".parse().unwrap());
        h.append("sec-websocket-protocol", "sip".parse().unwrap());
        assert!(offers_sip(&h));
        let mut h = HeaderMap::new();
        h.append("sec-websocket-protocol", "sipx, chat".parse().unwrap());
        assert!(!offers_sip(&h));
    }
}
