//! Supervisor legs: a supervisor asks (API) to monitor a live call, and the edge calls
//! the supervisor's phone (the user's `contact`) with its own SDP offer on a fresh
//! RTP port. The call's two legs are never touched — no re-INVITE, nothing the agent
//! or customer could notice; the media driver feeds the supervisor from the call's
//! mixer. A monitor lives on its own: it ends when the supervisor hangs up, when the
//! API removes it, or when the call ends (BYE, or CANCEL while still ringing), and
//! its index entries go when its last transaction does.
//!
//! Modes switch by API or by DTMF from the supervisor's phone (RFC 4733 events
//! reported by the media driver, or SIP INFO `application/dtmf-relay`): 4 listen,
//! 5 whisper, 6 barge, as Asterisk ChanSpy users know.

use crate::in_dialog::ack_2xx;
use crate::index::{DialogOwner, Index, MonitorRole};
use crate::{contact_for, is_sdp, B2bua, CallId, Command, MonitorId, Output, Side};
pub use media::mixer::MonitorMode;
use rsip::headers::UntypedHeader;
use rsip::{Method, Request, Response};
use sip::dialog::Dialog;
use sip::endpoint::Endpoint;
use sip::message;
use sip::message::Head;
use sip::sdp::Sdp;
use sip::TxId;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::{info, warn};

/// Why a supervision or recording command was refused (the API maps these to HTTP).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error("no such call")]
    NoCall,
    #[error("no such monitor on this call")]
    NoMonitor,
    #[error("no such participant on this call")]
    NoParticipant,
    #[error("no such user")]
    NoUser,
    #[error("user `{0}` has no contact configured")]
    NoContact(String),
    #[error("the call is not answered yet")]
    NotAnswered,
    #[error("the call is not being recorded")]
    NotRecording,
    #[error("no RTP ports left")]
    NoPorts,
    #[error("no SIP listen address can reach {0}")]
    Unreachable(SocketAddr),
    #[error("`{0}` is not a DTMF digit (0-9, *, #, A-D)")]
    BadDigit(char),
    #[error("give 1 to 32 digits")]
    DigitCount,
    #[error("the {0} did not offer RFC 4733 telephone-event")]
    NoTelephoneEvent(&'static str),
    #[error("this call is not yours")]
    NotYours,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("no agent, queue or number `{0}`")]
    NoTarget(String),
    #[error("queue `{0}` is closed and its after_hours action answers calls itself")]
    Closed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorState {
    /// INVITE sent, no final response yet.
    Calling,
    Active,
    Ending,
}

impl MonitorState {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorState::Calling => "calling",
            MonitorState::Active => "active",
            MonitorState::Ending => "ending",
        }
    }
}

pub fn mode_str(m: MonitorMode) -> &'static str {
    match m {
        MonitorMode::Listen => "listen",
        MonitorMode::Whisper => "whisper",
        MonitorMode::Barge => "barge",
        MonitorMode::Member => "member",
    }
}

pub fn parse_mode(s: &str) -> Option<MonitorMode> {
    match s {
        "listen" => Some(MonitorMode::Listen),
        "whisper" => Some(MonitorMode::Whisper),
        "barge" => Some(MonitorMode::Barge),
        _ => None,
    }
}

/// The ChanSpy digits: 4 listen, 5 whisper, 6 barge.
pub fn mode_for_digit(d: char) -> Option<MonitorMode> {
    match d {
        '4' => Some(MonitorMode::Listen),
        '5' => Some(MonitorMode::Whisper),
        '6' => Some(MonitorMode::Barge),
        _ => None,
    }
}

#[derive(Debug)]
pub struct Monitor {
    pub id: MonitorId,
    pub public_id: String,
    pub call: CallId,
    pub user: String,
    pub mode: MonitorMode,
    /// The target of a consultation (not a supervisor: not listed as a monitor).
    pub consult: bool,
    /// The agent called (a consultation's or a conference member's), released
    /// when the leg ends.
    pub agent: Option<String>,
    /// A conference member's flags: muted, deaf, held.
    pub flags: [bool; 3],
    /// The RFC 4733 payload type its answer named.
    pub te_pt: Option<u8>,
    pub state: MonitorState,
    pub dialog: Dialog,
    /// The INVITE client transaction until its final response.
    pub tx: Option<TxId>,
    /// The INVITE client transaction, indexed until the monitor is gone (2xx
    /// retransmissions arrive on it).
    pub invite_tx: TxId,
    pub provisional: bool,
    pub cancel_pending: bool,
    /// BYE/CANCEL transactions still open while ending.
    pub open: u32,
    pub port: u16,
    /// The `o=` session id of our SDP: the same in every answer of this dialog.
    pub sdp_session: u64,
    /// The edge's ICE credentials when the supervisor is in a browser (a binding
    /// made over SIP WebSocket): the monitor leg is WebRTC.
    pub webrtc: Option<media::webrtc::IceCredentials>,
}

impl Monitor {
    /// The edge's SDP for the supervisor (`offer`: `setup:actpass`, else `passive`).
    fn sdp(&self, addr: std::net::IpAddr, fingerprint: Option<&str>, offer: bool) -> String {
        let ice = self.webrtc.as_ref();
        monitor_sdp(addr, self.port, self.sdp_session, ice, fingerprint, offer)
    }
}

/// The edge's SDP for a supervisor: G.711 and events, as WebRTC for a browser.
fn monitor_sdp(
    addr: std::net::IpAddr,
    port: u16,
    session: u64,
    ice: Option<&media::webrtc::IceCredentials>,
    fingerprint: Option<&str>,
    offer: bool,
) -> String {
    let plain = monitor_offer(addr, port, session);
    match (ice, Sdp::parse(plain.as_bytes())) {
        (Some(_), Ok(sdp)) => crate::sdp_for(&sdp, addr, port, ice, fingerprint, offer),
        _ => plain,
    }
}

/// A monitor as listed by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorInfo {
    pub id: String,
    pub user: String,
    pub mode: &'static str,
    pub state: &'static str,
}

/// Who sent a DTMF digit seen in the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitFrom {
    Party(Side),
    Monitor(MonitorId),
}

/// A digit received in a call's media (RFC 4733), for the call's events.
#[derive(Debug, Clone, PartialEq)]
pub struct DigitEvent {
    /// "customer", "agent" or "monitor:<id>".
    pub from: String,
    pub digit: char,
    /// Seconds since the call started.
    pub at_secs: f64,
}

/// At most this many digits are kept per call (a stuck key must not grow memory).
pub(crate) const MAX_DIGITS: usize = 256;

/// The SDP the edge offers a supervisor's phone: G.711 both laws and RFC 4733 events.
pub fn monitor_offer(addr: std::net::IpAddr, port: u16, session: u64) -> String {
    let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=edge {session} 1 IN {fam} {addr}\r\ns=edge\r\nc=IN {fam} {addr}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// CANCEL monitor `m`'s INVITE `tx`; the CANCEL is one of its ending transactions.
fn cancel_monitor(ep: &mut Endpoint, index: &mut Index, m: &mut Monitor, tx: TxId, now: Instant) {
    if let Some(ct) = ep.cancel(now, tx) {
        index.add_monitor_client(ct, m.id, MonitorRole::End);
        m.open += 1;
    }
}

/// BYE monitor `m`'s dialog; the BYE is one of its ending transactions.
fn bye_monitor(
    ep: &mut Endpoint,
    index: &mut Index,
    m: &mut Monitor,
    now: Instant,
    user_agent: &str,
) {
    let bye = m.dialog.request(Method::Bye, None, user_agent);
    let t = ep.send_request(now, bye, m.dialog.flow);
    index.add_monitor_client(t, m.id, MonitorRole::End);
    m.open += 1;
}

/// Where a third party of a call (a supervisor, a consultation's target, a
/// conference member) is called: its URI over `flow`, with a pre-loaded route
/// set (a binding's Path: a proxy's, or the hop through another cluster node)
/// and whether it is a browser (WebRTC media; one behind another node too).
pub(crate) struct ThirdParty {
    pub uri: String,
    pub flow: sip::Flow,
    pub route: Vec<String>,
    pub browser: bool,
}

impl B2bua {
    /// Call `user`'s phone to monitor the answered call `call_public` in `mode`.
    /// Returns the monitor's id; the monitor is `calling` until the phone answers.
    pub fn add_monitor(
        &mut self,
        now: Instant,
        call_public: &str,
        user: &str,
        mode: MonitorMode,
    ) -> Result<String, CommandError> {
        let id = self.answered_call(call_public)?;
        let u = self.snap.user(user).ok_or(CommandError::NoUser)?;
        // The user's phone: its static contact, else where it registered last (a
        // browser signed in over /ws/sip, a softphone) — in cluster mode also at
        // another node (through that node's hop, or the proxy's Path).
        let party = match &u.contact {
            Some(t) => ThirdParty {
                uri: t.uri.clone(),
                flow: self
                    .local_flow(t.transport, t.addr)
                    .ok_or(CommandError::Unreachable(t.addr))?,
                route: Vec::new(),
                browser: false,
            },
            None => {
                let t = self
                    .agent_targets(now, user)
                    .into_iter()
                    .next()
                    .ok_or_else(|| CommandError::NoContact(user.to_string()))?;
                self.third_party_at(t)?
            }
        };
        let (_, public_id) = self.place_monitor(now, id, party, user.to_string(), mode, false)?;
        info!(call = %call_public, monitor = %public_id, %user, mode = mode_str(mode), "calling supervisor");
        Ok(public_id)
    }

    /// How to call `t` as a third party: over the flow its registration came on,
    /// else from a listen address of its transport.
    pub(crate) fn third_party_at(
        &self,
        t: crate::invite::LegTarget,
    ) -> Result<ThirdParty, CommandError> {
        let flow = match t.local {
            Some(local) => sip::Flow {
                transport: t.transport,
                local,
                remote: t.remote,
            },
            None => self
                .local_flow(t.transport, t.remote)
                .ok_or(CommandError::Unreachable(t.remote))?,
        };
        Ok(ThirdParty {
            uri: t.uri,
            flow,
            route: t.route,
            browser: t.browser,
        })
    }

    /// Call `party` as a third party of call `id` on a port of its own, mixed in
    /// `mode` (a supervisor; `consult`: a consultation's target).
    pub(crate) fn place_monitor(
        &mut self,
        now: Instant,
        id: CallId,
        party: ThirdParty,
        user: String,
        mode: MonitorMode,
        consult: bool,
    ) -> Result<(MonitorId, String), CommandError> {
        let ThirdParty {
            uri,
            flow,
            route,
            browser,
        } = party;
        let webrtc = ((browser || flow.transport.is_websocket())
            && self.webrtc_fingerprint.is_some())
        .then(|| self.new_ice_credentials());
        let port = self.allocate_port().ok_or(CommandError::NoPorts)?;
        let mid = MonitorId(self.calls.next_id());
        let public_id = format!("m{mid}");
        let call_id = format!("{}@edge", self.ep.ids().token());
        let tag = self.ep.ids().token();
        let session = self.ep.ids().next_u64() >> 1;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let media_addr = self.snap.config.media.address;
        let mut dialog = Dialog::uac(
            call_id.clone(),
            tag.clone(),
            "<sip:monitor@edge.invalid>".into(),
            format!("<{uri}>"),
            uri.clone(),
            flow,
            contact_for(flow),
        );
        // A binding's Path (a proxy's, another node's hop) goes first.
        dialog.route_set = route;
        let fingerprint = self.webrtc_fingerprint.as_deref();
        let offer = monitor_sdp(
            media_addr,
            port,
            session,
            webrtc.as_ref(),
            fingerprint,
            true,
        );
        let mut req = dialog.request(
            Method::Invite,
            Some((offer.as_bytes(), "application/sdp")),
            &user_agent,
        );
        req.headers
            .push(rsip::headers::Allow::new(message::ALLOW).into());
        let tx = self.ep.send_request(now, req, flow);
        self.index.add_monitor_client(tx, mid, MonitorRole::Invite);
        self.index
            .add_dialog((call_id, tag), DialogOwner::Monitor(mid));
        self.monitors.insert(
            mid,
            Monitor {
                id: mid,
                public_id: public_id.clone(),
                call: id,
                user,
                mode,
                consult,
                agent: None,
                flags: [false; 3],
                te_pt: None,
                state: MonitorState::Calling,
                dialog,
                tx: Some(tx),
                invite_tx: tx,
                provisional: false,
                cancel_pending: false,
                open: 0,
                port,
                sdp_session: session,
                webrtc: webrtc.clone(),
            },
        );
        self.outputs.push_back(Output::Media(
            id,
            Command::MonitorOpen {
                monitor: mid,
                port,
                mode,
            },
        ));
        if let Some(local) = webrtc {
            self.outputs.push_back(Output::Media(
                id,
                Command::MonitorWebRtc {
                    monitor: mid,
                    local,
                },
            ));
        }
        Ok((mid, public_id))
    }

    fn find_monitor(&self, call_public: &str, mid: &str) -> Result<MonitorId, CommandError> {
        let id = self.call_index(call_public)?;
        self.monitors
            .values()
            .find(|m| {
                m.call == id
                    && m.public_id == mid
                    && m.state != MonitorState::Ending
                    && !m.consult
                    && m.mode != MonitorMode::Member
            })
            .map(|m| m.id)
            .ok_or(CommandError::NoMonitor)
    }

    pub fn set_monitor_mode(
        &mut self,
        call_public: &str,
        mid: &str,
        mode: MonitorMode,
    ) -> Result<(), CommandError> {
        let m = self.find_monitor(call_public, mid)?;
        self.apply_mode(m, mode);
        Ok(())
    }

    pub(crate) fn apply_mode(&mut self, mid: MonitorId, mode: MonitorMode) {
        let Some(m) = self.monitors.get_mut(&mid) else {
            return;
        };
        if m.mode == mode || m.state == MonitorState::Ending {
            return;
        }
        m.mode = mode;
        info!(monitor = %m.public_id, mode = mode_str(mode), "monitor mode");
        self.outputs.push_back(Output::Media(
            m.call,
            Command::MonitorMode { monitor: mid, mode },
        ));
    }

    /// Stop monitoring: BYE the supervisor's phone (CANCEL while it rings).
    pub fn remove_monitor(
        &mut self,
        now: Instant,
        call_public: &str,
        mid: &str,
    ) -> Result<(), CommandError> {
        let m = self.find_monitor(call_public, mid)?;
        self.end_monitor(now, m, true, "removed");
        self.process(now);
        Ok(())
    }

    /// End a monitor; `hang_up` sends BYE/CANCEL (false: the supervisor sent BYE).
    pub(super) fn end_monitor(&mut self, now: Instant, mid: MonitorId, hang_up: bool, why: &str) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(m) = self.monitors.get_mut(&mid) else {
            return;
        };
        if m.state == MonitorState::Ending {
            return;
        }
        let answered = m.state == MonitorState::Active;
        m.state = MonitorState::Ending;
        info!(monitor = %m.public_id, reason = why, "monitor ended");
        if m.consult {
            let (call, agent) = (m.call, m.agent.take());
            self.consult_ended(now, call, agent, answered);
        } else if m.mode == MonitorMode::Member {
            self.member_left(now, mid, answered);
        }
        let Some(m) = self.monitors.get_mut(&mid) else {
            return;
        };
        self.outputs.push_back(Output::Media(
            m.call,
            Command::MonitorClose { monitor: mid },
        ));
        if hang_up {
            match m.tx {
                Some(t) if m.provisional => {
                    cancel_monitor(&mut self.ep, &mut self.index, m, t, now)
                }
                Some(_) => m.cancel_pending = true,
                None if answered => bye_monitor(&mut self.ep, &mut self.index, m, now, &user_agent),
                None => {}
            }
        }
        self.monitor_maybe_gone(mid);
    }

    fn monitor_maybe_gone(&mut self, mid: MonitorId) {
        let Some(m) = self.monitors.get(&mid) else {
            return;
        };
        if m.state == MonitorState::Ending && m.open == 0 && m.tx.is_none() {
            let m = self.monitors.remove(&mid).expect("present");
            self.index.remove_client(&m.invite_tx);
            self.index
                .remove_dialog(&m.dialog.call_id, &m.dialog.local_tag);
            self.release_port(m.port);
        }
    }

    /// End every monitor of call `id` (the call is ending).
    pub(super) fn end_monitors_of(&mut self, now: Instant, id: CallId) {
        let mids: Vec<MonitorId> = self
            .monitors
            .values()
            .filter(|m| m.call == id)
            .map(|m| m.id)
            .collect();
        for mid in mids {
            self.end_monitor(now, mid, true, "call ended");
        }
    }

    pub(super) fn on_monitor_response(
        &mut self,
        now: Instant,
        mid: MonitorId,
        tx: TxId,
        resp: Response,
        head: Head,
    ) {
        let code = resp.status_code.code();
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(m) = self.monitors.get_mut(&mid) else {
            return;
        };
        if code < 200 {
            if code > 100 {
                m.provisional = true;
                if m.cancel_pending {
                    m.cancel_pending = false;
                    cancel_monitor(&mut self.ep, &mut self.index, m, tx, now);
                }
            }
            return;
        }
        if code < 300 {
            if m.tx.is_none() {
                // A retransmitted 2xx: our ACK was lost.
                ack_2xx(&mut self.ep, &m.dialog, head.cseq, None, &user_agent);
                return;
            }
            m.tx = None;
            m.dialog.on_response(&resp, &head);
            ack_2xx(&mut self.ep, &m.dialog, head.cseq, None, &user_agent);
            if m.state == MonitorState::Ending {
                // Answered after we gave up (CANCEL crossed the 200): hang up.
                bye_monitor(&mut self.ep, &mut self.index, m, now, &user_agent);
                return;
            }
            let sdp = is_sdp(&resp.headers, &resp.body)
                .then(|| Sdp::parse(&resp.body).ok())
                .flatten();
            // A browser: its ICE and DTLS parameters (a plain answer to a WebRTC
            // offer, or the reverse, is unusable).
            let secure = sdp.as_ref().map(|s| s.webrtc());
            let usable = matches!(
                (&secure, m.webrtc.is_some()),
                (Some(Ok(Some(_))), true) | (Some(Ok(None)), false)
            );
            m.te_pt = sdp.as_ref().and_then(Sdp::telephone_event_pt);
            let addr = sdp
                .and_then(|s| s.audio_target().ok().flatten())
                .filter(|_| usable);
            let Some(addr) = addr else {
                warn!(monitor = %m.public_id, "supervisor answered without usable SDP: hanging up");
                m.state = MonitorState::Active;
                return self.end_monitor(now, mid, true, "answer without SDP");
            };
            m.state = MonitorState::Active;
            info!(monitor = %m.public_id, user = %m.user, "supervisor answered");
            let call = m.call;
            self.outputs.push_back(Output::Media(
                call,
                Command::MonitorRemote { monitor: mid, addr },
            ));
            if let Some(Ok(Some(r))) = secure {
                self.outputs.push_back(Output::Media(
                    call,
                    Command::MonitorWebRtcRemote {
                        monitor: mid,
                        remote: crate::webrtc_params(&r),
                    },
                ));
            }
            let consult = m.consult;
            let beep = !consult
                && self.calls.get(&call).is_some_and(|c| {
                    let (queue, route) = c.route_names();
                    self.snap
                        .call_settings(queue.as_deref(), route.as_deref())
                        .beep_on_monitor
                });
            if beep {
                self.outputs.push_back(Output::Media(call, Command::Beep));
            }
            return;
        }
        m.tx = None;
        info!(monitor = %m.public_id, code, "supervisor's phone refused the call");
        if m.state != MonitorState::Ending {
            self.end_monitor(now, mid, false, "refused");
        }
        self.monitor_maybe_gone(mid);
    }

    pub(super) fn on_monitor_end_done(&mut self, mid: MonitorId) {
        if let Some(m) = self.monitors.get_mut(&mid) {
            m.open = m.open.saturating_sub(1);
        }
        self.monitor_maybe_gone(mid);
    }

    pub(super) fn on_monitor_tx_timeout(&mut self, now: Instant, mid: MonitorId, invite: bool) {
        if invite {
            if let Some(m) = self.monitors.get_mut(&mid) {
                m.tx = None;
            }
            self.end_monitor(now, mid, false, "supervisor's phone did not respond");
            self.monitor_maybe_gone(mid);
        } else {
            self.on_monitor_end_done(mid);
        }
    }

    /// A request inside a monitor's dialog (BYE, INFO digits, re-INVITE, OPTIONS).
    pub(super) fn on_monitor_request(
        &mut self,
        now: Instant,
        mid: MonitorId,
        tx: TxId,
        req: Request,
    ) {
        let media_addr = self.snap.config.media.address;
        let Some(m) = self.monitors.get_mut(&mid) else {
            return self.reply(now, tx, &req, 481, None);
        };
        match req.method {
            Method::Bye => {
                self.reply(now, tx, &req, 200, None);
                self.end_monitor(now, mid, false, "supervisor hung up");
            }
            Method::Info => {
                let digit = std::str::from_utf8(&req.body).ok().and_then(|b| {
                    b.lines().find_map(|l| {
                        let (k, v) = l.split_once('=')?;
                        (k.trim().eq_ignore_ascii_case("signal"))
                            .then(|| v.trim().chars().next())
                            .flatten()
                    })
                });
                self.reply(now, tx, &req, 200, None);
                if let Some(mode) = digit.and_then(mode_for_digit) {
                    self.apply_mode(mid, mode);
                }
            }
            Method::Invite => {
                // Hold or a new address from the phone: same offer back, follow its SDP.
                let addr = is_sdp(&req.headers, &req.body)
                    .then(|| Sdp::parse(&req.body).ok())
                    .flatten()
                    .and_then(|s| s.audio_target().ok().flatten());
                let body = m.sdp(media_addr, self.webrtc_fingerprint.as_deref(), false);
                let call = m.call;
                let mut r =
                    message::response(&req, 200, Some(&m.dialog.local_tag), self.ep.server_name());
                r.headers
                    .push(rsip::headers::Contact::new(m.dialog.local_contact.clone()).into());
                r.body =
                    message::set_body(&mut r.headers, body.as_bytes(), Some("application/sdp"));
                self.ep.respond(now, tx, r);
                if let Some(addr) = addr {
                    self.outputs.push_back(Output::Media(
                        call,
                        Command::MonitorRemote { monitor: mid, addr },
                    ));
                }
            }
            Method::Options => self.reply(now, tx, &req, 200, None),
            _ => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                self.reply_with(now, tx, &req, 405, vec![allow]);
            }
        }
    }

    /// The supervisors on a call, for the API, of its third parties `of` (each
    /// monitor leg of the call, in any order).
    pub(super) fn monitor_infos(of: &[&Monitor]) -> Vec<MonitorInfo> {
        let mut v: Vec<(MonitorId, MonitorInfo)> = of
            .iter()
            .filter(|m| {
                m.state != MonitorState::Ending && !m.consult && m.mode != MonitorMode::Member
            })
            .map(|m| {
                (
                    m.id,
                    MonitorInfo {
                        id: m.public_id.clone(),
                        user: m.user.clone(),
                        mode: mode_str(m.mode),
                        state: m.state.as_str(),
                    },
                )
            })
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, i)| i).collect()
    }

    /// Monitors still indexed (leak checks).
    pub fn monitor_count(&self) -> usize {
        self.monitors.len() + self.index.monitor_dialogs()
    }
}
