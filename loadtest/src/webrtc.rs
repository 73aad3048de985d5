//! `loadtest answer-webrtc`: agents in browsers, as many as asked. Each agent opens
//! its own SIP WebSocket (RFC 7118, subprotocol `sip`) to the edge, REGISTERs with
//! digest, and answers every INVITE at once as a browser does: a WebRTC answer
//! (`UDP/TLS/RTP/SAVPF`, its ICE credentials and host candidate, its DTLS
//! certificate's fingerprint, `setup:active`), then ICE as the controlling agent
//! (checks with USE-CANDIDATE to the edge's candidate), DTLS as client and SRTP,
//! sending a tone and measuring what arrives, on the same RTP workers as plain
//! calls. The ICE/DTLS/SRTP is the edge's own `media::webrtc::Leg` in its
//! controlling mode, on webrtc-rs's crates.

use crate::collector::Collector;
use crate::rtp::{self, Mode, StreamConfig};
use crate::run::RunError;
use futures_util::{SinkExt, StreamExt};
use media::webrtc::{IceCredentials, Identity, Leg, RemoteParams, Setup};
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, SipMessage};
use serde_json::{json, Value};
use sip::message;
use sip::sdp::Sdp;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// What `answer-webrtc` is told.
#[derive(Debug, Clone)]
pub struct WebRtcAnswerArgs {
    /// `ws://HOST:PORT/ws/sip`.
    pub url: String,
    /// Agents FIRST, FIRST + 1, … (their ids are the AOR users).
    pub first: u64,
    pub count: u64,
    /// Each agent's password; `{user}` is replaced by the agent id.
    pub password: String,
    /// Agents signed in per second.
    pub rate: f64,
    /// The tone each agent sends.
    pub tone: f64,
    pub media_ip: IpAddr,
    /// Exit after this many calls ended (None: until interrupted).
    pub calls: Option<u64>,
    pub progress: bool,
    pub media_threads: usize,
}

/// What the browsers of a run share (`answer-webrtc` and `call-webrtc`): the RTP
/// workers and collector, the DTLS certificate, their tone, and the calls counted.
pub(crate) struct Browsers {
    pub(crate) engine: rtp::Engine,
    pub(crate) collector: Arc<Collector>,
    pub(crate) identity: Arc<Identity>,
    pub(crate) tone: f64,
    pub(crate) media_ip: IpAddr,
    next_call: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) finished: AtomicU64,
}

impl Browsers {
    /// The run's clock and its browsers.
    pub(crate) fn start(
        threads: usize,
        media_ip: IpAddr,
        tone: f64,
    ) -> Result<(Instant, Browsers), RunError> {
        let (start, collector, _, engine) = crate::run::begin(false, threads, media_ip)?;
        let identity = Identity::generate().map_err(|e| RunError::Certificate(e.to_string()))?;
        Ok((
            start,
            Browsers {
                engine,
                collector,
                identity: Arc::new(identity),
                tone,
                media_ip,
                next_call: AtomicU64::new(1),
                active: AtomicU64::new(0),
                finished: AtomicU64::new(0),
            },
        ))
    }

    /// A new call: its id, counted as started.
    pub(crate) fn call_started(&self) -> u64 {
        let active = self.active.fetch_add(1, Relaxed) + 1;
        self.collector.call_started(Instant::now(), active);
        self.next_call.fetch_add(1, Relaxed)
    }

    /// A browser's media for call `id` on `sock`: ICE as the controlling agent
    /// towards `to` (the edge's candidate), DTLS as client (this side answered
    /// `active`, or the edge answered `passive`), SRTP carrying the tone.
    pub(crate) fn start_media(
        &self,
        id: u64,
        sock: std::net::UdpSocket,
        ice: IceCredentials,
        edge: sip::sdp::WebRtcRemote,
        to: SocketAddr,
    ) {
        let remote = RemoteParams {
            ufrag: edge.ufrag,
            pwd: edge.pwd,
            fingerprint: edge.fingerprint,
            setup: Setup::Passive,
        };
        let leg = Leg::controlling(
            self.identity.clone(),
            ice,
            remote,
            to,
            Instant::now(),
            Duration::from_secs(20),
        );
        let cfg = StreamConfig {
            mode: Mode::Tone(self.tone),
            dtmf: None,
            dtmf_after: Duration::ZERO,
        };
        let ssrc = (crate::run::seed() as u32) | 1;
        self.engine
            .start_webrtc_stream(id, sock, Some(to), cfg, ssrc, Some(Box::new(leg)));
    }

    /// Call `id` ended with `status` (its stream, if it had one, stopped).
    pub(crate) fn call_ended(&self, id: u64, status: u16, setup: Option<Duration>) {
        self.engine.stop_stream(id);
        self.active.fetch_sub(1, Relaxed);
        self.finished.fetch_add(1, Relaxed);
        self.collector
            .call_finished(Instant::now(), status, false, setup, None);
    }
}

/// What every agent task of `answer-webrtc` shares.
struct Shared {
    b: Browsers,
    registered: AtomicU64,
    failed_registrations: AtomicU64,
}

/// Random hex (ICE credentials: not secrets worth more here).
pub(crate) fn token(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&format!("{:016x}", crate::run::seed()));
    }
    s.truncate(n);
    s
}

/// The REGISTER for agent `user` from the socket at `local`.
fn register(user: &str, host: &str, local: SocketAddr, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:{host} SIP/2.0\r\nVia: SIP/2.0/WS {local};branch=z9hG4bK-lt{user}r{cseq}\r\n\
Max-Forwards: 70\r\nTo: <sip:{user}@{host}>\r\nFrom: <sip:{user}@{host}>;tag=lt{user}\r\n\
Call-ID: lt-reg-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local};transport=ws>;expires=3600\r\n\
{auth}User-Agent: loadtest/{}\r\nContent-Length: 0\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `host:port` of a `ws://host:port/path` URL.
pub(crate) fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("")
        .to_string()
}

/// A browser's SDP (`setup` `active` in an answer, `actpass` in an offer).
pub(crate) fn browser_sdp(
    ip: IpAddr,
    port: u16,
    ice: &IceCredentials,
    fingerprint: &str,
    te: Option<u8>,
    setup: &str,
) -> String {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let (fmts, te_lines) = match te {
        Some(t) => (
            format!("0 {t}"),
            format!("a=rtpmap:{t} telephone-event/8000\r\na=fmtp:{t} 0-15\r\n"),
        ),
        None => ("0".to_string(), String::new()),
    };
    format!(
        "v=0\r\no=- {port} 1 IN {fam} {ip}\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio {port} UDP/TLS/RTP/SAVPF {fmts}\r\nc=IN {fam} {ip}\r\na=mid:0\r\n\
a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {fingerprint}\r\na=setup:{setup}\r\n\
a=rtcp-mux\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\n{te_lines}\
a=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\n",
        ice.ufrag, ice.pwd
    )
}

/// One agent: its socket, registration and calls, until the socket closes.
async fn agent(user: String, password: String, url: String, host: String, sh: Arc<Shared>) {
    let Some((ws, local)) = open_sip_ws(&url, sh.b.media_ip).await else {
        sh.failed_registrations.fetch_add(1, Relaxed);
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let mut cseq = 1;
    if tx
        .send(Message::text(register(&user, &host, local, cseq, "")))
        .await
        .is_err()
    {
        sh.failed_registrations.fetch_add(1, Relaxed);
        return;
    }
    // Call-ID → stream id of the calls in progress.
    let mut calls: HashMap<String, u64> = HashMap::new();
    let mut registered = false;
    while let Some(Ok(frame)) = rx.next().await {
        let data = match frame {
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Binary(b) => b.to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok((msg, head)) = message::parse(&data) else {
            continue;
        };
        let reply = match msg {
            SipMessage::Response(r) => {
                if head.cseq_method == Method::Register {
                    match r.status_code.code() {
                        401 if cseq == 1 => {
                            let challenge = r.headers.iter().find_map(|h| match h {
                                Header::WwwAuthenticate(w) => {
                                    sip::digest::Challenge::parse(w.value())
                                }
                                _ => None,
                            });
                            let Some(c) = challenge else { break };
                            let uri = format!("sip:{host}");
                            let resp = sip::digest::response(
                                c.algorithm,
                                &user,
                                &c.realm,
                                &password,
                                "REGISTER",
                                &uri,
                                &c.nonce,
                                Some(("00000001", "lt")),
                            );
                            cseq = 2;
                            let auth = format!(
                                "Authorization: Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"lt\"\r\n",
                                c.realm,
                                c.nonce,
                                c.algorithm.name()
                            );
                            Some(register(&user, &host, local, cseq, &auth))
                        }
                        200 if !registered => {
                            registered = true;
                            sh.registered.fetch_add(1, Relaxed);
                            None
                        }
                        code if code >= 300 => {
                            sh.failed_registrations.fetch_add(1, Relaxed);
                            break;
                        }
                        _ => None,
                    }
                } else {
                    None
                }
            }
            SipMessage::Request(req) => match req.method {
                Method::Invite if head.to_tag.is_none() => {
                    Some(on_invite(&req, &head, &user, local, &sh, &mut calls))
                }
                Method::Ack => None,
                Method::Bye => {
                    if let Some(id) = calls.remove(&head.call_id) {
                        sh.b.call_ended(id, 200, None);
                    }
                    Some(message::response(&req, 200, None, "loadtest").to_string())
                }
                _ => Some(message::response(&req, 200, None, "loadtest").to_string()),
            },
        };
        if let Some(r) = reply {
            if tx.send(Message::text(r)).await.is_err() {
                break;
            }
        }
    }
    for (_, id) in calls.drain() {
        sh.b.engine.stop_stream(id);
    }
}

/// Answer an INVITE as a browser: the WebRTC answer, then ICE/DTLS/SRTP and the
/// tone on a stream of the RTP workers.
fn on_invite(
    req: &rsip::Request,
    head: &message::Head,
    user: &str,
    local: SocketAddr,
    sh: &Shared,
    calls: &mut HashMap<String, u64>,
) -> String {
    let offer = Sdp::parse(&req.body).ok();
    let remote = offer.as_ref().and_then(|s| s.webrtc().ok().flatten());
    let target = offer.as_ref().and_then(|s| s.audio_target().ok().flatten());
    let te = offer.as_ref().and_then(Sdp::telephone_event_pt);
    let sock = std::net::UdpSocket::bind((sh.b.media_ip, 0))
        .and_then(|s| s.set_nonblocking(true).map(|_| s));
    let (Some(remote), Some(target), Ok(sock)) = (remote, target, sock) else {
        return message::response(req, 488, Some("lt"), "loadtest").to_string();
    };
    let Ok(port) = sock.local_addr().map(|a| a.port()) else {
        return message::response(req, 500, Some("lt"), "loadtest").to_string();
    };
    let ice = IceCredentials {
        ufrag: token(8),
        pwd: token(24),
    };
    let body = browser_sdp(
        sh.b.media_ip,
        port,
        &ice,
        sh.b.identity.fingerprint(),
        te,
        "active",
    );
    let id = sh.b.call_started();
    sh.b.start_media(id, sock, ice, remote, target);
    calls.insert(head.call_id.clone(), id);
    let mut ok = message::response(req, 200, Some("lt"), "loadtest");
    ok.headers
        .push(rsip::headers::Contact::new(format!("<sip:{user}@{local};transport=ws>")).into());
    ok.body = message::set_body(&mut ok.headers, body.as_bytes(), Some("application/sdp"));
    ok.to_string()
}

/// A SIP WebSocket to `url` (subprotocol `sip`) and its local address.
pub(crate) async fn open_sip_ws(
    url: &str,
    fallback: IpAddr,
) -> Option<(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    SocketAddr,
)> {
    let mut req = url.into_client_request().ok()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "sip".parse().expect("a header value"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req).await.ok()?;
    let local = match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(t) => t.local_addr().ok(),
        _ => None,
    }
    .unwrap_or_else(|| SocketAddr::new(fallback, 0));
    Some((ws, local))
}

/// Run `loadtest answer-webrtc` until `calls` ended or Ctrl-C / SIGTERM.
pub async fn run_answer_webrtc(a: WebRtcAnswerArgs) -> Result<(Value, Arc<Collector>), RunError> {
    let (start, b) = Browsers::start(a.media_threads, a.media_ip, a.tone)?;
    let collector = b.collector.clone();
    let host = host_of(&a.url);
    let sh = Arc::new(Shared {
        b,
        registered: AtomicU64::new(0),
        failed_registrations: AtomicU64::new(0),
    });
    let gap = Duration::from_secs_f64(1.0 / a.rate.max(1.0));
    let mut next = tokio::time::Instant::now();
    for i in 0..a.count {
        let user = (a.first + i).to_string();
        let password = a.password.replace("{user}", &user);
        tokio::spawn(agent(
            user,
            password,
            a.url.clone(),
            host.clone(),
            sh.clone(),
        ));
        next += gap;
        tokio::time::sleep_until(next).await;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut last = Instant::now();
    loop {
        if a.calls.is_some_and(|n| sh.b.finished.load(Relaxed) >= n) {
            break;
        }
        if a.progress && last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            eprintln!(
                "answer-webrtc: {} registered ({} failed), {} calls up, {} ended",
                sh.registered.load(Relaxed),
                sh.failed_registrations.load(Relaxed),
                sh.b.active.load(Relaxed),
                sh.b.finished.load(Relaxed)
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => break,
        }
    }
    sh.b.engine.shutdown();
    let config = json!({
        "url": a.url, "agents": a.count, "first": a.first, "tone_hz": a.tone,
        "registered": sh.registered.load(Relaxed),
        "failed_registrations": sh.failed_registrations.load(Relaxed),
    });
    let summary =
        crate::summary::build("answer-webrtc", &a.url, config, &collector, start.elapsed());
    Ok((summary, collector))
}
