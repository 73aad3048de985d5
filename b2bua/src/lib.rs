//! The back-to-back user agent: each incoming INVITE from a trunk becomes a [`Call`]
//! with two legs. A faces the caller, B the callee (a static route target or a queue
//! agent). Transactions stay independent per leg; the call relays provisional and
//! final responses, ACKs, BYEs, CANCELs, re-INVITEs and INFO between the legs, and
//! rewrites every SDP so media flows through the edge's RTP ports.
//!
//! State lives in types that own it: `call::Calls` (calls by id and public id),
//! `index::Index` (transactions and dialogs → the call or supervisor leg they belong
//! to, requests waiting for the other side), `acd::Acd` (free agents and waiting
//! calls), `timers::TimerTable`, and the supervisor legs (`monitor::Monitor`). The
//! behaviour is one file per concept: `invite` (new calls, routing, the B leg), `answer`
//! (responses from the callee's side), `in_dialog` (CANCEL, ACK, BYE, relayed
//! requests), `reinvite`, `hold`, `dtmf`, `announce`, `monitor` (supervisor legs),
//! `recording`, `command` (the API's commands), `timers` (the named timer table) and
//! `teardown` (ending calls, transaction timeouts).
//!
//! Sans-IO like the [`Endpoint`] it owns. Drive it in this order:
//! 1. input: [`B2bua::handle_datagram`], [`B2bua::handle_timeout`], or a command
//!    ([`B2bua::handle_command`], [`B2bua::reload`], [`B2bua::media_failed`],
//!    [`B2bua::media_digit`], [`B2bua::announcement_done`]);
//! 2. drain [`B2bua::poll_output`] (media open/update/close, call ended) — before
//!    transmitting, so RTP sockets exist when the SDP naming them leaves;
//! 3. drain [`B2bua::poll_transmit`];
//! 4. sleep until [`B2bua::poll_timeout`].

pub mod acd;
mod after_hours;
mod agents;
mod announce;
mod answer;
mod call;
mod claims;
mod command;
mod conference;
mod consult;
mod dtmf;
mod hold;
mod hop;
pub use hop::{hop_path, is_hop};
mod in_dialog;
mod index;
mod invite;
mod monitor;
mod outbound;
mod recording;
mod registrar;
mod reinvite;
mod reserved;
mod session;
mod teardown;
#[cfg(test)]
mod tests;
mod timers;
mod transfer;
use timers::TimerTable;

pub use acd::{Choice, Presence, Tally};
pub use agents::{parse_choice, AgentError, AgentInfo};
pub use call::{Call, CallState, Route, Side};
pub use claims::{AgentShare, ClaimResult, CLAIM_LEASE, CLAIM_RECHECK};
pub use command::{CallCommand, Reply};
use monitor::Monitor;
pub use monitor::{
    mode_for_digit, mode_str, parse_mode, CommandError, DigitEvent, DigitFrom, MonitorInfo,
    MonitorMode,
};

use crate::acd::Acd;
use call::Calls;
pub use conference::{Flags as ParticipantFlags, ParticipantEvent, ParticipantInfo};
use control::Snapshot;
use control::Strangers;
use index::{DialogOwner, Index};
pub use media::{CallId, Command, MonitorId};
use media::{PortPool, PortProbe};
pub use registrar::{Binding, BindingInfo};
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request};
use sip::endpoint::{Endpoint, Event, Screen, Transmit};
use sip::message::{self, Head};
use sip::pike::{Pike, PikeConfig, Verdict};
use sip::sdp::Sdp;
use sip::{Flow, TxId};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
pub use transfer::{TransferBy, TransferEvent};

/// How long a static-route callee may ring before the edge gives up (like a proxy's
/// timer C).
pub const NO_ANSWER_TIMEOUT: Duration = Duration::from_secs(180);
/// How often waiting queue calls are re-offered when every agent was tried.
pub const QUEUE_RETRY: Duration = Duration::from_secs(1);
/// Longest the customer waits for an announcement the media never reports as played.
pub const ANNOUNCEMENT_LIMIT: Duration = Duration::from_secs(60);
/// Most RTP port pairs tried for one allocation when the driver finds them taken.
pub const PORT_TRIES: usize = 32;

/// How far ahead of the pool's next pair the probe is told to bind (so the sockets
/// of a new call are usually ready before its INVITE arrives).
pub const PORTS_AHEAD: usize = 64;
const AHEAD_BATCH: usize = 16;
/// Retry-After sent with 503 on overload.
pub const RETRY_AFTER_SECS: u32 = 5;
/// A new INVITE that waited longer than this in the driver's queue before the core
/// read it is refused at once (503 + Retry-After, statelessly): the core is behind,
/// and taking on more calls would delay every call's signalling further.
pub const OVERLOAD_QUEUE_DELAY: Duration = Duration::from_millis(200);

/// What the driver must do or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A command for the call's media (relay, monitors, recording, DTMF,
    /// announcement, hold, beep): the one media command set, defined in `media`.
    Media(CallId, Command),
    /// The call is answered and its queue/route records: start the stereo recording.
    RecordStart { call: CallId, meta: RecordingMeta },
    /// An agent's registrations changed (registered, refreshed, removed,
    /// expired): `bindings` is what it holds now, for the driver to persist.
    Bindings {
        agent: String,
        bindings: Vec<Binding>,
    },
    /// What an agent shows changed (busy, wrap-up, chosen, signed in or out by
    /// its registrations): for the consoles, and to stop or resume the chat offers
    /// of its console `user`.
    AgentState {
        agent: String,
        user: Option<String>,
        state: Presence,
        reason: Option<String>,
    },
    /// A queue call of an agent whose console user is `user`, for its console:
    /// `state` is `ringing` (offered), `connected`, `missed` (the offer rang out or
    /// was refused) or `ended`.
    AgentCall {
        user: String,
        call: String,
        state: &'static str,
        caller: String,
        queue: Option<String>,
        reserved: Vec<(String, String)>,
    },
    /// Cluster mode: claim `agent` for `call` in the cluster's shared state, then
    /// answer with [`B2bua::claim_result`].
    ClaimAgent { call: CallId, agent: String },
    /// Cluster mode: this node no longer holds `agent`.
    ReleaseAgent { agent: String },
    /// Cluster mode: what the agent chose, since when it is idle, its counters
    /// and the end of its wrap-up, for every node. The driver writes it when it
    /// differs from what the cluster already has.
    AgentShared { agent: String, share: AgentShare },
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
    /// Reserved data from the trunk's INVITE (`[[reserved_data]]`), field → value.
    pub reserved: Vec<(String, String)>,
    /// A caller's message left after hours (mono, the caller only).
    pub voicemail: bool,
}

/// Counters for metrics.
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    pub started: u64,
    pub answered: u64,
    /// Ended calls by final status sent to the caller (200 for answered calls).
    pub ended_by_status: HashMap<u16, u64>,
    pub rejected_overload: u64,
    /// New INVITEs and REGISTERs refused 503 because the edge is draining.
    pub rejected_draining: u64,
    /// New INVITEs and REGISTERs refused 503 because the node is held (a cluster
    /// node that cannot reach the shared state).
    pub rejected_held: u64,
    /// Cluster mode: claims of agents answered, by outcome (granted, taken by
    /// another node, failed).
    pub claims: [u64; 3],
    /// Cluster mode: times this node held a free agent back because another
    /// node's call of the queue had waited longer.
    pub fifo_holdbacks: u64,
    /// New INVITEs refused 503 because they waited over [`OVERLOAD_QUEUE_DELAY`]
    /// in the driver's queue.
    pub shed: u64,
    /// INVITEs from sources that are no trunk, refused or dropped statelessly.
    pub strangers: u64,
    /// Answered calls ended because no RTP came from either party for
    /// `[media] rtp_timeout`, and because they reached `[sip] max_call_duration`.
    pub media_timeouts: u64,
    pub max_duration: u64,
    /// Messages dropped unread from a source over `rate_limit`, and the blocks.
    pub rate_limited: u64,
    pub rate_limit_blocks: u64,
    /// RTP port pairs skipped because another program held them.
    pub ports_skipped: u64,
    /// Answered calls ended because a leg's session timer (RFC 4028) ran out or
    /// its refresh failed.
    pub session_expired: u64,
    /// REGISTERs whose digest response was wrong (or named no agent), sources
    /// blocked for too many of them, and REGISTERs refused unchecked while blocked.
    pub auth_failures: u64,
    pub auth_blocks: u64,
    pub auth_blocked: u64,
    /// Messages relayed through the node hop, and hop messages refused or dropped.
    pub hop_relayed: u64,
    pub hop_refused: u64,
    /// Agent state changes by the state entered.
    pub agent_changes: HashMap<&'static str, u64>,
    /// Agents put not_ready because they let `max_no_answer` offers ring out.
    pub no_answer_not_ready: u64,
    /// Reserved data headers dropped (empty, too long, control characters).
    pub reserved_refused: u64,
    /// Calls for closed queues by the action taken (announce, voicemail, queue,
    /// forward), and voicemails recorded.
    pub after_hours: HashMap<&'static str, u64>,
    pub voicemails: u64,
    /// Blind transfers by outcome (`completed`, `queued`, `recalled`,
    /// `requeued`, `failed`, `abandoned`; consultations as `consult_completed`,
    /// `consult_cancelled`), and by who asked (`refer`, `api`).
    pub transfers: HashMap<&'static str, u64>,
    pub transfers_by: HashMap<&'static str, u64>,
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
    /// Reserved data from the trunk's INVITE, field → value.
    pub reserved: Vec<(String, String)>,
    /// The queue was closed: `announce` or `voicemail` (the edge answered).
    pub after_hours: Option<&'static str>,
    /// The call's transfers, oldest first (the last may be `pending`).
    pub transfers: Vec<TransferEvent>,
    /// Its parties: customer, agent and conference members, with their flags.
    pub participants: Vec<ParticipantInfo>,
    pub participant_events: Vec<ParticipantEvent>,
}

pub struct B2bua {
    ep: Endpoint,
    snap: Arc<Snapshot>,
    calls: Calls,
    /// Transactions and dialogs → the call or supervisor leg they belong to.
    index: Index,
    /// Free agents and the queue calls waiting for one.
    acd: Acd,
    /// Supervisor legs (their dialogs and transactions are in `index`).
    monitors: HashMap<MonitorId, Monitor>,
    ports: PortPool,
    timers: TimerTable,
    outputs: VecDeque<Output>,
    /// Per-source rate limit of sources that are no trunk.
    pike: Pike,
    /// The driver's check of a port pair before use (none in tests: every pair is
    /// usable).
    probe: Option<Box<dyn PortProbe>>,
    /// Allocations until the probe is next told which pairs come soon.
    ahead_due: usize,
    /// Draining ([`B2bua::drain`]): new work is refused, calls in progress go on.
    draining: bool,
    /// Held ([`B2bua::hold_new_work`]): new work is refused until released.
    held: bool,
    /// Cluster mode: agents' claims ([`B2bua::enable_claims`]).
    claims: Option<claims::Claims>,
    /// Agents' registrations and the digest verifier.
    registrar: registrar::Registrar,
    /// The instant and wall-clock time the core started (bindings are kept in
    /// wall time).
    epoch: (Instant, std::time::SystemTime),
    /// The edge's DTLS certificate fingerprint for browser legs (set by the driver;
    /// without it, browsers get plain RTP SDP and cannot connect).
    webrtc_fingerprint: Option<String>,
    /// Keys the ICE credentials of browser legs, and how many were made.
    ice_secret: [u8; 32],
    /// Keys the MACs of the node hop's Vias.
    hop_secret: [u8; 32],
    /// Cluster mode: this node's SIP address, and every live node's (name, SIP
    /// address), for the node hop.
    cluster_me: Option<std::net::SocketAddr>,
    cluster_nodes: Vec<(String, std::net::SocketAddr)>,
    ice_made: u64,
    /// SIP WebSockets opened with a user's API token → that user.
    signed_in: HashMap<Flow, String>,
    pub stats: CallStats,
}

/// How often expired registrations are swept out.
const REGISTRATION_SWEEP: Duration = Duration::from_secs(10);

fn pike_config(c: &control::SipConfig) -> PikeConfig {
    PikeConfig {
        limit: c.rate_limit,
        window: Duration::from_secs(1),
        block: c.rate_limit_block,
        max_sources: 100_000,
    }
}

/// The edge's SDP at `addr`:`port` for what `sdp` says: WebRTC for a browser leg
/// (its ICE credentials `ice`, the edge's DTLS `fingerprint`; `offer`:
/// `setup:actpass`, else `passive`), plain RTP otherwise.
fn sdp_for(
    sdp: &Sdp,
    addr: std::net::IpAddr,
    port: u16,
    ice: Option<&media::webrtc::IceCredentials>,
    fingerprint: Option<&str>,
    offer: bool,
) -> String {
    match (ice, fingerprint) {
        (Some(ice), Some(fingerprint)) => sdp.rewrite_webrtc(
            addr,
            port,
            &sip::sdp::WebRtcLocal {
                ufrag: &ice.ufrag,
                pwd: &ice.pwd,
                fingerprint,
                setup: if offer { "actpass" } else { "passive" },
            },
        ),
        _ => sdp.rewrite(addr, port),
    }
}

/// A browser's SDP transport as the media takes it.
fn webrtc_params(r: &sip::sdp::WebRtcRemote) -> media::webrtc::RemoteParams {
    media::webrtc::RemoteParams {
        ufrag: r.ufrag.clone(),
        pwd: r.pwd.clone(),
        fingerprint: r.fingerprint.clone(),
        setup: media::webrtc::Setup::parse(&r.setup).unwrap_or(media::webrtc::Setup::ActPass),
    }
}

/// A `Warning: 399 edge "…"` header (RFC 3261 §20.43): why the edge refused.
fn warning(text: &str) -> Header {
    rsip::headers::Warning::new(format!("399 edge \"{text}\"")).into()
}

fn contact_for(flow: Flow) -> String {
    format!("<sip:edge@{}{}>", flow.local, flow.transport.uri_param())
}

/// The extensions a `Require` may name: `timer` (RFC 4028) unless session timers
/// are off.
fn supported_options(sip: &control::SipConfig) -> &'static [&'static str] {
    // `path`: the registrar stores and uses Path (RFC 3327).
    if sip.session_expires.is_zero() {
        &["replaces", "path"]
    } else {
        &["timer", "replaces", "path"]
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
        let pike = Pike::new(pike_config(&c.sip));
        let mut acd = Acd::new();
        acd.sync(c.agents.iter().map(|a| a.id.as_str()), now);
        let mut ep = Endpoint::new(c.sip.user_agent.clone(), seed);
        ep.set_supported(supported_options(&c.sip));
        B2bua {
            ep,
            snap,
            calls: Calls::default(),
            index: Index::default(),
            acd,
            monitors: HashMap::new(),
            ports,
            timers: TimerTable::default(),
            outputs: VecDeque::new(),
            pike,
            probe: None,
            ahead_due: 0,
            draining: false,
            held: false,
            claims: None,
            registrar: registrar::Registrar::new(sip::digest::secret_from_seed(seed)),
            epoch: (now, std::time::SystemTime::now()),
            webrtc_fingerprint: None,
            ice_secret: sip::digest::secret_from_seed(seed ^ 0x1CE5_EC2E_7000_0001),
            ice_made: 0,
            hop_secret: sip::digest::secret_from_seed(seed ^ 0x0407_5EC2_E700_0002),
            cluster_me: None,
            cluster_nodes: Vec::new(),
            signed_in: HashMap::new(),
            stats: CallStats::default(),
        }
        .with_sweep(now)
    }

    /// The SHA-256 fingerprint of the edge's DTLS certificate (`AB:CD:…`), written
    /// into the SDP of browser legs.
    pub fn set_webrtc_fingerprint(&mut self, fingerprint: String) {
        self.webrtc_fingerprint = Some(fingerprint);
    }

    /// Fresh ICE credentials for one browser leg (RFC 8445 §5.3: ufrag ≥ 4 and pwd
    /// ≥ 22 characters; hex is within the ICE character set).
    pub(crate) fn new_ice_credentials(&mut self) -> media::webrtc::IceCredentials {
        self.ice_made += 1;
        let h = sip::digest::keyed_hex(&self.ice_secret, self.ice_made);
        media::webrtc::IceCredentials {
            ufrag: h[..8].to_string(),
            pwd: h[8..40].to_string(),
        }
    }

    /// `side` of call `id` is a browser: the edge's SDP to it is WebRTC, and its
    /// media port runs ICE-lite and DTLS-SRTP (told to the media with `remote`, the
    /// browser's parameters, when they are known).
    pub(crate) fn make_webrtc(
        &mut self,
        id: CallId,
        side: Side,
        remote: Option<&sip::sdp::WebRtcRemote>,
    ) {
        let local = self.new_ice_credentials();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.webrtc[side as usize] = Some(local.clone());
        self.outputs.push_back(Output::Media(
            id,
            Command::WebRtc {
                side,
                local: Some(local),
            },
        ));
        if let Some(r) = remote {
            self.webrtc_remote(id, side, r);
        }
    }

    /// `side` is plain RTP again (a desk phone answered where a browser rang too).
    pub(crate) fn plain_rtp(&mut self, id: CallId, side: Side) {
        if let Some(c) = self.calls.get_mut(&id) {
            if c.webrtc[side as usize].take().is_some() {
                self.outputs
                    .push_back(Output::Media(id, Command::WebRtc { side, local: None }));
            }
        }
    }

    /// What `side`'s new SDP says of its transport: the browser's parameters go to
    /// the media; a plain answer where a browser leg was prepared makes it plain.
    /// `Err`: a secure stream the edge cannot use (no fingerprint, SDES).
    pub(crate) fn webrtc_sdp(&mut self, id: CallId, side: Side, sdp: &Sdp) -> Result<(), ()> {
        match sdp.webrtc() {
            Ok(Some(r)) => {
                let prepared = self
                    .calls
                    .get(&id)
                    .is_some_and(|c| c.webrtc[side as usize].is_some());
                if !prepared {
                    return Err(());
                }
                self.webrtc_remote(id, side, &r);
                Ok(())
            }
            Ok(None) => {
                self.plain_rtp(id, side);
                Ok(())
            }
            Err(_) => Err(()),
        }
    }

    /// The browser on `side` sent its SDP (answer, or offer).
    pub(crate) fn webrtc_remote(&mut self, id: CallId, side: Side, r: &sip::sdp::WebRtcRemote) {
        let remote = webrtc_params(r);
        self.outputs
            .push_back(Output::Media(id, Command::WebRtcRemote { side, remote }));
    }

    fn with_sweep(mut self, now: Instant) -> Self {
        self.timers
            .set(now + REGISTRATION_SWEEP, timers::Timer::RegistrationSweep);
        self.agents_changed(now, true);
        self
    }

    /// Let the media driver check (and bind) each RTP port pair before a call or a
    /// supervisor uses it: a pair another program holds is skipped, not failed on.
    pub fn set_port_probe(&mut self, probe: Box<dyn PortProbe>) {
        self.probe = Some(probe);
    }

    /// A free RTP port pair the driver could bind (at most [`PORT_TRIES`] tried).
    pub(crate) fn allocate_port(&mut self) -> Option<u16> {
        let probe = &mut self.probe;
        let (port, skipped) = self.ports.allocate_with(PORT_TRIES, |p| {
            probe.as_mut().is_none_or(|probe| probe.reserve(p))
        });
        // Every AHEAD_BATCH allocations, the probe hears of the AHEAD_BATCH pairs
        // that follow the next PORTS_AHEAD (one message, one wake-up per batch).
        self.ahead_due = self.ahead_due.saturating_sub(1);
        if let (Some(probe), 0) = (probe.as_mut(), self.ahead_due) {
            self.ahead_due = AHEAD_BATCH;
            let ports: Vec<u16> = (PORTS_AHEAD..PORTS_AHEAD + AHEAD_BATCH)
                .map_while(|n| self.ports.peek(n))
                .collect();
            if !ports.is_empty() {
                probe.ahead(&ports);
            }
        }
        if skipped > 0 {
            self.stats.ports_skipped += skipped;
            warn!(skipped, "RTP ports held by another program: skipped");
        }
        port
    }

    /// Give a pair back (and whatever the driver bound for it, if unused).
    pub(crate) fn release_port(&mut self, port: u16) {
        if let Some(p) = self.probe.as_mut() {
            p.release(port);
        }
        self.ports.release(port);
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
        let [dialogs, server, client, relayed] = self.index.sizes();
        [dialogs, server, client, relayed, self.acd.waiting().count()]
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
        let mine = match (self.timers.next_deadline(), self.acd.next_wrap_up_end()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (mine, self.ep.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Swap in a new validated configuration. Calls in progress keep their route.
    pub fn reload(&mut self, snap: Arc<Snapshot>, now: Instant) {
        self.acd
            .sync(snap.config.agents.iter().map(|a| a.id.as_str()), now);
        self.pike.set_config(pike_config(&snap.config.sip));
        self.ep.set_supported(supported_options(&snap.config.sip));
        self.snap = snap;
        self.agents_changed(now, false);
        self.dispatch_queues(now);
    }

    /// Bytes from `flow`. A source that is no trunk is rate limited (over the limit
    /// its messages are dropped unread), and its INVITEs are refused or dropped
    /// statelessly, before any transaction exists.
    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.handle_datagram_waited(now, flow, data, Duration::ZERO);
    }

    /// As [`B2bua::handle_datagram`], for bytes that waited `waited` in the
    /// driver's queue: past [`OVERLOAD_QUEUE_DELAY`], a new INVITE is shed (503 +
    /// Retry-After, no transaction); everything else is handled as usual, so calls
    /// in progress keep their signalling.
    pub fn handle_datagram_waited(
        &mut self,
        now: Instant,
        flow: Flow,
        data: &[u8],
        waited: Duration,
    ) {
        let ip = flow.remote.ip();
        let trusted = self.snap.trunk_for(ip).is_some();
        if !trusted {
            if let Verdict::Block { first } = self.pike.check(ip, now) {
                self.stats.rate_limited += 1;
                if first {
                    self.stats.rate_limit_blocks += 1;
                    warn!(source = %ip, "source over the SIP rate limit: ignoring it for a while");
                }
                return;
            }
        }
        if self.try_hop(now, flow, data) {
            return self.process(now);
        }
        let policy = self.snap.config.sip.strangers;
        let strangers = &mut self.stats.strangers;
        let shed = &mut self.stats.shed;
        let snap = &self.snap;
        self.ep
            .handle_datagram_screened(now, flow, data, |req, head, _| {
                if req.method != Method::Invite || head.to_tag.is_some() {
                    return Screen::Accept;
                }
                // An agent dialling out (a browser, or a phone with or for
                // credentials) is authenticated by the call logic (407).
                if !trusted && outbound::maybe_agent(snap, req, flow) {
                    return Screen::Accept;
                }
                if trusted {
                    if waited > OVERLOAD_QUEUE_DELAY {
                        *shed += 1;
                        return Screen::Busy(RETRY_AFTER_SECS);
                    }
                    return Screen::Accept;
                }
                *strangers += 1;
                debug!(source = %ip, call_id = %head.call_id, "INVITE from a source that is no trunk");
                match policy {
                    Strangers::Refuse => Screen::Refuse(403),
                    Strangers::Drop => Screen::Drop,
                }
            });
        self.process(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        while let Some(timer) = self.timers.pop_due(now) {
            self.on_timer(now, timer);
        }
        self.end_wrap_ups(now);
        self.process(now);
    }

    /// The calls, for the API.
    pub fn calls(&self, now: Instant) -> Vec<CallInfo> {
        // Monitor legs by call in one pass (not one pass per call: a supervisor's
        // console asks every second, on the SIP core's thread).
        let mut third: HashMap<CallId, Vec<&monitor::Monitor>> = HashMap::new();
        for m in self.monitors.values() {
            third.entry(m.call).or_default().push(m);
        }
        let none = Vec::new();
        let mut v: Vec<CallInfo> = self
            .calls
            .values()
            .map(|c| (c, third.get(&c.id).unwrap_or(&none)))
            .map(|(c, of)| CallInfo {
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
                monitors: Self::monitor_infos(of),
                recording_paused: c.recording,
                digits: c.digits.clone(),
                held: c.held,
                reserved: c.reserved.clone(),
                after_hours: c.deflected,
                transfers: c.transfers.clone(),
                participants: Self::participants(c, of),
                participant_events: c.participant_events.clone(),
            })
            .collect();
        v.sort_by(|a, b| b.age_secs.total_cmp(&a.age_secs));
        v
    }

    /// End a call (admin): BYE to established legs, CANCEL/480 otherwise.
    pub fn hangup(&mut self, now: Instant, public_id: &str) -> bool {
        let Some(id) = self.calls.by_public(public_id) else {
            return false;
        };
        self.end_call(now, id, 480, "admin");
        self.process(now);
        true
    }

    /// No datagram came from either party of `call` for its silence limit: an
    /// answered call is ended (BYE both legs); one not answered yet may be waiting
    /// without media and is left alone.
    pub fn media_silent(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if !c.is_established() {
            return;
        }
        let _span = self.span(call).entered();
        info!(call = %c.public_id, "no RTP from either party: ending the call");
        self.stats.media_timeouts += 1;
        self.end_call(now, call, 200, "no RTP");
        self.process(now);
    }

    /// A browser leg's DTLS failed (no handshake in time, or another certificate
    /// than its SDP named): the call can carry no media on that side, so it ends
    /// (503 to a caller not yet answered, BYE otherwise).
    pub fn webrtc_failed(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let _span = self.span(call).entered();
        info!(call = %c.public_id, "WebRTC media failed (DTLS): ending the call");
        self.end_call(now, call, 503, "WebRTC DTLS failed");
        self.process(now);
    }

    /// The driver could not open the call's RTP sockets.
    pub fn media_failed(&mut self, now: Instant, call: CallId) {
        if self.calls.contains(&call) {
            self.end_call(now, call, 503, "media ports unavailable");
            self.process(now);
        }
    }

    // ---- event loop ------------------------------------------------------------

    /// The tracing span of call `id`: every log line of its handling carries the
    /// call's public id (`EDGE_LOG=debug` shows one call's story by grepping it).
    fn span(&self, id: CallId) -> tracing::Span {
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
                Event::Timeout { tx } => self.on_tx_failed(now, tx, 408),
                Event::TransportError { tx } => self.on_tx_failed(now, tx, 503),
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

    /// 503 + Retry-After ([`RETRY_AFTER_SECS`]): overloaded or draining.
    fn reply_busy(&mut self, now: Instant, tx: TxId, req: &Request) {
        let h = rsip::headers::RetryAfter::new(RETRY_AFTER_SECS.to_string()).into();
        self.reply_with(now, tx, req, 503, vec![h]);
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
            return match self.index.dialog(&head.call_id, &to_tag) {
                Some(DialogOwner::Monitor(mid)) => self.on_monitor_request(now, mid, tx, req),
                Some(DialogOwner::Transferor(id)) => {
                    let _span = self.span(id).entered();
                    self.on_transferor_request(now, id, tx, req, head)
                }
                owner => self.on_in_dialog(now, tx, req, head, owner),
            };
        }
        match req.method {
            Method::Invite => self.on_invite(now, tx, req, head, flow),
            Method::Options if self.refusing_new_work() => {
                // A proxy's probe (Kamailio's dispatcher) takes this node out of
                // its set and sends new calls elsewhere.
                self.reply_busy(now, tx, &req);
            }
            Method::Options => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                let accept = rsip::headers::Accept::new("application/sdp").into();
                self.reply_with(now, tx, &req, 200, vec![allow, accept]);
            }
            Method::Register if self.refusing_new_work() => self.refuse_draining(now, tx, &req),
            Method::Bye | Method::Info | Method::Update | Method::PRack => {
                self.reply(now, tx, &req, 481, None)
            }
            Method::Register => self.on_register(now, tx, req, head, flow),
            _ => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                self.reply_with(now, tx, &req, 405, vec![allow]);
            }
        }
    }
}

impl B2bua {
    /// The transport to `flow` failed (TCP connect refused or connection lost).
    pub fn transport_failed(&mut self, now: Instant, flow: Flow) {
        self.ep.transport_failed(now, flow);
        self.process(now);
    }

    /// Stop taking new work, for a node being taken out of service: OPTIONS, new
    /// INVITEs (from trunks and from agents) and REGISTERs get 503 + Retry-After,
    /// while calls in progress keep all their signalling (in-dialog requests,
    /// transfers, monitors, INVITE with Replaces). Returns the calls still up; the
    /// driver stops once [`B2bua::active_calls`] is 0. There is no way back but a
    /// restart.
    pub fn drain(&mut self) -> usize {
        if !self.draining {
            self.draining = true;
            warn!(
                calls = self.calls.len(),
                "draining: new calls and registrations refused with 503, calls in progress go on"
            );
        }
        self.calls.len()
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Hold (`true`) or release new work without stopping: while held the node
    /// refuses OPTIONS, new INVITEs and REGISTERs with 503 + Retry-After, exactly
    /// as while draining, and calls in progress go on. A cluster node holds itself
    /// while it cannot reach the cluster's shared state, so it does not diverge
    /// from it. Draining wins: releasing a draining node changes nothing.
    pub fn hold_new_work(&mut self, held: bool) {
        if self.held != held {
            self.held = held;
            if held {
                warn!(
                    calls = self.calls.len(),
                    "held: new calls and registrations refused with 503"
                );
            } else {
                info!("released: taking new calls and registrations again");
            }
        }
    }

    pub fn held(&self) -> bool {
        self.held
    }

    /// Draining or held: OPTIONS and requests for new work get 503.
    pub(crate) fn refusing_new_work(&self) -> bool {
        self.draining || self.held
    }

    /// 503 + Retry-After to a request for new work while draining or held.
    pub(crate) fn refuse_draining(&mut self, now: Instant, tx: TxId, req: &Request) {
        if self.draining {
            self.stats.rejected_draining += 1;
        } else {
            self.stats.rejected_held += 1;
        }
        self.reply_busy(now, tx, req);
    }

    /// Snapshot of the configuration in use.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }
}
