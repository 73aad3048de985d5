//! `loadtest call-webrtc`: browsers placing calls. COUNT agents each open a SIP
//! WebSocket to the edge; calls start at a steady rate, spread over the agents:
//! an INVITE with a browser's WebRTC offer (`setup:actpass`, ICE credentials, one
//! host candidate, a DTLS fingerprint), the 407 answered with the agent's digest
//! credentials, then — on the 200 — ICE as the controlling agent, DTLS as client
//! (the edge answers `passive`) and SRTP with a tone, held for `--duration`, then
//! BYE. The media is the edge's own `media::webrtc::Leg` in its controlling mode.

use crate::collector::Collector;
use crate::run::RunError;
use crate::webrtc::{browser_sdp, Browsers};
use futures_util::{SinkExt, StreamExt};
use media::webrtc::IceCredentials;
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, SipMessage};
use serde_json::{json, Value};
use sip::message;
use sip::sdp::Sdp;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What `call-webrtc` is told.
#[derive(Debug, Clone)]
pub struct WebRtcCallArgs {
    pub url: String,
    pub first: u64,
    pub count: u64,
    pub password: String,
    /// The number dialled.
    pub to: String,
    pub rate: f64,
    pub calls: u64,
    pub duration: Duration,
    pub tone: f64,
    pub media_ip: IpAddr,
    pub progress: bool,
    pub media_threads: usize,
}

/// What every agent task of `call-webrtc` shares.
struct Shared {
    b: Browsers,
    duration: Duration,
    to: String,
}

/// One call of an agent, from its INVITE to its BYE's answer.
struct Call {
    id: u64,
    cseq: u32,
    tag: String,
    /// The INVITE sent (to resend with credentials), its SDP's ICE credentials
    /// and socket.
    sock: Option<std::net::UdpSocket>,
    ice: IceCredentials,
    body: String,
    started: Instant,
    /// The dialog once answered: the remote target and To (with its tag).
    target: Option<(String, String)>,
}

enum Cmd {
    Place,
    Bye(String),
}

/// A request of a call: `(from, to, call_id)` of its dialog, `(extra header
/// lines, SDP body)`.
fn request(
    method: &str,
    ruri: &str,
    local: SocketAddr,
    branch: &str,
    (from, to, call_id): (&str, &str, &str),
    cseq: u32,
    (extra, body): (&str, &str),
) -> String {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/WS {local};branch=z9hG4bK-{branch}\r\nMax-Forwards: 70\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn agent(
    user: String,
    password: String,
    url: String,
    host: String,
    sh: Arc<Shared>,
    mut cmds: mpsc::Receiver<Cmd>,
    me: mpsc::Sender<Cmd>,
) {
    let Some((ws, local)) = crate::webrtc::open_sip_ws(&url, sh.b.media_ip).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let from = format!("<sip:{user}@{host}>");
    let ruri = format!("sip:{}@{host}", sh.to);
    let to = format!("<{ruri}>");
    let contact = format!("Contact: <sip:{user}@{local};transport=ws>\r\n");
    let mut calls: HashMap<String, Call> = HashMap::new();
    loop {
        let out: Vec<String> = tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => break,
                Some(Cmd::Place) => {
                    let Ok(sock) = std::net::UdpSocket::bind((sh.b.media_ip, 0)).and_then(|s| s.set_nonblocking(true).map(|_| s)) else { continue };
                    let Ok(port) = sock.local_addr().map(|a| a.port()) else { continue };
                    let ice = IceCredentials { ufrag: crate::webrtc::token(8), pwd: crate::webrtc::token(24) };
                    let body = browser_sdp(sh.b.media_ip, port, &ice, sh.b.identity.fingerprint(), Some(101), "actpass");
                    let id = sh.b.call_started();
                    let call_id = format!("lt-{user}-{id}");
                    let c = Call { id, cseq: 1, tag: format!("t{id}"), sock: Some(sock), ice, body, started: Instant::now(), target: None };
                    let inv = request("INVITE", &ruri, local, &format!("{call_id}-1"), (&format!("{from};tag={}", c.tag), &to, &call_id), 1, (&contact, &c.body));
                    calls.insert(call_id, c);
                    vec![inv]
                }
                Some(Cmd::Bye(call_id)) => match calls.get_mut(&call_id) {
                    Some(c) => match &c.target {
                        Some((target, to_tag)) => {
                            c.cseq += 1;
                            vec![request("BYE", target, local, &format!("{call_id}-b"), (&format!("{from};tag={}", c.tag), to_tag, &call_id), c.cseq, ("", ""))]
                        }
                        None => vec![],
                    },
                    None => vec![],
                },
            },
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else { break };
                let data = match frame {
                    Message::Text(t) => t.as_bytes().to_vec(),
                    Message::Binary(b) => b.to_vec(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok((msg, head)) = message::parse(&data) else { continue };
                match msg {
                    SipMessage::Request(r) => vec![message::response(&r, 200, None, "loadtest").to_string()],
                    SipMessage::Response(r) => {
                        let code = r.status_code.code();
                        let Some(c) = calls.get_mut(&head.call_id) else { continue };
                        let to_hdr = r.headers.iter().find_map(|h| match h { Header::To(t) => Some(t.value().to_string()), _ => None }).unwrap_or_default();
                        match (head.cseq_method, code) {
                            (Method::Invite, 100..=199) => vec![],
                            (Method::Invite, 407) if c.cseq == 1 => {
                                let challenge = r.headers.iter().find_map(|h| match h {
                                    Header::ProxyAuthenticate(w) => sip::digest::Challenge::parse(w.value()),
                                    _ => None,
                                });
                                let ack = request("ACK", &ruri, local, &format!("{}-1", head.call_id), (&format!("{from};tag={}", c.tag), &to_hdr, &head.call_id), 1, ("", ""));
                                let Some(ch) = challenge else { sh.b.call_ended(c.id, 407, Some(c.started.elapsed())); calls.remove(&head.call_id); continue };
                                let resp = sip::digest::response(ch.algorithm, &user, &ch.realm, &password, "INVITE", &ruri, &ch.nonce, Some(("00000001", "lt")));
                                let auth = format!(
                                    "Proxy-Authorization: Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{ruri}\", response=\"{resp}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"lt\"\r\n",
                                    ch.realm, ch.nonce, ch.algorithm.name()
                                );
                                c.cseq = 2;
                                let inv = request("INVITE", &ruri, local, &format!("{}-2", head.call_id), (&format!("{from};tag={}", c.tag), &to, &head.call_id), 2, (&format!("{contact}{auth}"), &c.body));
                                vec![ack, inv]
                            }
                            (Method::Invite, 200..=299) => {
                                let target = r.headers.iter().find_map(|h| match h { Header::Contact(v) => Some(message::uri_of(v.value()).to_string()), _ => None }).unwrap_or_else(|| ruri.clone());
                                let ack = request("ACK", &target, local, &format!("{}-a", head.call_id), (&format!("{from};tag={}", c.tag), &to_hdr, &head.call_id), head.cseq, ("", ""));
                                if c.target.is_some() { vec![ack] } else {
                                    c.target = Some((target, to_hdr));
                                    let answer = Sdp::parse(&r.body).ok();
                                    let remote = answer.as_ref().and_then(|s| s.webrtc().ok().flatten());
                                    let addr = answer.as_ref().and_then(|s| s.audio_target().ok().flatten());
                                    if let (Some(remote), Some(addr), Some(sock)) = (remote, addr, c.sock.take()) {
                                        sh.b.start_media(c.id, sock, c.ice.clone(), remote, addr);
                                    }
                                    let (me, call_id, hold) = (me.clone(), head.call_id.clone(), sh.duration);
                                    tokio::spawn(async move { tokio::time::sleep(hold).await; let _ = me.send(Cmd::Bye(call_id)).await; });
                                    vec![ack]
                                }
                            }
                            (Method::Invite, code) => {
                                let ack = request("ACK", &ruri, local, &format!("{}-{}", head.call_id, c.cseq), (&format!("{from};tag={}", c.tag), &to_hdr, &head.call_id), c.cseq, ("", ""));
                                sh.b.call_ended(c.id, code, Some(c.started.elapsed()));
                                calls.remove(&head.call_id);
                                vec![ack]
                            }
                            (Method::Bye, 200..=699) => {
                                sh.b.call_ended(c.id, 200, Some(c.started.elapsed()));
                                calls.remove(&head.call_id);
                                vec![]
                            }
                            _ => vec![],
                        }
                    }
                }
            }
        };
        for m in out {
            if tx.send(Message::text(m)).await.is_err() {
                return;
            }
        }
    }
}

/// Run `loadtest call-webrtc`: place `calls` at `rate`, wait for them to end.
pub async fn run_call_webrtc(a: WebRtcCallArgs) -> Result<(Value, Arc<Collector>), RunError> {
    let (start, b) = Browsers::start(a.media_threads, a.media_ip, a.tone)?;
    let collector = b.collector.clone();
    let host = crate::webrtc::host_of(&a.url);
    let sh = Arc::new(Shared {
        b,
        duration: a.duration,
        to: a.to.clone(),
    });
    let mut agents = Vec::new();
    for i in 0..a.count.max(1) {
        let user = (a.first + i).to_string();
        let password = a.password.replace("{user}", &user);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(agent(
            user,
            password,
            a.url.clone(),
            host.clone(),
            sh.clone(),
            rx,
            tx.clone(),
        ));
        agents.push(tx);
    }
    // Let the sockets open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gap = Duration::from_secs_f64(1.0 / a.rate.max(0.1));
    let mut next = tokio::time::Instant::now();
    for n in 0..a.calls {
        let _ = agents[(n % agents.len() as u64) as usize]
            .send(Cmd::Place)
            .await;
        next += gap;
        tokio::time::sleep_until(next).await;
    }
    let deadline = Instant::now() + a.duration + Duration::from_secs(30);
    while sh.b.finished.load(Relaxed) < a.calls && Instant::now() < deadline {
        if a.progress {
            eprintln!(
                "call-webrtc: {} up, {} ended",
                sh.b.active.load(Relaxed),
                sh.b.finished.load(Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(agents);
    sh.b.engine.shutdown();
    let config = json!({
        "url": a.url, "agents": a.count, "to": a.to, "rate": a.rate, "calls": a.calls,
        "duration_s": a.duration.as_secs_f64(), "tone_hz": a.tone,
    });
    let summary = crate::summary::build("call-webrtc", &a.url, config, &collector, start.elapsed());
    Ok((summary, collector))
}
