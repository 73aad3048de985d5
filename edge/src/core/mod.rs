//! The core task: owns the sans-IO [`B2bua`], its timers, the RTP relays it opens
//! and the commands of the HTTP API. Its inbox ([`msg`]) is fed by the SIP sockets
//! ([`net`]), the relay workers and the API.

use crate::audio::AudioCache;
use crate::metrics::{CoreStats, Metrics};
use crate::rtp::{MediaEvent, RelayHandle, Relays};
use b2bua::B2bua;
use b2bua::{CallId, Command, Output, Presence};
use bytes::Bytes;
use control::Transport;
use sip::Flow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

mod msg;
mod net;

pub use msg::{inbox, CoreMsg, CoreRx, CoreTx};

pub use net::{bind_all, spawn_tcp_listener, BindError, TcpLimits};

/// The SIP side the core sends on: the UDP sockets, and the limits new TCP
/// connections count against.
pub struct SipSockets {
    /// Registered with the core's own runtime when it starts.
    pub udp: Vec<(SocketAddr, std::net::UdpSocket)>,
    pub tcp_limits: Arc<TcpLimits>,
    /// Opens TLS connections to `sips:` targets (`None`: no `[tls]`, or no trust
    /// anchors).
    pub tls_client: Option<tokio_rustls::TlsConnector>,
}

/// Where the core writes: recordings under `dir`, agents' registrations.
pub struct Stores {
    pub dir: std::path::PathBuf,
    pub registrations: Arc<storage::registrations::Registrations>,
    /// The chat service: agents' states stop and resume their chat offers.
    pub desk: Arc<crate::desk::Desk>,
}

/// The core task: owns the B2BUA and everything it drives.
pub struct Core {
    b2bua: B2bua,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// The UDP sockets before [`Core::run`] registers them.
    udp_unregistered: Vec<(SocketAddr, std::net::UdpSocket)>,
    /// Stream connections by transport and peer: TCP, TLS and WebSocket.
    tcp: HashMap<(Transport, SocketAddr), mpsc::Sender<Bytes>>,
    /// Messages waiting for an outbound TCP connection.
    connecting: HashMap<(Transport, SocketAddr), (Flow, Vec<Bytes>)>,
    relays: HashMap<CallId, RelayHandle>,
    media: Arc<Relays>,
    metrics: Arc<Metrics>,
    self_tx: CoreTx,
    storage_dir: std::path::PathBuf,
    audio: Arc<AudioCache>,
    tcp_limits: Arc<TcpLimits>,
    tls_client: Option<tokio_rustls::TlsConnector>,
    /// Where agents' bindings are persisted.
    registrations: Arc<storage::registrations::Registrations>,
    desk: Arc<crate::desk::Desk>,
    /// Cluster mode: the claims driver (`cluster::claims`).
    claims: Option<tokio::sync::mpsc::UnboundedSender<crate::cluster::claims::ClaimReq>>,
    /// Cluster mode: where this node's bindings are shared.
    regs: Option<tokio::sync::mpsc::UnboundedSender<crate::cluster::regs::Update>>,
}

impl Core {
    pub fn new(
        b2bua: B2bua,
        sip: SipSockets,
        media: Arc<Relays>,
        metrics: Arc<Metrics>,
        self_tx: CoreTx,
        stores: Stores,
        audio: Arc<AudioCache>,
    ) -> Self {
        let SipSockets {
            udp,
            tcp_limits,
            tls_client,
        } = sip;
        let Stores {
            dir: storage_dir,
            registrations,
            desk,
        } = stores;
        Core {
            b2bua,
            udp: HashMap::new(),
            udp_unregistered: udp,
            tcp: HashMap::new(),
            connecting: HashMap::new(),
            relays: HashMap::new(),
            media,
            metrics,
            self_tx,
            storage_dir,
            audio,
            tcp_limits,
            tls_client,
            registrations,
            desk,
            claims: None,
            regs: None,
        }
    }

    pub async fn run(mut self, rx: CoreRx) {
        // The UDP sockets are read by tasks on this thread's runtime: a datagram
        // wakes only this thread, which reads and handles it. Read on the shared
        // runtime, each woke a worker there that then had to wake this thread
        // (an eventfd write and a second context switch per datagram: ~30 % of
        // the edge's CPU at 4000 registrations/s).
        for (addr, s) in std::mem::take(&mut self.udp_unregistered) {
            match UdpSocket::from_std(s) {
                Ok(s) => {
                    let s = Arc::new(s);
                    net::spawn_udp_reader(
                        addr,
                        s.clone(),
                        self.self_tx.clone(),
                        self.metrics.clone(),
                    );
                    self.udp.insert(addr, s);
                }
                Err(e) => {
                    error!(%addr, error = %e, "cannot read the SIP UDP socket: the SIP core stops");
                    return;
                }
            }
        }
        let CoreRx {
            mut sip,
            mut control,
        } = rx;
        let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let (mut sip_open, mut control_open) = (true, true);
        while sip_open || control_open {
            let deadline = self.b2bua.poll_timeout().map_or_else(far, Into::into);
            // Control first: the API answers however much SIP traffic waits.
            let msg = tokio::select! {
                biased;
                m = control.recv(), if control_open => match m {
                    Some(m) => m,
                    None => {
                        control_open = false;
                        continue;
                    }
                },
                m = sip.recv(), if sip_open => match m {
                    Some(m) => m,
                    None => {
                        sip_open = false;
                        continue;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.b2bua.handle_timeout(Instant::now());
                    self.drain();
                    continue;
                }
            };
            self.handle(msg);
            // Batch: take whatever else is queued before flushing, control first.
            for _ in 0..256 {
                while let Ok(m) = control.try_recv() {
                    self.handle(m);
                }
                match sip.try_recv() {
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
            self.drain();
        }
    }

    fn handle(&mut self, msg: CoreMsg) {
        let now = Instant::now();
        match msg {
            CoreMsg::Inbound { flow, data, at } => {
                if data.as_ref() == b"\r\n" && flow.transport.is_reliable() {
                    // RFC 5626 pong.
                    self.send(flow, Bytes::from_static(b"\r\n"));
                    return;
                }
                let waited = now.saturating_duration_since(at);
                self.b2bua.handle_datagram_waited(now, flow, &data, waited);
            }
            CoreMsg::TcpUp {
                transport,
                remote,
                tx,
            } => {
                if let Some((_, queued)) = self.connecting.remove(&(transport, remote)) {
                    for b in queued {
                        let _ = tx.try_send(b);
                    }
                }
                self.tcp.insert((transport, remote), tx);
            }
            CoreMsg::WsSignedIn { flow, user } => {
                self.b2bua.flow_signed_in(flow, user);
            }
            CoreMsg::TcpDown {
                transport,
                remote,
                local,
                failed,
            } => {
                // What the batch produced for this connection (a 400 for the message
                // that closed it) goes out before its writer is forgotten.
                self.drain();
                self.tcp.remove(&(transport, remote));
                let flow = Flow {
                    transport,
                    local,
                    remote,
                };
                self.b2bua.flow_closed(now, flow);
                if let Some((flow, _)) = self.connecting.remove(&(transport, remote)) {
                    self.b2bua.transport_failed(now, flow);
                } else if failed {
                    self.b2bua.transport_failed(now, flow);
                }
            }
            CoreMsg::ListCalls(reply) => {
                let _ = reply.send(self.b2bua.calls(now));
            }
            CoreMsg::ListRegistrations(reply) => {
                let _ = reply.send(self.b2bua.registrations(now));
            }
            CoreMsg::ListAgents(reply) => {
                let _ = reply.send(self.b2bua.agents(now));
            }
            CoreMsg::SetAgentState {
                agent,
                choice,
                reply,
            } => {
                let _ = reply.send(self.b2bua.set_agent_state(now, &agent, choice));
            }
            CoreMsg::Stats(reply) => {
                let _ = reply.send(CoreStats {
                    sip: self.b2bua.endpoint().stats.clone(),
                    calls: self.b2bua.stats.clone(),
                    active_calls: self.b2bua.active_calls(),
                    registered: self.b2bua.registered(now),
                    agents: self
                        .b2bua
                        .agent_counts()
                        .map(|(p, n)| (p.as_str(), n))
                        .to_vec(),
                    ports_in_use: self.b2bua.ports_in_use(),
                    ports_capacity: self.b2bua.ports_capacity(),
                    conferences: self.b2bua.conference_sizes(),
                    draining: self.b2bua.draining(),
                    held: self.b2bua.held(),
                });
            }
            CoreMsg::Drain(reply) => {
                let _ = reply.send(self.b2bua.drain());
            }
            CoreMsg::HoldNewWork(held) => self.b2bua.hold_new_work(held),
            CoreMsg::AttachClaims(tx) => self.claims = Some(tx),
            CoreMsg::ClusterNodes { me, nodes } => self.b2bua.set_cluster_nodes(now, me, nodes),
            CoreMsg::AttachRegs(tx) => {
                let all = self.b2bua.local_bindings();
                let _ = tx.send(crate::cluster::regs::Update::All(all));
                self.regs = Some(tx);
            }
            CoreMsg::RemoteBindings {
                node,
                agent,
                bindings,
            } => self.b2bua.remote_bindings(now, node, agent, bindings),
            CoreMsg::ClaimRank(rank, nodes) => self.b2bua.set_claim_rank(rank, nodes),
            CoreMsg::QueueHeads(reply) => {
                let _ = reply.send(self.b2bua.queue_heads(now));
            }
            CoreMsg::RemoteHeads(heads) => self.b2bua.set_remote_heads(now, heads),
            CoreMsg::ClaimResult {
                call,
                agent,
                result,
            } => self.b2bua.claim_result(now, call, &agent, result),
            CoreMsg::Batch(msgs) => {
                for m in msgs {
                    self.handle(m);
                }
            }
            CoreMsg::ClaimSeen { agent } => self.b2bua.claim_elsewhere(now, &agent),
            CoreMsg::ClaimGone { agent } => self.b2bua.claim_released_elsewhere(now, &agent),
            CoreMsg::AgentShared { agent, share } => {
                self.b2bua.agent_shared_with(now, &agent, &share)
            }
            CoreMsg::Reload(snap, audio) => {
                self.b2bua.reload(snap, now);
                self.audio = audio;
            }
            CoreMsg::Media(MediaEvent::AnnouncementDone { call }) => {
                self.b2bua.announcement_done(now, call);
            }
            CoreMsg::Media(MediaEvent::Silent { call }) => {
                self.b2bua.media_silent(now, call);
            }
            CoreMsg::Media(MediaEvent::WebRtcFailed { call }) => {
                self.b2bua.webrtc_failed(now, call);
            }
            CoreMsg::Command(cmd, reply) => {
                let _ = reply.send(self.b2bua.handle_command(now, cmd));
            }
            CoreMsg::Media(MediaEvent::Digit { call, from, digit }) => {
                self.b2bua.media_digit(now, call, from, digit);
            }
        }
    }

    /// Apply the B2BUA's outputs (media first), then put its messages on the wire.
    fn drain(&mut self) {
        let media_ip = self.b2bua.snapshot().config.media.address;
        let mut failed = Vec::new();
        let mut announced = Vec::new();
        let mut unclaimed = Vec::new();
        while let Some(o) = self.b2bua.poll_output() {
            match o {
                Output::Media(call, cmd) => {
                    self.media(call, cmd, media_ip, &mut failed, &mut announced)
                }
                Output::Bindings { agent, bindings } => {
                    let rows = bindings.iter().map(binding_row).collect();
                    self.registrations.set(&agent, rows);
                    if let Some(tx) = &self.regs {
                        let _ = tx.send(crate::cluster::regs::Update::Set(agent, bindings));
                    }
                }
                Output::RecordStart { call, meta } => {
                    let Some(r) = self.relays.get(&call) else {
                        continue;
                    };
                    match crate::recorder::Recorder::create(&self.storage_dir, meta) {
                        Ok(rec) => r.record(rec),
                        Err(e) => {
                            // The call goes on unrecorded; say so loudly.
                            error!(%call, error = %e, "cannot create the recording file: call not recorded");
                            self.metrics.recording_failures.fetch_add(1, Relaxed);
                        }
                    }
                }
                Output::AgentState {
                    agent,
                    user,
                    state,
                    reason,
                } => {
                    // One person for calls and chats: the console hears of it, and
                    // chat offers stop unless the agent is ready or on a call.
                    if let Some(user) = user {
                        let snap = self.b2bua.snapshot().clone();
                        let takes = matches!(state, Presence::Ready | Presence::Busy);
                        self.desk.run(|c, at| {
                            c.agent_state(
                                &snap,
                                &user,
                                &agent,
                                state.as_str(),
                                reason.as_deref(),
                                takes,
                                at,
                            )
                        });
                    }
                }
                Output::AgentCall {
                    user,
                    call,
                    state,
                    caller,
                    queue,
                    reserved,
                } => {
                    let frame = chat::protocol::ServerFrame::Call {
                        call,
                        state: state.to_string(),
                        caller,
                        queue,
                        reserved_data: crate::recorder::reserved_json(&reserved),
                    };
                    self.desk.run(|c, _| c.notify(&user, frame));
                }
                Output::ClaimAgent { call, agent } => {
                    let req = crate::cluster::claims::ClaimReq::Claim {
                        call,
                        agent: agent.clone(),
                    };
                    if self.claims.as_ref().is_none_or(|tx| tx.send(req).is_err()) {
                        unclaimed.push((call, agent));
                    }
                }
                Output::ReleaseAgent { agent } => {
                    if let Some(tx) = &self.claims {
                        let _ = tx.send(crate::cluster::claims::ClaimReq::Release { agent });
                    }
                }
                Output::AgentShared { agent, share } => {
                    if let Some(tx) = &self.claims {
                        let _ = tx.send(crate::cluster::claims::ClaimReq::Share { agent, share });
                    }
                }
                Output::CallEnded { .. } => {}
            }
        }
        let now = Instant::now();
        for (call, agent) in unclaimed {
            self.b2bua
                .claim_result(now, call, &agent, b2bua::ClaimResult::Failed);
        }
        for call in failed {
            self.b2bua.media_failed(now, call);
        }
        for call in announced {
            self.b2bua.announcement_done(now, call);
        }
        while let Some(t) = self.b2bua.poll_transmit() {
            self.send(t.flow, t.data);
        }
        if self.b2bua.poll_output().is_some() {
            // media_failed produced more outputs (MediaClose): apply them too.
            self.drain();
        }
    }

    /// Carry out one media command of call `call`: bind what it needs (relay and
    /// supervisor ports), resolve audio files to their decoded samples, and pass
    /// the rest to the call's relay worker. `failed`: calls whose ports could not
    /// be bound; `announced`: calls whose announcement cannot be played.
    fn media(
        &mut self,
        call: CallId,
        cmd: Command,
        media_ip: std::net::IpAddr,
        failed: &mut Vec<CallId>,
        announced: &mut Vec<CallId>,
    ) {
        match cmd {
            Command::Open { a_port, b_port } => {
                match self.media.open(call, media_ip, a_port, b_port) {
                    Ok(h) => {
                        self.relays.insert(call, h);
                    }
                    Err(e) => {
                        error!(%call, a_port, b_port, error = %e, "cannot bind RTP ports");
                        self.metrics.media_bind_failures.fetch_add(1, Relaxed);
                        failed.push(call);
                    }
                }
            }
            Command::Close => {
                self.relays.remove(&call);
            }
            Command::MonitorOpen {
                monitor,
                port,
                mode,
            } => {
                let r = self
                    .relays
                    .get(&call)
                    .map(|r| r.monitor_open(media_ip, port, monitor, mode));
                if let Some(Err(e)) = r {
                    error!(%call, port, error = %e, "cannot bind a supervisor's RTP ports");
                    self.metrics.media_bind_failures.fetch_add(1, Relaxed);
                }
            }
            Command::Announce { side, file, pt } => {
                match (self.relays.get(&call), self.audio.get(&file)) {
                    (Some(r), Some(samples)) => r.announce(side, samples, pt),
                    _ => {
                        // Not loaded (a reload removed it) or no relay: connect now.
                        warn!(%call, file = %file.display(), "announcement not available: connecting the caller");
                        announced.push(call);
                    }
                }
            }
            Command::Hold { side, held, audio } => {
                if let Some(r) = self.relays.get(&call) {
                    let samples = audio.and_then(|f| self.audio.get(&f));
                    r.hold(side, held, samples);
                }
            }
            cmd => {
                if let Some(r) = self.relays.get(&call) {
                    r.apply(cmd);
                }
            }
        }
    }

    fn send(&mut self, flow: Flow, data: Bytes) {
        match flow.transport {
            Transport::Udp => {
                let sock = self
                    .udp
                    .get(&flow.local)
                    .or_else(|| self.udp.values().next());
                match sock {
                    Some(s) => {
                        if let Err(e) = s.try_send_to(&data, flow.remote) {
                            self.metrics.sip_send_failures.fetch_add(1, Relaxed);
                            debug!(remote = %flow.remote, error = %e, "udp send failed");
                        }
                    }
                    None => {
                        self.metrics.sip_send_failures.fetch_add(1, Relaxed);
                    }
                }
            }
            Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
                if let Some(tx) = self.tcp.get(&(flow.transport, flow.remote)) {
                    if tx.try_send(data).is_err() {
                        self.metrics.sip_send_failures.fetch_add(1, Relaxed);
                    }
                    return;
                }
                let tls = match flow.transport {
                    Transport::Ws | Transport::Wss => {
                        // Only the browser can open its WebSocket: it is gone.
                        return self.not_connectable(flow, "the SIP WebSocket of that peer is closed: not sent");
                    }
                    Transport::Tls => match &self.tls_client {
                        Some(c) => Some(c.clone()),
                        None => {
                            return self.not_connectable(
                                flow,
                                "no SIP TLS connection to that peer and no trust anchors to open one ([tls] ca): not sent",
                            )
                        }
                    },
                    _ => None,
                };
                self.connect(flow, data, tls);
            }
        }
    }

    /// A message for a stream the edge cannot open: counted, logged, and the
    /// transaction told at once (its flow failed).
    fn not_connectable(&mut self, flow: Flow, why: &'static str) {
        self.metrics.sip_send_failures.fetch_add(1, Relaxed);
        info!(remote = %flow.remote, transport = %flow.transport, "{why}");
        tokio::spawn(flow_failed(self.self_tx.clone(), flow));
    }

    /// Open a TCP connection to `flow.remote` for `data` (and what is sent there
    /// until it is up), with a TLS handshake over it when `tls` is given: the
    /// peer's certificate must name its IP address.
    fn connect(&mut self, flow: Flow, data: Bytes, tls: Option<tokio_rustls::TlsConnector>) {
        if let Some((_, q)) = self.connecting.get_mut(&(flow.transport, flow.remote)) {
            q.push(data);
            return;
        }
        if self.metrics.tcp_connections.load(Relaxed) >= self.tcp_limits.total {
            return self.not_connectable(flow, "SIP connection limit reached: not connecting");
        }
        self.connecting
            .insert((flow.transport, flow.remote), (flow, vec![data]));
        let core = self.self_tx.clone();
        let metrics = self.metrics.clone();
        let limits = self.tcp_limits.clone();
        let (transport, remote) = (flow.transport, flow.remote);
        tokio::spawn(async move {
            let wait = std::time::Duration::from_secs(5);
            let stream = match tokio::time::timeout(wait, TcpStream::connect(remote)).await {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    info!(%remote, %transport, error = %e, "SIP connect failed");
                    None
                }
                Err(_) => {
                    info!(%remote, %transport, "SIP connect not completed in 5s");
                    None
                }
            };
            let ctx = net::Streams {
                core: core.clone(),
                metrics,
                limits,
            };
            let up = match (stream, tls) {
                (None, _) => false,
                (Some(s), None) => {
                    let _ = s.set_nodelay(true);
                    net::spawn_connection(s, flow, ctx, false);
                    true
                }
                (Some(s), Some(connector)) => {
                    let _ = s.set_nodelay(true);
                    let name = rustls::pki_types::ServerName::IpAddress(remote.ip().into());
                    match tokio::time::timeout(wait, connector.connect(name, s)).await {
                        Ok(Ok(s)) => {
                            net::spawn_connection(s, flow, ctx, false);
                            true
                        }
                        failed => {
                            net::tls_failed(&ctx.metrics, remote, failed.map(|r| r.map(drop)));
                            false
                        }
                    }
                }
            };
            if !up {
                flow_failed(core, flow).await;
            }
        });
    }
}

/// Tell the core that `flow` failed (it never came up, or cannot be opened): what
/// waits on it ends as a transport error.
async fn flow_failed(core: CoreTx, flow: Flow) {
    let _ = core
        .send(CoreMsg::TcpDown {
            transport: flow.transport,
            remote: flow.remote,
            local: flow.local,
            failed: true,
        })
        .await;
}

/// A binding as stored.
pub(crate) fn binding_row(b: &b2bua::Binding) -> storage::registrations::Row {
    storage::registrations::Row {
        agent: b.agent.clone(),
        contact: b.contact.clone(),
        transport: b.flow.transport.as_str().to_ascii_lowercase(),
        local: b.flow.local.to_string(),
        remote: b.flow.remote.to_string(),
        expires: b.expires,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        user_agent: b.user_agent.clone(),
        path: b.path.clone(),
    }
}

/// A stored binding back (`None`: a row this version cannot read).
pub fn binding_from_row(r: storage::registrations::Row) -> Option<b2bua::Binding> {
    let transport = Transport::from_name(&r.transport)?;
    Some(b2bua::Binding {
        agent: r.agent,
        contact: r.contact,
        flow: Flow {
            transport,
            local: r.local.parse().ok()?,
            remote: r.remote.parse().ok()?,
        },
        expires: r.expires,
        call_id: r.call_id,
        cseq: r.cseq,
        user_agent: r.user_agent,
        path: r.path,
    })
}
