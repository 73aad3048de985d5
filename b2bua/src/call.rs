//! The state of one B2BUA call: the caller's leg (A), the callee's leg (B), media
//! ports, the pending re-INVITE, and where it is routed.

use crate::CallId;
use control::SipTarget;
use rsip::Request;
use sip::dialog::Dialog;
use sip::sdp::Sdp;
use sip::session_timer::Negotiated;
use sip::TxId;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

pub use media::Side;

/// Where a call is routed.
#[derive(Debug, Clone)]
pub enum Route {
    /// A static route: number (as configured) → target.
    Static { number: String, target: SipTarget },
    /// A queue of agents.
    Queue { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Waiting in a queue for a free agent.
    Queued,
    /// INVITE sent on the B leg, no provisional yet.
    Calling,
    /// B sent a provisional response.
    Early,
    /// B (the agent) answered and hears the queue's announcement; A is not answered
    /// yet (it hears ringback).
    Announcing,
    /// B answered, 200 sent to A, A's ACK not yet in.
    Answered,
    Connected,
    /// Being torn down: BYE/CANCEL out, waiting for the last transactions.
    Ending,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Queued => "queued",
            CallState::Calling => "calling",
            CallState::Early => "ringing",
            CallState::Announcing => "announcing",
            CallState::Answered => "answered",
            CallState::Connected => "connected",
            CallState::Ending => "ending",
        }
    }
}

/// The callee leg of one attempt.
#[derive(Debug)]
pub struct BLeg {
    pub dialog: Dialog,
    /// The INVITE client transaction while it has no final response.
    pub tx: Option<TxId>,
    pub provisional: bool,
    /// CANCEL wanted before any provisional arrived (§9.1: wait for one).
    pub cancel_pending: bool,
    /// Agent id when the attempt goes to a queue agent.
    pub agent: Option<String>,
    pub attempt: u32,
    /// Its INVITE got a 2xx (and our ACK): ending the call needs a BYE, whatever
    /// state the call is in (an answer the edge refuses comes before `Answered`).
    pub answered: bool,
}

/// A re-INVITE being passed from one side to the other.
#[derive(Debug)]
pub struct Reinvite {
    pub from: Side,
    pub server_tx: TxId,
    /// The offer came in the 2xx (re-INVITE without SDP): the ACK carries the answer.
    pub offerless: bool,
    /// The offer holds (`Some(true)`) or resumes (`Some(false)`) the other side.
    pub hold: Option<bool>,
    /// The offer was `inactive` and went on as `sendonly` (the edge plays hold audio):
    /// the answer back must say `inactive`.
    pub answer_inactive: bool,
    /// The previous media target of `from`, restored when the other side refuses.
    pub previous: Option<SocketAddr>,
    /// The session timer our 2xx grants `from` (RFC 4028: a re-INVITE refreshes).
    pub grant: Option<Negotiated>,
}

#[derive(Debug)]
pub struct Call {
    pub id: CallId,
    pub public_id: String,
    pub state: CallState,
    pub caller: String,
    pub callee: String,
    pub route: Route,
    pub agent: Option<String>,
    pub started: Instant,
    pub answered: Option<Instant>,
    /// The caller's INVITE server transaction, until it has a final response.
    pub a_tx: Option<TxId>,
    pub a_invite: Request,
    pub a: Dialog,
    /// The caller's last SDP (the offer, for new attempts).
    pub a_sdp: Option<Sdp>,
    pub b: Option<BLeg>,
    /// More legs of the current offer ringing beside `b` (an agent's other
    /// registered phones); the first to answer becomes `b`.
    pub forks: Vec<BLeg>,
    /// Earlier attempts whose INVITE may still answer (to be ACKed and BYEd).
    pub stale: Vec<BLeg>,
    pub a_port: u16,
    pub b_port: u16,
    pub reinvite: Option<Reinvite>,
    /// Our ACK to B waits for A's ACK (the offer came in B's 2xx): CSeq of B's INVITE.
    pub b_ack_waits_for_a: Option<(u32, Side)>,
    /// Agents already offered this call in the current round.
    pub tried: HashSet<String>,
    pub attempts: u32,
    pub wait_deadline: Option<Instant>,
    /// When it started waiting in its queue (kept when an agent's miss sends it
    /// back; a transfer into a queue starts it again): the cluster serves the
    /// oldest first.
    pub queued_at: Option<Instant>,
    /// In-dialog transactions (BYE, CANCEL) still open while ending.
    pub open_ending: u32,
    /// Final status reported to A (or 200 when answered).
    pub outcome: Option<u16>,
    pub end_reason: &'static str,
    /// RTP address each side announced (index: `Side as usize`).
    pub remote: [Option<SocketAddr>; 2],
    /// RFC 4733 payload type each side announced (index: `Side as usize`).
    pub te_pt: [Option<u8>; 2],
    /// Every client / server transaction registered for this call, unindexed at the end.
    pub client_txs: Vec<TxId>,
    pub server_txs: Vec<TxId>,
    /// `Some(paused)` while the call is recorded.
    pub recording: Option<bool>,
    /// DTMF digits received in the media (capped).
    pub digits: Vec<super::DigitEvent>,
    /// Sides on hold (index: `Side as usize`), by re-INVITE or API.
    pub held: [bool; 2],
    /// Our 200 to A while the agent hears the announcement (its SDP).
    pub pending_answer: Option<String>,
    /// Session timers (RFC 4028) of the two legs, each negotiated on its own.
    pub session: SessionTimers,
    /// Reserved data from the trunk's INVITE (`[[reserved_data]]`), field → value.
    pub reserved: Vec<(String, String)>,
    /// The queue was closed and the edge answered the caller itself.
    pub after_hours: Option<Closed>,
    /// The after-hours action that decided where the call went (`queue`,
    /// `forward`, `announce`, `voicemail`), if its queue was closed.
    pub deflected: Option<&'static str>,
    /// The edge's ICE credentials on a side that is a browser (WebRTC) leg.
    pub webrtc: [Option<media::webrtc::IceCredentials>; 2],
    /// The agent who placed this call (dialling out): busy until it ends.
    pub dialler: Option<String>,
    /// A blind transfer under way.
    pub transfer: Option<crate::transfer::Transfer>,
    /// The call's transfers (for the API's call events).
    pub transfers: Vec<crate::TransferEvent>,
    /// A consultation under way (the agent talks to a third party, the
    /// customer on hold).
    pub consult: Option<crate::consult::Consult>,
    /// A conference's flags of the customer and the agent (index `Side`):
    /// muted, deaf (their hold is `held`).
    pub party_flags: [[bool; 2]; 2],
    /// Parties added to and removed from the call's conference.
    pub participant_events: Vec<crate::ParticipantEvent>,
    /// The conference member being moved onto the B port (the agent left).
    pub promoting: Option<crate::MonitorId>,
    /// The customer left a conference that goes on without it (its leg is over).
    pub a_gone: bool,
}

/// A call the edge answered because its queue was closed.
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    pub voicemail: bool,
    pub phase: ClosedPhase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedPhase {
    /// The caller hears the after-hours announcement.
    Announcing,
    /// The caller's voicemail is being recorded.
    Recording,
}

/// The session timers of a call's two legs (index `Side as usize`): the edge is UAS
/// on A and UAC on B, and runs one timer per dialog.
#[derive(Debug, Default)]
pub struct SessionTimers {
    /// The timer in force on each leg.
    pub leg: [Option<Negotiated>; 2],
    /// Bumped each time a leg's timer is (re)armed: older timers are stale.
    pub generation: [u32; 2],
    /// What the 2xx to A's INVITE grants, until it is sent.
    pub a_grant: Option<Negotiated>,
    /// The interval asked of B (raised once by a 422's Min-SE).
    pub b_asked: u32,
    /// The last SDP the edge sent on each leg (the body of a refresh re-INVITE).
    pub sent_sdp: [Option<String>; 2],
    /// Each leg's peer allows UPDATE (refreshes go by UPDATE then, else re-INVITE).
    pub peer_update: [bool; 2],
    /// A refresh the edge sent on this leg is waiting for its answer.
    pub refreshing: [bool; 2],
}

impl Call {
    pub fn dialog(&self, side: Side) -> Option<&Dialog> {
        match side {
            Side::A => Some(&self.a),
            Side::B => self.b.as_ref().map(|b| &b.dialog),
        }
    }

    pub fn dialog_mut(&mut self, side: Side) -> Option<&mut Dialog> {
        match side {
            Side::A => Some(&mut self.a),
            Side::B => self.b.as_mut().map(|b| &mut b.dialog),
        }
    }

    /// The edge's RTP port facing `side`.
    /// The SDP the edge sends `side` for `sdp` (what the other side said): WebRTC
    /// (`offer`: `setup:actpass`, else `passive`) when `side` is a browser leg and
    /// the edge has a DTLS `fingerprint`, plain RTP otherwise.
    pub fn sdp_towards(
        &self,
        side: Side,
        sdp: &Sdp,
        addr: std::net::IpAddr,
        fingerprint: Option<&str>,
        offer: bool,
    ) -> String {
        let ice = self.webrtc[side as usize].as_ref();
        crate::sdp_for(sdp, addr, self.port(side), ice, fingerprint, offer)
    }

    pub fn port(&self, side: Side) -> u16 {
        match side {
            Side::A => self.a_port,
            Side::B => self.b_port,
        }
    }

    /// What the recorder writes beside this call's audio.
    pub fn recording_meta(&self, voicemail: bool) -> crate::RecordingMeta {
        let (queue, route) = self.route_names();
        crate::RecordingMeta {
            call_id: self.public_id.clone(),
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            queue,
            route,
            agent: self.agent.clone(),
            reserved: self.reserved.clone(),
            voicemail,
        }
    }

    /// The queue or the static route (number) the call took, for per-call settings.
    pub fn route_names(&self) -> (Option<String>, Option<String>) {
        match &self.route {
            Route::Queue { name } => (Some(name.clone()), None),
            Route::Static { number, .. } => (None, Some(number.clone())),
        }
    }

    /// B's dialog is confirmed (answered and ACKed) though A may not be answered yet.
    pub fn b_confirmed(&self) -> bool {
        self.is_established() || self.state == CallState::Announcing
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, CallState::Answered | CallState::Connected)
    }
}

/// The calls in progress, by id and by public id. Ids come from one sequence shared
/// with supervisor legs ([`Calls::next_id`]), so a monitor id never equals a call id.
#[derive(Debug)]
pub(crate) struct Calls {
    /// Boxed: a `Call` is ~3.7 KB, and held inline the table's spare capacity
    /// (up to half of it after growing) cost that much again per call — heaptrack
    /// at 1000 relayed calls: 7.5 MB of a 19.3 MB heap peak was this table.
    by_id: HashMap<CallId, Box<Call>>,
    by_public: HashMap<String, CallId>,
    next: u64,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            by_id: HashMap::new(),
            by_public: HashMap::new(),
            next: 1,
        }
    }
}

impl Calls {
    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    pub(crate) fn insert(&mut self, call: Call) {
        self.by_public.insert(call.public_id.clone(), call.id);
        self.by_id.insert(call.id, Box::new(call));
    }

    pub(crate) fn remove(&mut self, id: &CallId) -> Option<Call> {
        let c = self.by_id.remove(id)?;
        self.by_public.remove(&c.public_id);
        Some(*c)
    }

    pub(crate) fn get(&self, id: &CallId) -> Option<&Call> {
        self.by_id.get(id).map(|c| &**c)
    }

    pub(crate) fn get_mut(&mut self, id: &CallId) -> Option<&mut Call> {
        self.by_id.get_mut(id).map(|c| &mut **c)
    }

    pub(crate) fn contains(&self, id: &CallId) -> bool {
        self.by_id.contains_key(id)
    }

    /// The call the API knows as `public_id`.
    pub(crate) fn by_public(&self, public_id: &str) -> Option<CallId> {
        self.by_public.get(public_id).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Call> {
        self.by_id.values().map(|c| &**c)
    }
}

impl std::ops::Index<&CallId> for Calls {
    type Output = Call;
    fn index(&self, id: &CallId) -> &Call {
        &self.by_id[id]
    }
}
