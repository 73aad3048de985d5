//! The back-to-back user agent: each incoming INVITE from a trunk becomes a [`Call`]
//! with two legs. A faces the caller, B the callee (a static route target or a queue
//! agent). Transactions stay independent per leg; the call relays provisional and
//! final responses, ACKs, BYEs, CANCELs, re-INVITEs and INFO between the legs, and
//! rewrites every SDP so media flows through the edge's RTP ports.
//!
//! Sans-IO like the [`Endpoint`] it owns. Drive it in this order:
//! 1. input: [`B2bua::handle_datagram`], [`B2bua::handle_timeout`], or a command
//!    ([`B2bua::hangup`], [`B2bua::reload`], [`B2bua::media_failed`]);
//! 2. drain [`B2bua::poll_output`] (media open/update/close, call ended) — before
//!    transmitting, so RTP sockets exist when the SDP naming them leaves;
//! 3. drain [`B2bua::poll_transmit`];
//! 4. sleep until [`B2bua::poll_timeout`].

pub mod acd;
mod call;
mod command;
mod monitor;
mod reinvite;
mod teardown;
#[cfg(test)]
mod tests;

pub use call::{Call, CallState, Route, Side};
pub use command::{CallCommand, Reply};
use monitor::Monitor;
pub use monitor::{
    mode_for_digit, mode_str, parse_mode, CommandError, DigitEvent, DigitFrom, MonitorInfo,
    MonitorMode,
};

use crate::acd::Acd;
use call::{BLeg, Reinvite};
use control::{Destination, Snapshot};
use media::PortPool;
pub use media::{Command, MonitorId};
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response};
use sip::dialog::Dialog;
use sip::endpoint::{Endpoint, Event, Transmit};
use sip::message::{self, Head};
use sip::sdp::Sdp;
use sip::{Flow, Transport, TxId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How long a static-route callee may ring before the edge gives up (like a proxy's
/// timer C).
pub const NO_ANSWER_TIMEOUT: Duration = Duration::from_secs(180);
/// How often waiting queue calls are re-offered when every agent was tried.
pub const QUEUE_RETRY: Duration = Duration::from_secs(1);
/// Longest the customer waits for an announcement the media never reports as played.
pub const ANNOUNCEMENT_LIMIT: Duration = Duration::from_secs(60);
/// Retry-After sent with 503 on overload.
pub const RETRY_AFTER_SECS: u32 = 5;

/// A call's identity inside the edge (its `public_id` is what the API and logs show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the driver must do or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A command for the call's media (relay, monitors, recording, DTMF,
    /// announcement, hold, beep): the one media command set, defined in `media`.
    Media(CallId, Command),
    /// The call is answered and its queue/route records: start the stereo recording.
    RecordStart { call: CallId, meta: RecordingMeta },
    /// A call ended (for logs and metrics).
    CallEnded {
        call: CallId,
        public_id: String,
        outcome: u16,
        answered: bool,
        reason: &'static str,
    },
}

/// What a recording's metadata says about its call (the driver adds wall-clock times,
/// paused spans and the checksum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingMeta {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub queue: Option<String>,
    pub route: Option<String>,
    pub agent: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum ServerRole {
    Initial,
    Reinvite,
    /// An in-dialog request relayed to the other side on client tx `.0`.
    Relayed,
}

#[derive(Debug, Clone, Copy)]
enum ClientRole {
    /// The B leg INVITE of attempt `.0`.
    Initial(u32),
    Reinvite,
    /// Relays the response to server tx `.0` on the other side.
    Relay(TxId),
    /// BYE or CANCEL while ending.
    Ending,
    /// The INVITE to a supervisor's phone (the id is the monitor's).
    Monitor,
    /// BYE or CANCEL towards a supervisor's phone.
    MonitorEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Queue call waited max_wait.
    MaxWait(u64),
    /// Agent attempt `.1` rang too long.
    Ring(u64, u32),
    /// Static-route callee did not answer.
    NoAnswer(u64, u32),
    /// Re-offer waiting queue calls.
    QueueRetry,
    /// The announcement of call `.0` should have ended by now.
    Announcement(u64),
}

/// Counters for metrics.
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    pub started: u64,
    pub answered: u64,
    /// Ended calls by final status sent to the caller (200 for answered calls).
    pub ended_by_status: HashMap<u16, u64>,
    pub rejected_overload: u64,
}

/// A call as listed by the API.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub id: String,
    pub state: &'static str,
    pub caller: String,
    pub callee: String,
    pub route: Option<String>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    /// Seconds since the call started.
    pub age_secs: f64,
    pub monitors: Vec<MonitorInfo>,
    /// `None`: not recorded; `Some(true)`: paused.
    pub recording_paused: Option<bool>,
    pub digits: Vec<DigitEvent>,
    /// Sides on hold (index: `Side as usize`).
    pub held: [bool; 2],
}

pub struct B2bua {
    ep: Endpoint,
    snap: Arc<Snapshot>,
    calls: HashMap<u64, Call>,
    by_public: HashMap<String, u64>,
    server_tx: HashMap<TxId, (u64, ServerRole)>,
    client_tx: HashMap<TxId, (u64, ClientRole)>,
    /// Requests waiting for the other side's answer (relayed INFO, re-INVITE).
    pending_relay: HashMap<TxId, Request>,
    dialogs: HashMap<(String, String), (u64, Side)>,
    acd: Acd,
    waiting: VecDeque<u64>,
    ports: PortPool,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    outputs: VecDeque<Output>,
    next_call: u64,
    monitors: HashMap<u64, Monitor>,
    monitor_dialogs: HashMap<(String, String), u64>,
    pub stats: CallStats,
}

fn contact_for(flow: Flow) -> String {
    match flow.transport {
        Transport::Udp => format!("<sip:edge@{}>", flow.local),
        Transport::Tcp => format!("<sip:edge@{};transport=tcp>", flow.local),
    }
}

fn header<'a>(req: &'a Request, pick: fn(&'a Header) -> Option<&'a str>) -> Option<&'a str> {
    req.headers.iter().find_map(pick)
}

fn content_type(headers: &rsip::Headers) -> Option<String> {
    headers.iter().find_map(|h| match h {
        Header::ContentType(c) => Some(c.value().to_string()),
        _ => None,
    })
}

fn is_sdp(headers: &rsip::Headers, body: &[u8]) -> bool {
    !body.is_empty()
        && content_type(headers)
            .is_none_or(|c| c.to_ascii_lowercase().starts_with("application/sdp"))
}

/// Map a failure from the callee to what the caller gets (§16.7-style choice for a
/// B2BUA): auth challenges and redirects are not passed on.
fn map_failure(code: u16) -> u16 {
    match code {
        300..=399 => 480,
        401 | 407 => 503,
        481 => 480,
        c => c,
    }
}

impl B2bua {
    pub fn new(snap: Arc<Snapshot>, seed: u64, now: Instant) -> Self {
        let c = &snap.config;
        let ports = PortPool::new(c.media.rtp_ports.first, c.media.rtp_ports.last);
        let mut acd = Acd::new();
        acd.sync(c.agents.iter().map(|a| a.id.as_str()), now);
        B2bua {
            ep: Endpoint::new(c.sip.user_agent.clone(), seed),
            snap,
            calls: HashMap::new(),
            by_public: HashMap::new(),
            server_tx: HashMap::new(),
            client_tx: HashMap::new(),
            pending_relay: HashMap::new(),
            dialogs: HashMap::new(),
            acd,
            waiting: VecDeque::new(),
            ports,
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            next_call: 1,
            monitors: HashMap::new(),
            monitor_dialogs: HashMap::new(),
            stats: CallStats::default(),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Entries in the call indexes (dialogs, server/client transactions, relayed
    /// requests, waiting calls): all zero when no call is up. For leak checks.
    pub fn index_sizes(&self) -> [usize; 5] {
        [
            self.dialogs.len(),
            self.server_tx.len(),
            self.client_tx.len(),
            self.pending_relay.len(),
            self.waiting.len(),
        ]
    }

    pub fn ports_in_use(&self) -> usize {
        self.ports.in_use()
    }

    pub fn ports_capacity(&self) -> usize {
        self.ports.capacity()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ep.poll_transmit()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mine = self.timers.peek().map(|Reverse((t, _))| *t);
        match (mine, self.ep.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Swap in a new validated configuration. Calls in progress keep their route.
    pub fn reload(&mut self, snap: Arc<Snapshot>, now: Instant) {
        self.acd
            .sync(snap.config.agents.iter().map(|a| a.id.as_str()), now);
        self.snap = snap;
        self.dispatch_queues(now);
    }

    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.ep.handle_datagram(now, flow, data);
        self.process(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        while let Some(Reverse((t, timer))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            self.on_timer(now, timer);
        }
        self.process(now);
    }

    /// The calls, for the API.
    pub fn calls(&self, now: Instant) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self
            .calls
            .values()
            .map(|c| CallInfo {
                id: c.public_id.clone(),
                state: c.state.as_str(),
                caller: c.caller.clone(),
                callee: c.callee.clone(),
                route: match &c.route {
                    Route::Static { number, .. } => Some(number.clone()),
                    Route::Queue { .. } => None,
                },
                queue: match &c.route {
                    Route::Queue { name } => Some(name.clone()),
                    Route::Static { .. } => None,
                },
                agent: c.agent.clone(),
                age_secs: now.saturating_duration_since(c.started).as_secs_f64(),
                monitors: self.monitor_infos(c.id),
                recording_paused: c.recording,
                digits: c.digits.clone(),
                held: c.held,
            })
            .collect();
        v.sort_by(|a, b| b.age_secs.total_cmp(&a.age_secs));
        v
    }

    /// End a call (admin): BYE to established legs, CANCEL/480 otherwise.
    pub fn hangup(&mut self, now: Instant, public_id: &str) -> bool {
        let Some(id) = self.by_public.get(public_id).copied() else {
            return false;
        };
        self.end_call(now, id, 480, "admin");
        self.process(now);
        true
    }

    /// The driver could not open the call's RTP sockets.
    pub fn media_failed(&mut self, now: Instant, call: u64) {
        if self.calls.contains_key(&call) {
            self.end_call(now, call, 503, "media ports unavailable");
            self.process(now);
        }
    }

    // ---- event loop ------------------------------------------------------------

    /// The tracing span of call `id`: every log line of its handling carries the
    /// call's public id (`EDGE_LOG=debug` shows one call's story by grepping it).
    fn span(&self, id: u64) -> tracing::Span {
        match self.calls.get(&id) {
            Some(c) => tracing::info_span!("call", call = %c.public_id),
            None => tracing::Span::none(),
        }
    }

    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Request {
                    tx,
                    request,
                    head,
                    flow,
                } => self.on_request(now, tx, request, head, flow),
                Event::Cancelled { invite } => self.on_cancelled(now, invite),
                Event::Ack {
                    request,
                    head,
                    flow,
                } => self.on_ack(now, request, head, flow),
                Event::Response { tx, response, head } => self.on_response(now, tx, response, head),
                Event::StrayResponse {
                    response,
                    head,
                    flow,
                } => self.on_stray(now, response, head, flow),
                Event::Timeout { tx } => self.on_tx_timeout(now, tx),
                Event::AckTimeout { call_id, cseq } => {
                    let found = self
                        .calls
                        .values()
                        .find(|c| c.a.call_id == call_id)
                        .map(|c| c.id);
                    if let Some(id) = found {
                        warn!(call = %self.calls[&id].public_id, cseq, "caller never ACKed our 2xx; ending call");
                        self.end_call(now, id, 200, "no ACK from caller");
                    }
                }
                Event::Malformed { flow, error } => {
                    debug!(remote = %flow.remote, %error, "malformed SIP message");
                }
            }
        }
    }

    fn reply(&mut self, now: Instant, tx: TxId, req: &Request, code: u16, to_tag: Option<&str>) {
        let r = message::response(req, code, to_tag, self.ep.server_name());
        self.ep.respond(now, tx, r);
    }

    fn reply_with(&mut self, now: Instant, tx: TxId, req: &Request, code: u16, extra: Vec<Header>) {
        let mut r = message::response(req, code, None, self.ep.server_name());
        let mut h: Vec<Header> = std::mem::take(&mut r.headers).into_iter().collect();
        let len = h.len();
        h.splice(len - 1..len - 1, extra);
        r.headers = h.into();
        self.ep.respond(now, tx, r);
    }

    fn on_request(&mut self, now: Instant, tx: TxId, req: Request, head: Head, flow: Flow) {
        if let Some(to_tag) = head.to_tag.clone() {
            if let Some(mid) = self
                .monitor_dialogs
                .get(&(head.call_id.clone(), to_tag.clone()))
                .copied()
            {
                return self.on_monitor_request(now, mid, tx, req);
            }
            return self.on_in_dialog(now, tx, req, head, to_tag);
        }
        match req.method {
            Method::Invite => self.on_invite(now, tx, req, head, flow),
            Method::Options => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                let accept = rsip::headers::Accept::new("application/sdp").into();
                self.reply_with(now, tx, &req, 200, vec![allow, accept]);
            }
            Method::Bye | Method::Info | Method::Update | Method::PRack => {
                self.reply(now, tx, &req, 481, None)
            }
            _ => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                self.reply_with(now, tx, &req, 405, vec![allow]);
            }
        }
    }

    // ---- new calls ---------------------------------------------------------------

    fn on_invite(&mut self, now: Instant, tx: TxId, req: Request, head: Head, flow: Flow) {
        if head.max_forwards == 0 {
            return self.reply(now, tx, &req, 483, None);
        }
        let Some(trunk) = self.snap.trunk_for(flow.remote.ip()).map(str::to_string) else {
            info!(source = %flow.remote, call_id = %head.call_id, "INVITE from a source that is no trunk: 403");
            return self.reply(now, tx, &req, 403, None);
        };
        if let Some(req_opt) = header(&req, |h| match h {
            Header::Require(r) => Some(r.value()),
            _ => None,
        }) {
            let unsupported: Vec<&str> = req_opt
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty() && *o != "timer")
                .collect();
            if !unsupported.is_empty() {
                let h = rsip::headers::Unsupported::new(unsupported.join(", ")).into();
                return self.reply_with(now, tx, &req, 420, vec![h]);
            }
        }
        if self.calls.len() >= self.snap.config.sip.max_calls {
            self.stats.rejected_overload += 1;
            let h = rsip::headers::RetryAfter::new(RETRY_AFTER_SECS.to_string()).into();
            return self.reply_with(now, tx, &req, 503, vec![h]);
        }
        let number = req.uri.user().unwrap_or("").to_string();
        let route = match self.snap.destination(&number) {
            Some(Destination::Route(r)) => Route::Static {
                number: r.number.clone(),
                target: r.target.clone(),
            },
            Some(Destination::Queue(q)) => Route::Queue {
                name: q.name.clone(),
            },
            None => {
                info!(call_id = %head.call_id, %number, "no route or queue for number: 404");
                return self.reply(now, tx, &req, 404, None);
            }
        };
        let a_sdp = if is_sdp(&req.headers, &req.body) {
            match Sdp::parse(&req.body).and_then(|s| s.audio_target().map(|_| s)) {
                Ok(s) => Some(s),
                Err(e) => {
                    info!(call_id = %head.call_id, error = %e, "unusable SDP offer: 488");
                    let w = rsip::headers::Warning::new(format!("399 edge \"{e}\"")).into();
                    return self.reply_with(now, tx, &req, 488, vec![w]);
                }
            }
        } else if !req.body.is_empty() {
            let h = rsip::headers::Accept::new("application/sdp").into();
            return self.reply_with(now, tx, &req, 415, vec![h]);
        } else {
            None
        };
        let a_te = a_sdp.as_ref().and_then(|s| s.telephone_event_pt());
        let Some((a_port, b_port)) = self.allocate_ports() else {
            warn!(call_id = %head.call_id, "RTP port pool exhausted: 503");
            self.stats.rejected_overload += 1;
            let h = rsip::headers::RetryAfter::new(RETRY_AFTER_SECS.to_string()).into();
            return self.reply_with(now, tx, &req, 503, vec![h]);
        };
        let id = self.next_call;
        self.next_call += 1;
        let public_id = format!("{:016x}", self.ep.ids().next_u64());
        let local_tag = self.ep.ids().token();
        let a = Dialog::uas(&req, &head, local_tag.clone(), flow, contact_for(flow));
        let caller = header(&req, |h| match h {
            Header::From(f) => Some(f.value()),
            _ => None,
        })
        .map(|v| message::uri_of(v).to_string())
        .unwrap_or_default();
        let _span = tracing::info_span!("call", call = %public_id).entered();
        info!(call_id = %head.call_id, %trunk, %caller, callee = %number, "new call");
        let call = Call {
            id,
            public_id: public_id.clone(),
            state: CallState::Queued,
            caller,
            callee: number,
            route: route.clone(),
            agent: None,
            started: now,
            answered: None,
            a_tx: Some(tx),
            a_invite: req,
            a,
            a_sdp,
            b: None,
            stale: Vec::new(),
            a_port,
            b_port,
            reinvite: None,
            b_ack_waits_for_a: None,
            tried: HashSet::new(),
            attempts: 0,
            wait_deadline: None,
            open_ending: 0,
            outcome: None,
            end_reason: "",
            remote: [None, None],
            te_pt: [a_te, None],
            client_txs: Vec::new(),
            server_txs: vec![tx],
            recording: None,
            digits: Vec::new(),
            held: [false, false],
            pending_answer: None,
        };
        self.stats.started += 1;
        self.dialogs
            .insert((head.call_id.clone(), local_tag), (id, Side::A));
        self.by_public.insert(public_id, id);
        self.server_tx.insert(tx, (id, ServerRole::Initial));
        let a_addr = call
            .a_sdp
            .as_ref()
            .and_then(|s| s.audio_target().ok().flatten());
        self.calls.insert(id, call);
        self.outputs
            .push_back(Output::Media(CallId(id), Command::Open { a_port, b_port }));
        self.set_remote(id, Side::A, a_addr);
        match route {
            Route::Static { target, .. } => {
                let number = self.calls[&id].callee.clone();
                let uri = Self::target_uri(&target, &number);
                self.start_b(now, id, uri, target.addr, target.transport, None);
            }
            Route::Queue { name } => {
                let max_wait = self
                    .snap
                    .queue(&name)
                    .map(|q| q.max_wait)
                    .unwrap_or(Duration::from_secs(60));
                let c = self.calls.get_mut(&id).expect("just inserted");
                c.wait_deadline = Some(now + max_wait);
                self.timers
                    .push(Reverse((now + max_wait, Timer::MaxWait(id))));
                // Ringback while the caller waits.
                self.send_a_provisional(now, id, 180, None);
                self.waiting.push_back(id);
                self.dispatch_queues(now);
            }
        }
    }

    /// Two RTP/RTCP pairs: one facing the caller, one facing the callee.
    fn allocate_ports(&mut self) -> Option<(u16, u16)> {
        let a = self.ports.allocate()?;
        match self.ports.allocate() {
            Some(b) => Some((a, b)),
            None => {
                self.ports.release(a);
                None
            }
        }
    }

    /// The Request-URI for a static route target: the target as written, with the
    /// dialled number as user part when the target has none.
    fn target_uri(target: &control::SipTarget, number: &str) -> String {
        match (&target.user, target.uri.strip_prefix("sip:")) {
            (None, Some(rest)) if !number.is_empty() => format!("sip:{number}@{rest}"),
            _ => target.uri.clone(),
        }
    }

    fn local_flow(&self, transport: Transport, remote: SocketAddr) -> Option<Flow> {
        let l = self
            .snap
            .config
            .sip
            .listen
            .iter()
            .find(|l| l.transport == transport && l.addr.is_ipv4() == remote.is_ipv4())?;
        Some(Flow {
            transport,
            local: l.addr,
            remote,
        })
    }

    /// Send the B leg INVITE of a new attempt.
    fn start_b(
        &mut self,
        now: Instant,
        id: u64,
        uri: String,
        addr: SocketAddr,
        transport: Transport,
        agent: Option<String>,
    ) {
        let Some(flow) = self.local_flow(transport, addr) else {
            warn!(%addr, %transport, "no listen address for this transport/family: cannot reach callee");
            return self.fail_attempt(now, id, 503);
        };
        let call_id = format!("{}@edge", self.ep.ids().token());
        let tag = self.ep.ids().token();
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.attempts += 1;
        let attempt = c.attempts;
        let from = c.a_invite.headers.iter().find_map(|h| match h {
            Header::From(f) => Some(sip::dialog::strip_tag(f.value())),
            _ => None,
        });
        let local_uri = from.unwrap_or_else(|| "<sip:anonymous@anonymous.invalid>".into());
        let remote_uri = format!("<{uri}>");
        let mut dialog = Dialog::uac(
            call_id.clone(),
            tag.clone(),
            local_uri,
            remote_uri,
            uri.clone(),
            flow,
            contact_for(flow),
        );
        let body = c
            .a_sdp
            .as_ref()
            .map(|s| s.rewrite(self.snap.config.media.address, c.b_port));
        let mut req = dialog.request(
            Method::Invite,
            body.as_deref().map(|b| (b.as_bytes(), "application/sdp")),
            &user_agent,
        );
        // Max-Forwards carries on from the caller's request (loop protection).
        let mf = c.a_invite.headers.iter().find_map(|h| match h {
            Header::MaxForwards(m) => m.value().trim().parse::<u32>().ok(),
            _ => None,
        });
        let mf = mf.unwrap_or(70).saturating_sub(1);
        req.headers.iter_mut().for_each(|h| {
            if let Header::MaxForwards(m) = h {
                m.replace(mf.to_string());
            }
        });
        req.headers
            .push(rsip::headers::Allow::new(message::ALLOW).into());
        let agent_for_log = agent.clone();
        let tx = self.ep.send_request(now, req, flow);
        let c = self.calls.get_mut(&id).expect("present");
        if let Some(old) = c.b.take() {
            c.stale.push(old);
        }
        c.b = Some(BLeg {
            dialog,
            tx: Some(tx),
            provisional: false,
            cancel_pending: false,
            agent,
            attempt,
        });
        c.state = CallState::Calling;
        debug!(call = %c.public_id, %uri, agent = ?agent_for_log, attempt, "calling callee");
        c.client_txs.push(tx);
        self.client_tx
            .insert(tx, (id, ClientRole::Initial(attempt)));
        self.dialogs.insert((call_id, tag), (id, Side::B));
        self.outputs.push_back(Output::Media(
            CallId(id),
            Command::Remote {
                side: Side::B,
                addr: None,
            },
        ));
        let deadline = match &c.route {
            Route::Queue { .. } => Timer::Ring(id, attempt),
            Route::Static { .. } => Timer::NoAnswer(id, attempt),
        };
        let after = match deadline {
            Timer::Ring(..) => self.snap.config.sip.agent_ring_timeout,
            _ => NO_ANSWER_TIMEOUT,
        };
        self.timers.push(Reverse((now + after, deadline)));
    }

    /// Offer waiting queue calls to free agents, oldest call first.
    fn dispatch_queues(&mut self, now: Instant) {
        let mut still_waiting = VecDeque::new();
        let mut any_round_exhausted = false;
        while let Some(id) = self.waiting.pop_front() {
            let Some(c) = self.calls.get(&id) else {
                continue;
            };
            if c.state != CallState::Queued || c.a_tx.is_none() {
                continue;
            }
            let Route::Queue { name } = &c.route else {
                continue;
            };
            let Some(q) = self.snap.queue(name) else {
                still_waiting.push_back(id);
                continue;
            };
            let agents = q.agents.clone();
            let pick = self.acd.pick(&agents, &c.tried).map(str::to_string);
            match pick {
                Some(agent_id) => {
                    let Some(agent) = self.snap.agent(&agent_id).cloned() else {
                        still_waiting.push_back(id);
                        continue;
                    };
                    self.acd.seize(&agent_id);
                    let c = self.calls.get_mut(&id).expect("present");
                    c.tried.insert(agent_id.clone());
                    c.agent = Some(agent_id.clone());
                    info!(call = %c.public_id, agent = %agent_id, "offering call to agent");
                    self.start_b(
                        now,
                        id,
                        agent.contact.uri.clone(),
                        agent.contact.addr,
                        agent.contact.transport,
                        Some(agent_id),
                    );
                }
                None => {
                    if agents.iter().all(|a| c.tried.contains(a)) {
                        any_round_exhausted = true;
                    }
                    still_waiting.push_back(id);
                }
            }
        }
        self.waiting = still_waiting;
        if any_round_exhausted {
            self.timers
                .push(Reverse((now + QUEUE_RETRY, Timer::QueueRetry)));
        }
    }

    // ---- responses towards A -----------------------------------------------------

    fn send_a_provisional(&mut self, now: Instant, id: u64, code: u16, sdp: Option<String>) {
        let Some(c) = self.calls.get(&id) else { return };
        let Some(tx) = c.a_tx else { return };
        let mut r = message::response(
            &c.a_invite,
            code,
            Some(&c.a.local_tag),
            self.ep.server_name(),
        );
        r.headers
            .push(rsip::headers::Contact::new(c.a.local_contact.clone()).into());
        if let Some(s) = sdp {
            r.body = message::set_body(&mut r.headers, s.as_bytes(), Some("application/sdp"));
        }
        self.ep.respond(now, tx, r);
    }

    fn send_a_final(&mut self, now: Instant, id: u64, code: u16, sdp: Option<String>) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(tx) = c.a_tx.take() else { return };
        c.outcome = Some(code);
        self.server_tx.remove(&tx);
        let mut r = message::response(
            &c.a_invite,
            code,
            Some(&c.a.local_tag),
            self.ep.server_name(),
        );
        if (200..300).contains(&code) {
            r.headers
                .push(rsip::headers::Contact::new(c.a.local_contact.clone()).into());
            r.headers
                .push(rsip::headers::Allow::new(message::ALLOW).into());
        }
        if let Some(s) = sdp {
            r.body = message::set_body(&mut r.headers, s.as_bytes(), Some("application/sdp"));
        }
        if code == 503 {
            r.headers
                .push(rsip::headers::RetryAfter::new(RETRY_AFTER_SECS.to_string()).into());
        }
        self.ep.respond(now, tx, r);
    }

    // ---- responses from B --------------------------------------------------------

    fn on_response(&mut self, now: Instant, tx: TxId, resp: Response, head: Head) {
        let code = resp.status_code.code();
        let Some((id, role)) = self.client_tx.get(&tx).copied() else {
            return;
        };
        let _span = self.span(id).entered();
        if code >= 200 && !(role_is_invite(role) && (200..300).contains(&code)) {
            self.client_tx.remove(&tx);
        }
        match role {
            ClientRole::Initial(attempt) => {
                self.on_b_invite_response(now, id, tx, attempt, resp, head)
            }
            ClientRole::Reinvite => self.on_reinvite_response(now, id, tx, resp, head),
            ClientRole::Relay(server) => self.relay_response(now, id, server, &resp),
            ClientRole::Ending => {
                if code >= 200 {
                    self.ending_done(now, id);
                }
            }
            ClientRole::Monitor => self.on_monitor_response(now, id, tx, resp, head),
            ClientRole::MonitorEnd => {
                if code >= 200 {
                    self.on_monitor_end_done(id);
                }
            }
        }
    }

    fn on_b_invite_response(
        &mut self,
        now: Instant,
        id: u64,
        tx: TxId,
        attempt: u32,
        resp: Response,
        head: Head,
    ) {
        let code = resp.status_code.code();
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let current =
            c.b.as_ref().is_some_and(|b| b.attempt == attempt) && c.state != CallState::Ending;
        if !current {
            // A stale attempt (cancelled, superseded, or the call is ending).
            if (101..200).contains(&code) {
                let leg = c
                    .stale
                    .iter_mut()
                    .chain(c.b.as_mut())
                    .find(|b| b.attempt == attempt);
                if let Some(leg) = leg.filter(|l| l.cancel_pending) {
                    leg.cancel_pending = false;
                    leg.provisional = true;
                    send_cancel(&mut self.ep, &mut self.client_tx, c, tx, now);
                }
                return;
            }
            if (200..300).contains(&code) {
                let leg = c
                    .stale
                    .iter_mut()
                    .chain(c.b.as_mut())
                    .find(|b| b.attempt == attempt);
                if let Some(leg) = leg {
                    leg.dialog.on_response(&resp, &head);
                    ack_2xx(&mut self.ep, &leg.dialog, head.cseq, None, &user_agent);
                    let flow = leg.dialog.flow;
                    let bye = leg.dialog.request(Method::Bye, None, &user_agent);
                    let t = self.ep.send_request(now, bye, flow);
                    c.open_ending += 1;
                    c.client_txs.push(t);
                    self.client_tx.insert(t, (id, ClientRole::Ending));
                    info!(call = %c.public_id, attempt, "late 2xx of a cancelled attempt: ACK + BYE");
                }
            }
            if code >= 200 {
                if let Some(b) = c.b.as_mut().filter(|b| b.attempt == attempt) {
                    b.tx = None;
                }
                let dialogs = &mut self.dialogs;
                c.stale.retain(|b| {
                    let keep = b.attempt != attempt || (200..300).contains(&code);
                    if !keep {
                        dialogs.remove(&(b.dialog.call_id.clone(), b.dialog.local_tag.clone()));
                    }
                    keep
                });
                self.maybe_finish(now, id);
            }
            return;
        }
        let b = c.b.as_mut().expect("current attempt");
        if code == 100 {
            return;
        }
        if code < 200 {
            b.provisional = true;
            if head.to_tag.is_some() {
                b.dialog.on_response(&resp, &head);
            }
            if b.cancel_pending {
                b.cancel_pending = false;
                send_cancel(&mut self.ep, &mut self.client_tx, c, tx, now);
                return;
            }
            c.state = CallState::Early;
            let sdp = if is_sdp(&resp.headers, &resp.body) {
                Sdp::parse(&resp.body).ok()
            } else {
                None
            };
            let rewritten = sdp.as_ref().map(|s| s.rewrite(media_addr, c.a_port));
            if let Some(s) = &sdp {
                let addr = s.audio_target().ok().flatten();
                c.remote[1] = addr;
                self.outputs.push_back(Output::Media(
                    CallId(id),
                    Command::Remote {
                        side: Side::B,
                        addr,
                    },
                ));
            }
            // Queue calls already sent 180 for ringback; relay 183 (early media) always,
            // 180 for static routes.
            let relay = matches!(c.route, Route::Static { .. }) || rewritten.is_some();
            if relay {
                self.send_a_provisional(now, id, code, rewritten);
            }
            return;
        }
        if code < 300 && b.tx.is_none() {
            // A retransmitted 2xx: our ACK was lost. ACK again (unless it waits for A).
            if c.b_ack_waits_for_a.is_none() {
                ack_2xx(&mut self.ep, &b.dialog, head.cseq, None, &user_agent);
            }
            return;
        }
        if code < 300 {
            b.tx = None;
            b.dialog.on_response(&resp, &head);
            let sdp = if is_sdp(&resp.headers, &resp.body) {
                Sdp::parse(&resp.body).ok()
            } else {
                None
            };
            let agent = b.agent.clone();
            if c.a_sdp.is_some() {
                // Normal offer/answer: ACK B at once.
                ack_2xx(&mut self.ep, &b.dialog, head.cseq, None, &user_agent);
            } else {
                // Late offer: B's 2xx holds the offer, A's ACK will hold the answer.
                c.b_ack_waits_for_a = Some((head.cseq, Side::B));
            }
            let Some(sdp) = sdp else {
                warn!(call = %c.public_id, "callee answered without SDP: ending call");
                return self.end_call(now, id, 488, "answer without SDP");
            };
            let addr = sdp.audio_target().ok().flatten();
            c.remote[1] = addr;
            c.te_pt[1] = sdp.telephone_event_pt();
            self.outputs.push_back(Output::Media(
                CallId(id),
                Command::Remote {
                    side: Side::B,
                    addr,
                },
            ));
            let rewritten = sdp.rewrite(media_addr, c.a_port);
            c.agent = agent.or(c.agent.take());
            if let Some(p) = self.waiting.iter().position(|w| *w == id) {
                self.waiting.remove(p);
            }
            let (queue, route) = c.route_names();
            let settings = self.snap.call_settings(queue.as_deref(), route.as_deref());
            if let Some(file) = settings.announcement {
                if c.b_ack_waits_for_a.is_none() {
                    // The agent hears the announcement first; A keeps hearing ringback.
                    c.state = CallState::Announcing;
                    c.pending_answer = Some(rewritten);
                    let pt = sdp.first_g711_pt().unwrap_or(0);
                    info!(call = %c.public_id, agent = ?c.agent, "agent answered: announcement");
                    self.outputs.push_back(Output::Media(
                        CallId(id),
                        Command::Announce {
                            file: file.to_path_buf(),
                            pt,
                        },
                    ));
                    self.timers
                        .push(Reverse((now + ANNOUNCEMENT_LIMIT, Timer::Announcement(id))));
                    return;
                }
                // A late offer: B's ACK needs A's answer, so A must be answered now.
                warn!(call = %c.public_id, "late-offer call: announcement skipped");
            }
            self.connect_a(now, id, rewritten);
            return;
        }
        // Failure of the current attempt.
        b.tx = None;
        debug!(call = %c.public_id, code, "callee failed");
        self.fail_attempt(now, id, code);
    }

    /// The agent answered (and heard any announcement): answer the caller.
    fn connect_a(&mut self, now: Instant, id: u64, answer: String) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.state = CallState::Answered;
        c.answered = Some(now);
        self.stats.answered += 1;
        info!(call = %c.public_id, agent = ?c.agent, "answered");
        let (queue, route) = c.route_names();
        if self
            .snap
            .call_settings(queue.as_deref(), route.as_deref())
            .record
        {
            c.recording = Some(false);
            self.outputs.push_back(Output::RecordStart {
                call: CallId(id),
                meta: RecordingMeta {
                    call_id: c.public_id.clone(),
                    caller: c.caller.clone(),
                    callee: c.callee.clone(),
                    queue,
                    route,
                    agent: c.agent.clone(),
                },
            });
        }
        self.send_a_final(now, id, 200, Some(answer));
    }

    /// The media driver played call `call`'s announcement to its end (or the safety
    /// timer fired): connect the caller.
    pub fn announcement_done(&mut self, now: Instant, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state != CallState::Announcing {
            return;
        }
        let Some(answer) = c.pending_answer.take() else {
            return;
        };
        debug!(call = %c.public_id, "announcement over");
        self.connect_a(now, call, answer);
    }

    /// The current B attempt failed with `code`: try the next agent, or fail the call.
    fn fail_attempt(&mut self, now: Instant, id: u64, code: u16) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let agent = c.b.as_ref().and_then(|b| b.agent.clone());
        if let Some(old) = c.b.take() {
            if old.tx.is_some() {
                c.stale.push(old);
            } else {
                self.dialogs
                    .remove(&(old.dialog.call_id, old.dialog.local_tag));
            }
        }
        match (&c.route, agent) {
            (Route::Queue { .. }, Some(agent)) if c.a_tx.is_some() => {
                self.acd.release(&agent, now, false);
                c.state = CallState::Queued;
                c.agent = None;
                self.waiting.push_back(id);
                self.dispatch_queues(now);
            }
            _ => {
                self.send_a_final(now, id, map_failure(code), None);
                self.finish_or_wait(now, id, "callee failed");
            }
        }
    }

    // ---- CANCEL, ACK, BYE and other in-dialog requests ---------------------------

    fn on_cancelled(&mut self, now: Instant, invite: TxId) {
        let Some((id, ServerRole::Initial)) = self.server_tx.get(&invite).copied() else {
            return;
        };
        info!(call = %self.calls.get(&id).map(|c| c.public_id.as_str()).unwrap_or("?"), "caller cancelled");
        self.send_a_final(now, id, 487, None);
        self.end_call(now, id, 487, "caller cancelled");
    }

    fn on_ack(&mut self, _now: Instant, req: Request, head: Head, _flow: Flow) {
        let Some(tag) = head.to_tag.clone() else {
            return;
        };
        let Some((id, side)) = self.dialogs.get(&(head.call_id.clone(), tag)).copied() else {
            return;
        };
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if side == Side::A && c.state == CallState::Answered {
            c.state = CallState::Connected;
        }
        // Forward the answer in the ACK when our ACK to the other side waited for it.
        if let Some((cseq, waiting_side)) = c.b_ack_waits_for_a {
            if waiting_side == side.other() {
                c.b_ack_waits_for_a = None;
                let sdp = if is_sdp(&req.headers, &req.body) {
                    Sdp::parse(&req.body).ok()
                } else {
                    None
                };
                if let Some(s) = &sdp {
                    let addr = s.audio_target().ok().flatten();
                    c.remote[side as usize] = addr;
                    self.outputs
                        .push_back(Output::Media(CallId(id), Command::Remote { side, addr }));
                }
                let other = side.other();
                let port = c.port(other);
                let body = sdp.map(|s| s.rewrite(media_addr, port));
                if let Some(d) = c.dialog(other) {
                    ack_2xx(&mut self.ep, d, cseq, body.as_deref(), &user_agent);
                }
            }
        }
    }

    fn on_in_dialog(&mut self, now: Instant, tx: TxId, req: Request, head: Head, to_tag: String) {
        let Some((id, side)) = self.dialogs.get(&(head.call_id.clone(), to_tag)).copied() else {
            return self.reply(now, tx, &req, 481, None);
        };
        let _span = self.span(id).entered();
        let Some(c) = self.calls.get_mut(&id) else {
            return self.reply(now, tx, &req, 481, None);
        };
        let Some(d) = c.dialog_mut(side) else {
            return self.reply(now, tx, &req, 481, None);
        };
        if !d.accept_remote_seq(head.cseq, req.method) {
            return self.reply(now, tx, &req, 500, None);
        }
        match req.method {
            Method::Bye => {
                self.reply(now, tx, &req, 200, None);
                let c = &self.calls[&id];
                info!(call = %c.public_id, from = ?side, "BYE");
                if c.state == CallState::Announcing && side == Side::B {
                    // The agent left before the customer was connected: next agent.
                    let c = self.calls.get_mut(&id).expect("present");
                    c.pending_answer = None;
                    self.outputs
                        .push_back(Output::Media(CallId(id), Command::AnnounceStop));
                    return self.fail_attempt(now, id, 480);
                }
                self.end_call_from(now, id, side, "BYE");
            }
            Method::Invite => self.on_reinvite(now, id, side, tx, req),
            Method::Options => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                self.reply_with(now, tx, &req, 200, vec![allow]);
            }
            Method::Info => self.relay_request(now, id, side, tx, req),
            _ => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                self.reply_with(now, tx, &req, 405, vec![allow]);
            }
        }
    }

    /// Pass an in-dialog non-INVITE request (INFO) to the other side.
    fn relay_request(&mut self, now: Instant, id: u64, side: Side, tx: TxId, req: Request) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let c = self.calls.get_mut(&id).expect("checked");
        let established = c.is_established();
        let Some(d) = c.dialog_mut(side.other()).filter(|_| established) else {
            return self.reply(now, tx, &req, 481, None);
        };
        let ct = content_type(&req.headers);
        let body = (!req.body.is_empty()).then(|| {
            (
                req.body.as_slice(),
                ct.as_deref().unwrap_or("application/octet-stream"),
            )
        });
        let out = d.request(req.method, body, &user_agent);
        let flow = d.flow;
        let ctx = self.ep.send_request(now, out, flow);
        self.client_tx.insert(ctx, (id, ClientRole::Relay(tx)));
        let c = self.calls.get_mut(&id).expect("checked");
        self.server_tx.insert(tx, (id, ServerRole::Relayed));
        c.client_txs.push(ctx);
        c.server_txs.push(tx);
        self.pending_relay.insert(tx, req);
    }

    fn relay_response(&mut self, now: Instant, _id: u64, server: TxId, resp: &Response) {
        let code = resp.status_code.code();
        if code < 200 {
            return;
        }
        self.server_tx.remove(&server);
        if let Some(req) = self.pending_relay.remove(&server) {
            self.reply(now, server, &req, code, None);
        }
    }
}

/// Send the ACK for a 2xx with CSeq `cseq` on `dialog` (again for each
/// retransmitted 2xx).
fn ack_2xx(ep: &mut Endpoint, dialog: &Dialog, cseq: u32, body: Option<&str>, user_agent: &str) {
    let flow = dialog.flow;
    let via = ep.new_via(flow);
    let ack = dialog.ack(
        cseq,
        via,
        body.map(|b| (b.as_bytes(), "application/sdp")),
        user_agent,
    );
    ep.send_ack(&ack, flow);
}

/// CANCEL the client INVITE `tx` of call `c`; the CANCEL is an ending transaction.
fn send_cancel(
    ep: &mut Endpoint,
    index: &mut HashMap<TxId, (u64, ClientRole)>,
    c: &mut Call,
    tx: TxId,
    now: Instant,
) {
    if let Some(t) = ep.cancel(now, tx) {
        index.insert(t, (c.id, ClientRole::Ending));
        c.client_txs.push(t);
        c.open_ending += 1;
    }
}

fn role_is_invite(role: ClientRole) -> bool {
    matches!(
        role,
        ClientRole::Initial(_) | ClientRole::Reinvite | ClientRole::Monitor
    )
}

impl B2bua {
    /// The transport to `flow` failed (TCP connect refused or connection lost).
    pub fn transport_failed(&mut self, now: Instant, flow: Flow) {
        self.ep.transport_failed(now, flow);
        self.process(now);
    }

    /// Snapshot of the configuration in use.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }
}
