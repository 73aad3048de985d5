//! Blind transfer of an answered call, asked by the agent's phone (REFER, RFC 3515)
//! or by the API. The edge carries it out itself — a B2BUA never passes a REFER to
//! the carrier — and the customer's leg is never touched in SIP: the edge anchors
//! the media, so only the far side changes.
//!
//! 1. The customer is held (hold audio, from the mix session, whose outgoing
//!    stream keeps the customer's SSRC, sequence and timestamps continuous).
//! 2. The agent's leg steps aside as the *transferor*: it stays up, latched on the
//!    B port, while a new B leg rings the target on the same port (its early media
//!    is not relayed; the transferor's latch refuses it).
//! 3. The target answers: the customer is resumed towards it, the transferor gets
//!    NOTIFY `200 OK` (sipfrag) and a BYE, its agent goes to wrap-up.
//! 4. The target is busy, does not answer or fails: NOTIFY with its status, and the
//!    call goes back to the transferor if it is still on it; else to the queue the
//!    call came from; else it ends.
//!
//! A transfer to a queue completes for the transferor at once (the call waits in
//! that queue like any queue call, the customer hearing hold audio).

use crate::call::{BLeg, Call};
use crate::index::{ClientRole, DialogOwner};
use crate::invite::LegTarget;
use crate::session;
use crate::timers::Timer;
use crate::{is_sdp, B2bua, CallId, CallState, CommandError, Output, Route, Side};
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request};
use sip::dialog::Dialog;
use sip::message::Head;
use sip::sdp::Sdp;
use sip::session_timer::Negotiated;
use sip::TxId;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Who asked for a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferBy {
    /// A REFER from the agent's phone.
    Refer,
    Api,
    /// A phone's INVITE with `Replaces` took the agent's leg.
    Replaces,
}

impl TransferBy {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferBy::Refer => "refer",
            TransferBy::Api => "api",
            TransferBy::Replaces => "invite",
        }
    }
}

/// One transfer in a call's history (the API's call events).
#[derive(Debug, Clone, PartialEq)]
pub struct TransferEvent {
    /// The target as asked (`1002`, `queue:sales`, `sip:…`).
    pub to: String,
    pub by: TransferBy,
    /// `blind`, or `consult` (the agent talked to the target first).
    pub kind: &'static str,
    /// `pending`, `completed` (the target answered), `queued` (waits in a queue),
    /// `recalled` (back to the transferor), `requeued` (back to its queue),
    /// `failed` (the call ended) or `abandoned` (the call ended meanwhile).
    pub outcome: &'static str,
    /// The target's failure status, when it failed.
    pub status: Option<u16>,
    /// Seconds into the call.
    pub at_secs: f64,
}

/// Where a transfer goes, resolved from what was asked.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Agent(String),
    Queue(String),
    /// A static route's number, or a SIP URI a route allows.
    Leg(LegTarget),
    /// Attended transfer from a phone (REFER with `Replaces`): the far party of
    /// this other call — the agent's consultation — takes the customer.
    Join(CallId),
}

/// The transfer under way on a call.
#[derive(Debug)]
pub struct Transfer {
    by: TransferBy,
    /// The REFER's CSeq: the NOTIFYs' `Event: refer;id=`.
    refer_id: Option<u32>,
    /// The agent's leg until the target answers (`None` once it hung up or was
    /// released).
    transferor: Option<BLeg>,
    /// The transferor's agent, released when its leg goes.
    transferor_agent: Option<String>,
    /// The transferor leg's session timer and last SDP, restored on recall.
    timer: Option<Negotiated>,
    sent_sdp: Option<String>,
    /// The customer was held before the transfer (stays held on recall).
    a_held: bool,
    /// The agent being rung directly (released when it does not answer).
    pub(crate) target_agent: Option<String>,
    /// ICE credentials of a browser target (side B's media switches to them when
    /// it answers; the transferor's keep running until then).
    pub(crate) target_webrtc: Option<media::webrtc::IceCredentials>,
    /// Waiting in a queue (a transfer to a queue, or back to its queue).
    pub(crate) queued: bool,
    /// The route before the transfer (a failed transfer goes back to its queue).
    from_route: Route,
}

/// Why a transfer is refused.
fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Failed",
    }
}

/// The `Refer-To` values of a REFER (full and compact form).
fn refer_to(req: &Request) -> Vec<String> {
    req.headers
        .iter()
        .filter_map(|h| match h {
            Header::Other(name, value)
                if name.eq_ignore_ascii_case("Refer-To") || name.eq_ignore_ascii_case("r") =>
            {
                Some(value.trim().to_string())
            }
            _ => None,
        })
        .collect()
}

/// The URI of a name-addr or addr-spec value (`"x" <sip:…>;p` → `sip:…`).
fn uri_in(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// The user part of a SIP URI (`sip:1002@host;p` → `1002`).
fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

/// The dialog a `Replaces` embedded in a Refer-To names (RFC 3891): Call-ID and
/// the two tags, percent-decoded (`Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
}

/// BYE `leg`, which leaves call `c` while the call goes on: its dialog is
/// unindexed and the BYE is one of the call's ending transactions.
pub(crate) fn bye_leg(
    ep: &mut sip::endpoint::Endpoint,
    index: &mut crate::index::Index,
    c: &mut Call,
    leg: &mut BLeg,
    now: Instant,
    user_agent: &str,
) {
    index.remove_dialog(&leg.dialog.call_id, &leg.dialog.local_tag);
    let bye = leg.dialog.request(Method::Bye, None, user_agent);
    let tx = ep.send_request(now, bye, leg.dialog.flow);
    c.client_txs.push(tx);
    c.open_ending += 1;
    index.add_client(tx, c.id, ClientRole::Ending);
}

/// A new INVITE's `Replaces` header (RFC 3891 §6.1), if it has a valid one.
pub(crate) fn replaces_header(req: &Request) -> Option<Replaces> {
    let v = req.headers.iter().find_map(|h| match h {
        Header::Other(name, value) if name.eq_ignore_ascii_case("Replaces") => Some(value),
        _ => None,
    })?;
    parse_replaces(v)
}

/// The `Replaces` among a URI's embedded headers (`a=b&Replaces=…`, percent-
/// encoded), if valid.
pub(crate) fn replaces_of(headers: &str) -> Option<Replaces> {
    let value = headers.split('&').find_map(|h| {
        let (k, v) = h.split_once('=')?;
        k.eq_ignore_ascii_case("Replaces").then_some(v)
    })?;
    parse_replaces(&sip::message::percent_decode(value)?)
}

/// A `Replaces` value: `call-id;to-tag=…;from-tag=…` (RFC 3891 §6.1).
fn parse_replaces(value: &str) -> Option<Replaces> {
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim().to_string();
    let (mut to_tag, mut from_tag) = (None, None);
    for p in parts {
        match p.trim().split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case("to-tag") => to_tag = Some(v.to_string()),
            Some((k, v)) if k.eq_ignore_ascii_case("from-tag") => from_tag = Some(v.to_string()),
            _ => {}
        }
    }
    (!call_id.is_empty()).then_some(())?;
    Some(Replaces {
        call_id,
        to_tag: to_tag?,
        from_tag: from_tag?,
    })
}

/// `sdp` as an offer to a new party: the codecs the customer agreed to, always
/// `sendrecv` (the customer may be on hold meanwhile).
fn offer_body(sdp: String) -> String {
    sdp.split_inclusive("\r\n")
        .filter(|l| {
            !matches!(
                l.trim_end(),
                "a=sendonly" | "a=recvonly" | "a=inactive" | "a=sendrecv"
            )
        })
        .collect()
}

/// `body` with its `o=` line replaced by `o_line` (which ends in CRLF): an SDP
/// offered in a dialog keeps that dialog's session (RFC 3264 §8).
pub(crate) fn with_o_line(body: &str, o_line: &str) -> String {
    body.split_inclusive("\r\n")
        .map(|l| if l.starts_with("o=") { o_line } else { l })
        .collect()
}

/// `body` with its `o=` session version one higher (a new offer in a dialog).
fn bump_o_version(body: &str) -> String {
    body.split_inclusive("\r\n")
        .map(|l| {
            let Some(o) = l.strip_prefix("o=") else {
                return l.to_string();
            };
            let mut f: Vec<String> = o.split_whitespace().map(str::to_string).collect();
            if let Some(n) = f.get(2).and_then(|v| v.parse::<u64>().ok()) {
                f[2] = (n + 1).to_string();
            }
            format!("o={}\r\n", f.join(" "))
        })
        .collect()
}

impl B2bua {
    /// Resolve what a transfer asks for: `queue:NAME`, an agent id, a queue or
    /// route number, or a SIP URI (its user part first; a URI naming no agent or
    /// number must point at a static route's target).
    pub(crate) fn transfer_target(&self, now: Instant, to: &str) -> Result<Target, CommandError> {
        let to = to.trim();
        if let Some(name) = to.strip_prefix("queue:") {
            return match self.snap.queue(name) {
                Some(q) => self.open_queue(now, &q.name),
                None => Err(CommandError::NoTarget(to.to_string())),
            };
        }
        let uri = uri_in(to);
        let is_uri = uri.starts_with("sip:") || uri.starts_with("sips:");
        let number = if is_uri { uri_user(uri) } else { Some(to) };
        if let Some(n) = number.filter(|n| !n.is_empty()) {
            if self.snap.agent(n).is_some() {
                return Ok(Target::Agent(n.to_string()));
            }
            match self.snap.destination(n) {
                Some(control::Destination::Queue(q)) => return self.open_queue(now, &q.name),
                Some(control::Destination::Route(r)) => {
                    return Ok(Target::Leg(LegTarget {
                        uri: Self::target_uri(&r.target, n),
                        remote: r.target.addr,
                        transport: r.target.transport,
                        local: None,
                        route: Vec::new(),
                        browser: false,
                    }))
                }
                None => {}
            }
        }
        if !is_uri {
            return Err(CommandError::NoTarget(to.to_string()));
        }
        // A URI of its own: only towards a host:port a static route already sends
        // calls to (the edge is no open relay).
        let allowed = sip::dialog::uri_addr(uri).and_then(|(addr, transport)| {
            self.snap.config.routes.iter().find(|r| {
                r.target.addr == addr && transport.is_none_or(|t| t == r.target.transport)
            })
        });
        match allowed {
            Some(r) => Ok(Target::Leg(LegTarget {
                uri: uri.to_string(),
                remote: r.target.addr,
                transport: r.target.transport,
                local: None,
                route: Vec::new(),
                browser: false,
            })),
            None => Err(CommandError::Forbidden(format!(
                "`{uri}` is not a destination the routes allow"
            ))),
        }
    }

    /// A transfer into queue `name` as its hours have it: the queue, the queue
    /// its `after_hours` deflects to, or the forward target; a closed queue that
    /// would answer the caller itself (announce, voicemail) refuses the transfer.
    fn open_queue(&self, now: Instant, name: &str) -> Result<Target, CommandError> {
        let r = self.snap.after_hours_route(name, self.wall(now));
        match r.action {
            None => Ok(Target::Queue(r.queue)),
            Some(control::AfterHours::Forward(t)) => Ok(Target::Leg(LegTarget {
                uri: t.uri.clone(),
                remote: t.addr,
                transport: t.transport,
                local: None,
                route: Vec::new(),
                browser: false,
            })),
            Some(_) => Err(CommandError::Closed(r.queue)),
        }
    }

    /// The agent's consultation call a REFER's `Replaces` names: another answered
    /// call whose caller's leg is that dialog (the edge's tag is the To or From
    /// tag, as phones differ) and comes from the same phone as the REFER (or was
    /// placed by the same agent).
    fn consultation_of(&self, id: CallId, r: &Replaces) -> Result<CallId, CommandError> {
        let c = &self.calls[&id];
        let phone = c.b.as_ref().map(|b| b.dialog.flow.remote);
        let agent = c.agent.as_deref();
        let other = self.calls.values().find(|o| {
            o.id != id
                && o.a.call_id == r.call_id
                && (o.a.local_tag == r.to_tag || o.a.local_tag == r.from_tag)
                && o.a
                    .remote_tag
                    .as_deref()
                    .is_some_and(|t| t == r.from_tag || t == r.to_tag)
        });
        let Some(o) = other else {
            return Err(CommandError::Forbidden(
                "no call of this phone matches the Replaces dialog".into(),
            ));
        };
        let same_phone = phone == Some(o.a.flow.remote);
        let same_agent = agent.is_some() && o.dialler.as_deref() == agent;
        if !same_phone && !same_agent {
            return Err(CommandError::Forbidden(
                "the Replaces dialog is another phone's call".into(),
            ));
        }
        let ready = o.is_established()
            && o.transfer.is_none()
            && o.consult.is_none()
            && o.reinvite.is_none()
            && o.b.as_ref().is_some_and(|b| b.answered && b.tx.is_none());
        if !ready {
            return Err(CommandError::Conflict(
                "the consultation call is not answered or is busy".into(),
            ));
        }
        if o.webrtc[Side::B as usize].is_some() {
            return Err(CommandError::Conflict(
                "the consultation's far party is a browser: transfer blind".into(),
            ));
        }
        Ok(o.id)
    }

    /// Attended transfer: the far party of call `other` (the agent's
    /// consultation) is moved onto call `id`'s B port by a re-INVITE and becomes
    /// its B leg (the transfer completes as a blind one does when it answers);
    /// the consultation call ends with a BYE to the agent's phone. A refused
    /// re-INVITE ends the far party and gives the customer back to the agent.
    fn join(&mut self, now: Instant, id: CallId, other: CallId) {
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(o) = self.calls.get_mut(&other) else {
            return self.transfer_failed(now, id, 481);
        };
        let Some(mut leg) = o.b.take() else {
            return self.transfer_failed(now, id, 481);
        };
        // Its agent (if the consultation went to one) stays busy: it is this call's now.
        o.agent = None;
        let last_sent = o.session.sent_sdp[Side::B as usize].clone();
        let o_public = o.public_id.clone();
        self.index
            .own_dialog(&leg.dialog, DialogOwner::Call(id, Side::B));
        self.end_call(now, other, 200, "joined into a transfer");
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(offer) = c.transfer_offer() else {
            return self.transfer_failed(now, id, 488);
        };
        // The far party's dialog keeps its o= session; the version goes one up.
        let body = offer.rewrite(media_addr, c.b_port);
        let body = match last_sent
            .as_deref()
            .and_then(|s| s.lines().find(|l| l.starts_with("o=")))
        {
            Some(o_line) => with_o_line(&body, &bump_o_version(&format!("{o_line}\r\n"))),
            None => body,
        };
        let mut req = leg.dialog.request(
            Method::Invite,
            Some((body.as_bytes(), "application/sdp")),
            &user_agent,
        );
        req.headers
            .push(rsip::headers::Allow::new(sip::message::ALLOW).into());
        c.attempts += 1;
        leg.attempt = c.attempts;
        leg.provisional = true;
        let tx = self.ep.send_request(now, req, leg.dialog.flow);
        leg.tx = Some(tx);
        let c = self.calls.get_mut(&id).expect("present");
        if let Some(t) = c.transfer.as_mut() {
            t.target_agent = leg.agent.clone();
        }
        c.session.sent_sdp[Side::B as usize] = Some(body);
        info!(call = %c.public_id, consultation = %o_public, "attended transfer: the consultation's far party moves to the customer");
        c.b = Some(leg);
        c.client_txs.push(tx);
        self.index
            .add_client(tx, id, ClientRole::Initial(self.calls[&id].attempts));
    }

    /// A new INVITE with `Replaces` (RFC 3891): its sender takes the place of the
    /// agent's leg the header names (a phone the agent REFERred to the edge, a
    /// pickup). The edge answers it with the customer's codecs on the B port and
    /// BYEs the replaced leg; the customer's leg is untouched. No such confirmed
    /// dialog: 481; the customer's own leg: 403; a call busy with a transfer or
    /// an offer: 491; no offer (or a browser's): 488.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_invite_replaces(
        &mut self,
        now: Instant,
        tx: TxId,
        req: Request,
        head: Head,
        flow: sip::Flow,
        r: Replaces,
        agent: Option<String>,
    ) {
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let matches = |d: &sip::dialog::Dialog| {
            d.call_id == r.call_id
                && d.local_tag == r.to_tag
                && d.remote_tag.as_deref() == Some(r.from_tag.as_str())
        };
        let found = self.calls.values().find_map(|c| {
            if matches(&c.a) {
                Some((c.id, Side::A))
            } else if c
                .b
                .as_ref()
                .is_some_and(|b| b.answered && matches(&b.dialog))
            {
                Some((c.id, Side::B))
            } else {
                None
            }
        });
        let warn = |text: &str| vec![crate::warning(text)];
        let Some((id, side)) = found else {
            info!(call_id = %head.call_id, "INVITE with Replaces naming no dialog of the edge: 481");
            return self.reply(now, tx, &req, 481, None);
        };
        let _span = self.span(id).entered();
        if side == Side::A {
            info!("INVITE with Replaces naming the customer's leg: 403");
            let w = warn("only the agent's leg of a call can be replaced");
            return self.reply_with(now, tx, &req, 403, w);
        }
        let c = &self.calls[&id];
        let busy = !c.is_established()
            || c.transfer.is_some()
            || c.consult.is_some()
            || c.reinvite.is_some()
            || c.b_ack_waits_for_a.is_some();
        if busy {
            let mut h = warn("the call is busy with a transfer or an offer");
            h.push(rsip::headers::RetryAfter::new("1").into());
            return self.reply_with(now, tx, &req, 491, h);
        }
        let offer = is_sdp(&req.headers, &req.body)
            .then(|| Sdp::parse(&req.body).ok())
            .flatten()
            .filter(|s| matches!(s.webrtc(), Ok(None)));
        let (Some(offer), Some(ours)) = (offer, c.transfer_offer()) else {
            let w = warn("an offer of plain RTP is needed (no late offer, no browser)");
            return self.reply_with(now, tx, &req, 488, w);
        };
        let addr = offer.audio_target().ok().flatten();
        let te = offer.telephone_event_pt();
        // The customer's codecs from the B port, as the edge's own session.
        let session = self.ep.ids().next_u64() >> 1;
        let fam = if media_addr.is_ipv4() { "IP4" } else { "IP6" };
        let body = with_o_line(
            &ours.rewrite(media_addr, c.b_port),
            &format!("o=edge {session} 1 IN {fam} {media_addr}\r\n"),
        );
        let tag = self.ep.ids().token();
        let dialog = Dialog::uas(&req, &head, tag.clone(), flow, crate::contact_for(flow));
        let mut ok = sip::message::response(&req, 200, Some(&tag), self.ep.server_name());
        ok.headers
            .push(rsip::headers::Contact::new(dialog.local_contact.clone()).into());
        ok.headers
            .push(rsip::headers::Allow::new(sip::message::ALLOW).into());
        ok.body = sip::message::set_body(&mut ok.headers, body.as_bytes(), Some("application/sdp"));
        self.ep.respond(now, tx, ok);
        let c = self.calls.get_mut(&id).expect("present");
        c.attempts += 1;
        let leg = BLeg {
            dialog,
            tx: None,
            provisional: true,
            cancel_pending: false,
            agent: agent.clone(),
            attempt: c.attempts,
            answered: true,
        };
        self.index
            .add_dialog((head.call_id.clone(), tag), DialogOwner::Call(id, Side::B));
        let mut old = c.b.replace(leg).expect("answered B leg");
        bye_leg(&mut self.ep, &mut self.index, c, &mut old, now, &user_agent);
        let old_agent = std::mem::replace(&mut c.agent, agent.clone());
        c.te_pt[Side::B as usize] = te;
        c.session.sent_sdp[Side::B as usize] = Some(body);
        session::arm(c, &mut self.timers, now, Side::B, None);
        let at_secs = now.saturating_duration_since(c.started).as_secs_f64();
        c.transfers.push(crate::TransferEvent {
            to: agent.clone().unwrap_or_else(|| flow.remote.to_string()),
            by: TransferBy::Replaces,
            kind: "replaces",
            outcome: "completed",
            status: None,
            at_secs,
        });
        let had_webrtc = c.webrtc[Side::B as usize].take().is_some();
        info!(call = %c.public_id, from = %flow.remote, agent = ?agent, "INVITE with Replaces: the new phone has the call");
        *self
            .stats
            .transfers
            .entry("replaces_completed")
            .or_default() += 1;
        *self.stats.transfers_by.entry("invite").or_default() += 1;
        if had_webrtc {
            self.outputs.push_back(Output::Media(
                id,
                media::Command::WebRtc {
                    side: Side::B,
                    local: None,
                },
            ));
        }
        if let Some(a) = old_agent.filter(|a| Some(a) != agent.as_ref()) {
            self.agent_call(id, &a, "ended");
            self.agent_released(now, &a, true);
        }
        if let Some(a) = &agent {
            self.seize_and_claim(id, a);
            self.offer_answered(now, a);
            self.agent_changed(now, a);
            self.agent_call(id, a, "connected");
        }
        self.set_remote(id, Side::B, addr);
        self.set_held(id, Side::A, false);
        self.resume_customer(now, id);
    }

    /// Whether call `id` can be transferred to `target` now.
    pub(crate) fn transfer_allowed(&self, id: CallId, target: &Target) -> Result<(), CommandError> {
        let c = &self.calls[&id];
        if c.state == CallState::Ending {
            return Err(CommandError::Conflict("the call is ending".into()));
        }
        if !c.is_established() {
            return Err(CommandError::NotAnswered);
        }
        let Some(b) = c.b.as_ref().filter(|b| b.answered && b.tx.is_none()) else {
            return Err(CommandError::Conflict(
                "the call has no answered agent leg to transfer".into(),
            ));
        };
        if c.transfer.is_some() {
            return Err(CommandError::Conflict(
                "a transfer of this call is under way".into(),
            ));
        }
        if c.reinvite.is_some() || c.b_ack_waits_for_a.is_some() {
            return Err(CommandError::Conflict(
                "an offer/answer is under way on this call".into(),
            ));
        }
        if let (Target::Agent(a), Some(current)) = (target, b.agent.as_ref().or(c.agent.as_ref())) {
            if a == current {
                return Err(CommandError::Forbidden(format!(
                    "agent {a} is already on this call (a transfer to itself)"
                )));
            }
        }
        Ok(())
    }

    /// `POST /api/v1/calls/{id}/transfer`: `by_agent` is the asking user's agent
    /// when it is an agent (it may transfer only its own call).
    pub(crate) fn transfer_command(
        &mut self,
        now: Instant,
        call_public: &str,
        to: &str,
        by_agent: Option<&str>,
    ) -> Result<(), CommandError> {
        let id = self.own_call(call_public, by_agent)?;
        let target = self.transfer_target(now, to)?;
        self.transfer_allowed(id, &target)?;
        let _span = self.span(id).entered();
        self.begin_transfer(now, id, target, to.to_string(), TransferBy::Api, None);
        self.process(now);
        Ok(())
    }

    /// A REFER on the agent's leg (`side` B): 202 and the transfer, or the status
    /// that says why not.
    pub(crate) fn on_refer(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        tx: TxId,
        req: Request,
        cseq: u32,
    ) {
        self.calls
            .get_mut(&id)
            .expect("checked")
            .server_txs
            .push(tx);
        let warn = |text: &str| vec![crate::warning(text)];
        if side == Side::A {
            // The carrier's side: a B2BUA does not let the trunk move its calls.
            info!("REFER from the caller's side: 403");
            let w = warn("transfers are made by the agent's side");
            return self.reply_with(now, tx, &req, 403, w);
        }
        let values = refer_to(&req);
        let [value] = values.as_slice() else {
            let w = warn("a REFER needs exactly one Refer-To");
            return self.reply_with(now, tx, &req, 400, w);
        };
        let uri = uri_in(value);
        let target = match uri.split_once('?') {
            // Refer-To with embedded headers: only Replaces (an attended transfer).
            Some((_, headers)) => match replaces_of(headers) {
                Some(r) => self.consultation_of(id, &r).map(Target::Join),
                None => {
                    info!(refer_to = %uri, "REFER with embedded headers other than Replaces: 501");
                    let w = warn("of the headers a Refer-To may embed, only Replaces is supported");
                    return self.reply_with(now, tx, &req, 501, w);
                }
            },
            None => self.transfer_target(now, uri),
        };
        let target = target.and_then(|t| self.transfer_allowed(id, &t).map(|_| t));
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                let code = match &e {
                    CommandError::NoTarget(_) => 404,
                    CommandError::Forbidden(_) => 403,
                    CommandError::Closed(_) => 480,
                    CommandError::NoCall => 481,
                    _ => 491,
                };
                info!(refer_to = %uri, code, error = %e, "REFER refused");
                let mut h = warn(&e.to_string());
                if code == 491 {
                    h.push(rsip::headers::RetryAfter::new("1").into());
                }
                return self.reply_with(now, tx, &req, code, h);
            }
        };
        self.reply(now, tx, &req, 202, None);
        self.begin_transfer(
            now,
            id,
            target,
            uri.to_string(),
            TransferBy::Refer,
            Some(cseq),
        );
    }

    /// Start transferring call `id` (checked by [`Self::transfer_allowed`]).
    pub(crate) fn begin_transfer(
        &mut self,
        now: Instant,
        id: CallId,
        target: Target,
        to: String,
        by: TransferBy,
        refer_id: Option<u32>,
    ) {
        let c = self.calls.get_mut(&id).expect("checked");
        let leg = c.b.take().expect("checked: an answered B leg");
        self.index
            .own_dialog(&leg.dialog, DialogOwner::Transferor(id));
        let timer = c.session.leg[Side::B as usize];
        // The transferor's session timer stops while it is aside (its refreshes
        // would go to the new leg); a recall starts it again.
        session::arm(c, &mut self.timers, now, Side::B, None);
        let at_secs = now.saturating_duration_since(c.started).as_secs_f64();
        let a_held = c.held[Side::A as usize];
        c.transfers.push(crate::TransferEvent {
            to: to.clone(),
            by,
            kind: "blind",
            outcome: "pending",
            status: None,
            at_secs,
        });
        info!(call = %c.public_id, %to, by = by.as_str(), agent = ?leg.agent, "blind transfer");
        *self.stats.transfers_by.entry(by.as_str()).or_default() += 1;
        c.transfer = Some(Transfer {
            by,
            refer_id,
            transferor_agent: leg.agent.clone().or(c.agent.clone()),
            transferor: Some(leg),
            timer,
            sent_sdp: c.session.sent_sdp[Side::B as usize].clone(),
            a_held,
            target_agent: None,
            target_webrtc: None,
            queued: false,
            from_route: c.route.clone(),
        });
        self.notify_transferor(now, id, 100, false);
        if a_held {
            // Held already (silence, or its hold audio): now it hears the transfer.
            self.set_held(id, Side::A, false);
        }
        self.set_held_or(id, Side::A, true, Some(media::audio::RINGBACK));
        match target {
            Target::Agent(agent) => {
                if !self.agent_reachable(now, &agent) {
                    return self.transfer_failed(now, id, 480);
                }
                // Busy here, or (cluster mode) on a call at another node.
                if !self.acd.is_free(&agent) || !self.claimable(now, &agent) {
                    return self.transfer_failed(now, id, 486);
                }
                let targets = self.agent_targets(now, &agent);
                self.seize_and_claim(id, &agent);
                if let Some(t) = self.calls.get_mut(&id).and_then(|c| c.transfer.as_mut()) {
                    t.target_agent = Some(agent.clone());
                }
                self.agent_changed(now, &agent);
                self.agent_call(id, &agent, "ringing");
                self.start_b_forked(now, id, targets, Some(agent));
            }
            Target::Queue(name) => {
                // The transferor is done at once: the call waits in the queue.
                let transferor = self.calls[&id]
                    .transfer
                    .as_ref()
                    .and_then(|t| t.transferor_agent.clone());
                self.notify_transferor(now, id, 200, true);
                self.release_transferor(now, id);
                let exclude = transferor.into_iter().collect();
                self.enqueue_transferred(now, id, name, "queued", exclude);
            }
            Target::Leg(target) => self.start_b(now, id, target, None),
            Target::Join(other) => self.join(now, id, other),
        }
    }

    /// The call waits in queue `name` (a transfer to it, or back to it).
    fn enqueue_transferred(
        &mut self,
        now: Instant,
        id: CallId,
        name: String,
        outcome: &'static str,
        exclude: Vec<String>,
    ) {
        let max_wait = self
            .snap
            .queue(&name)
            .map_or(Duration::from_secs(60), |q| q.max_wait);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = c.transfer.as_mut() else {
            return;
        };
        t.queued = true;
        c.tried.clear();
        // Not offered again at once: the agent who transferred it, or the one
        // who just did not take it.
        c.tried.extend(exclude);
        c.route = Route::Queue { name: name.clone() };
        c.wait_deadline = Some(now + max_wait);
        c.queued_at = Some(now);
        if let Some(e) = c.transfers.last_mut() {
            e.outcome = outcome;
        }
        info!(call = %c.public_id, queue = %name, "transferred call waits in the queue");
        *self.stats.transfers.entry(outcome).or_default() += 1;
        self.timers.set(now + max_wait, Timer::MaxWait(id));
        self.acd.enqueue(id);
        self.dispatch_queues(now);
    }

    /// A transfer's NOTIFY (RFC 3515 §2.4.5): the target's progress as a sipfrag
    /// status line, on the transferor's leg, when a REFER asked.
    pub(crate) fn notify_transferor(
        &mut self,
        now: Instant,
        id: CallId,
        code: u16,
        terminated: bool,
    ) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = c.transfer.as_mut() else {
            return;
        };
        let (Some(refer_id), Some(leg)) = (t.refer_id, t.transferor.as_mut()) else {
            return;
        };
        let body = format!("SIP/2.0 {code} {}\r\n", reason_phrase(code));
        let mut req = leg.dialog.request(
            Method::Notify,
            Some((body.as_bytes(), "message/sipfrag;version=2.0")),
            &user_agent,
        );
        req.headers
            .push(rsip::headers::Event::new(format!("refer;id={refer_id}")).into());
        let state = if terminated {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        req.headers
            .push(rsip::headers::SubscriptionState::new(state).into());
        let flow = leg.dialog.flow;
        let tx = self.ep.send_request(now, req, flow);
        c.client_txs.push(tx);
        self.index.add_client(tx, id, ClientRole::Notify);
    }

    /// The transferor's part is over: BYE its leg (if still up) and release its
    /// agent to wrap-up.
    fn release_transferor(&mut self, now: Instant, id: CallId) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = c.transfer.as_mut() else {
            return;
        };
        let agent = t.transferor_agent.take();
        if let Some(mut leg) = t.transferor.take() {
            bye_leg(&mut self.ep, &mut self.index, c, &mut leg, now, &user_agent);
        }
        if c.agent == agent {
            c.agent = None;
        }
        if let Some(a) = agent {
            self.agent_call(id, &a, "ended");
            self.agent_released(now, &a, true);
        }
    }

    /// The target's 2xx (ACKed): side B's media moves from the transferor to it,
    /// or, when its SDP is unusable, it gets a BYE and the transfer fails.
    pub(crate) fn transfer_answer(&mut self, now: Instant, id: CallId, sdp: Option<Sdp>) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let browser =
            c.b.as_ref()
                .is_some_and(|b| b.dialog.flow.transport.is_websocket());
        let ice = c
            .transfer
            .as_mut()
            .and_then(|t| t.target_webrtc.take())
            .filter(|_| browser);
        let usable = sdp.and_then(|s| {
            let addr = s.audio_target().ok()?;
            match (s.webrtc(), &ice) {
                (Ok(Some(r)), Some(_)) => Some((s, addr, Some(r))),
                (Ok(None), _) => Some((s, addr, None)),
                _ => None,
            }
        });
        let Some((sdp, addr, remote)) = usable else {
            warn!(call = %c.public_id, "transfer target answered without a usable SDP: BYE");
            return self.transfer_failed(now, id, 488);
        };
        let had = c.webrtc[Side::B as usize].is_some();
        let local = ice.filter(|_| remote.is_some());
        c.webrtc[Side::B as usize] = local.clone();
        c.te_pt[Side::B as usize] = sdp.telephone_event_pt();
        if local.is_some() || had {
            self.outputs.push_back(Output::Media(
                id,
                media::Command::WebRtc {
                    side: Side::B,
                    local,
                },
            ));
        }
        if let Some(r) = &remote {
            self.webrtc_remote(id, Side::B, r);
        }
        self.set_remote(id, Side::B, addr);
        self.transfer_connected(now, id);
    }

    /// The target answered (its 2xx ACKed, side B's media pointed at it): the
    /// customer is resumed towards it and the transferor released.
    pub(crate) fn transfer_connected(&mut self, now: Instant, id: CallId) {
        self.notify_transferor(now, id, 200, true);
        self.release_transferor(now, id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = c.transfer.take() else {
            return;
        };
        let agent = c.b.as_ref().and_then(|b| b.agent.clone());
        c.agent = agent.clone();
        if let Some(e) = c.transfers.last_mut() {
            e.outcome = "completed";
        }
        c.wait_deadline = None;
        info!(call = %c.public_id, agent = ?agent, by = t.by.as_str(), "transfer completed");
        *self.stats.transfers.entry("completed").or_default() += 1;
        self.acd.withdraw(id);
        if let Some(a) = agent {
            self.offer_answered(now, &a);
            self.agent_call(id, &a, "connected");
        }
        self.set_held(id, Side::A, false);
        self.resume_customer(now, id);
    }

    /// The customer was told `sendonly`/`inactive` (the transferor held it by
    /// re-INVITE before transferring): offer `sendrecv` again so it sends to the
    /// new party. Otherwise the customer's leg is left alone.
    pub(crate) fn resume_customer(&mut self, now: Instant, id: CallId) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(sent) = c.session.sent_sdp[Side::A as usize].as_ref() else {
            return;
        };
        let held = sent
            .split("\r\n")
            .any(|l| matches!(l, "a=sendonly" | "a=inactive"));
        if !held || c.reinvite.is_some() || c.session.refreshing[Side::A as usize] {
            return;
        }
        let body = offer_body(sent.clone()) + "a=sendrecv\r\n";
        let body = bump_o_version(&body);
        c.session.sent_sdp[Side::A as usize] = Some(body.clone());
        let mut req = c.a.request(
            Method::Invite,
            Some((body.as_bytes(), "application/sdp")),
            &user_agent,
        );
        req.headers
            .push(rsip::headers::Allow::new(sip::message::ALLOW).into());
        let flow = c.a.flow;
        c.session.refreshing[Side::A as usize] = true;
        info!(call = %c.public_id, "customer resumed by re-INVITE (it was held in SIP)");
        let tx = self.ep.send_request(now, req, flow);
        let c = self.calls.get_mut(&id).expect("present");
        c.client_txs.push(tx);
        self.index
            .add_client(tx, id, ClientRole::Refresh(Side::A, true));
    }

    /// The transfer's target failed with `code` (busy, no answer, refused): back
    /// to the transferor if it is still on the call, else to the queue the call
    /// came from, else the call ends.
    pub(crate) fn transfer_failed(&mut self, now: Instant, id: CallId, code: u16) {
        self.cancel_forks(now, id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(mut old) = c.b.take() {
            if old.tx.is_some() {
                c.stale.push(old);
            } else {
                self.index
                    .remove_dialog(&old.dialog.call_id, &old.dialog.local_tag);
                if old.answered {
                    // It answered with something the edge cannot use.
                    let ua = self.snap.config.sip.user_agent.clone();
                    bye_leg(&mut self.ep, &mut self.index, c, &mut old, now, &ua);
                }
            }
        }
        let Some(t) = c.transfer.as_mut() else {
            return;
        };
        t.target_webrtc = None;
        if let Some(e) = c.transfers.last_mut() {
            e.status = Some(code);
        }
        let missed = t.target_agent.take();
        if let Some(a) = &missed {
            self.agent_call(id, a, "missed");
            self.agent_released(now, a, false);
        }
        self.notify_transferor(now, id, code, true);
        let c = self.calls.get_mut(&id).expect("present");
        let t = c.transfer.as_mut().expect("checked");
        info!(call = %c.public_id, code, "transfer target failed");
        if t.transferor.is_some() {
            let mut t = c.transfer.take().expect("checked");
            let leg = t.transferor.take().expect("checked");
            self.index
                .own_dialog(&leg.dialog, DialogOwner::Call(id, Side::B));
            c.agent = t.transferor_agent.clone();
            c.b = Some(leg);
            c.session.sent_sdp[Side::B as usize] = t.sent_sdp.take();
            session::arm(c, &mut self.timers, now, Side::B, t.timer);
            if let Some(e) = c.transfers.last_mut() {
                e.outcome = "recalled";
            }
            info!(call = %c.public_id, agent = ?c.agent, "back to the transferring agent");
            *self.stats.transfers.entry("recalled").or_default() += 1;
            // Off the ringback; back on its own hold audio if the agent had held it.
            self.set_held(id, Side::A, false);
            if t.a_held {
                self.set_held(id, Side::A, true);
            }
            return;
        }
        match t.from_route.clone() {
            Route::Queue { name } if self.snap.queue(&name).is_some() => {
                let exclude = missed.into_iter().collect();
                self.enqueue_transferred(now, id, name, "requeued", exclude);
            }
            _ => {
                if let Some(e) = c.transfers.last_mut() {
                    e.outcome = "failed";
                }
                *self.stats.transfers.entry("failed").or_default() += 1;
                warn!(call = %c.public_id, code, "transfer failed and nobody is left to take the call: ending it");
                self.end_call(now, id, 480, "transfer failed");
            }
        }
    }

    /// A request on the transferor's leg while it is aside: its BYE takes it out
    /// of the call (the transfer goes on); a new offer waits for the transfer.
    pub(crate) fn on_transferor_request(
        &mut self,
        now: Instant,
        id: CallId,
        tx: TxId,
        req: Request,
        head: Head,
    ) {
        let Some(leg) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.transfer.as_mut())
            .and_then(|t| t.transferor.as_mut())
        else {
            return self.reply(now, tx, &req, 481, None);
        };
        if !leg.dialog.accept_remote_seq(head.cseq, req.method) {
            return self.reply(now, tx, &req, 500, None);
        }
        match req.method {
            Method::Bye => {
                self.reply(now, tx, &req, 200, None);
                let c = self.calls.get_mut(&id).expect("present");
                let t = c.transfer.as_mut().expect("present");
                let leg = t.transferor.take().expect("present");
                self.index
                    .remove_dialog(&leg.dialog.call_id, &leg.dialog.local_tag);
                info!(call = %c.public_id, "the transferring agent hung up; the transfer goes on");
                self.release_transferor(now, id);
            }
            Method::Options => self.reply(now, tx, &req, 200, None),
            Method::Invite | Method::Refer | Method::Update | Method::Info => {
                let h = rsip::headers::RetryAfter::new("1").into();
                self.reply_with(now, tx, &req, 491, vec![h]);
            }
            _ => self.reply(now, tx, &req, 405, None),
        }
    }

    /// The call ends with a transfer under way: BYE the transferor, release the
    /// agent being rung.
    pub(crate) fn transfer_abandoned(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(t) = c.transfer.as_mut() else {
            return;
        };
        if let Some(a) = t.target_agent.take() {
            self.agent_call(id, &a, "ended");
            self.agent_released(now, &a, false);
        }
        let c = self.calls.get_mut(&id).expect("present");
        if let Some(e) = c.transfers.last_mut().filter(|e| e.outcome == "pending") {
            e.outcome = "abandoned";
            *self.stats.transfers.entry("abandoned").or_default() += 1;
        }
        self.release_transferor(now, id);
        if let Some(c) = self.calls.get_mut(&id) {
            c.transfer = None;
        }
    }
}

impl Transfer {
    /// The transferor's dialog while it is aside.
    pub(crate) fn transferor_dialog(&self) -> Option<&sip::dialog::Dialog> {
        self.transferor.as_ref().map(|l| &l.dialog)
    }
}

impl Call {
    /// The offer a transfer's target gets: what the customer agreed to (the
    /// answer the edge sent it), `sendrecv`.
    pub(crate) fn transfer_offer(&self) -> Option<sip::sdp::Sdp> {
        let sent = self.session.sent_sdp[Side::A as usize].as_ref()?;
        sip::sdp::Sdp::parse(offer_body(sent.clone()).as_bytes()).ok()
    }
}
