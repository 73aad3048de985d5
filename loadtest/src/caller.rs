//! The calling side, sans-IO: places calls through a [`sip::Endpoint`]
//! (RFC 3261 transactions and retransmissions), ACKs, holds each call for its
//! duration, hangs up with BYE, answers a callee's BYE, retries once with digest
//! credentials on 401/407, and records setup time and post-dial delay.
//!
//! Drive it like the edge's cores: input ([`Caller::start_call`],
//! [`Caller::handle_datagram`], [`Caller::handle_timeout`]), then drain
//! [`Caller::poll_output`] (media start/stop, finished calls), then
//! [`Caller::poll_transmit`], then sleep until [`Caller::poll_timeout`].

use crate::auth;
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response};
use sip::dialog::Dialog;
use sip::endpoint::{Endpoint, Event, Transmit};
use sip::message::{self, Head};
use sip::sdp::Sdp;
use sip::{Flow, TxId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct CallerConfig {
    /// Flow to the target: transport, our advertised address, the target.
    pub flow: Flow,
    pub from_user: String,
    pub to_user: String,
    pub auth: Option<(String, String)>,
    /// How long an answered call is held before BYE.
    pub hold: Duration,
    /// Give up (CANCEL) on a call not answered in this time.
    pub answer_timeout: Duration,
    pub media_ip: IpAddr,
    pub user_agent: String,
}

/// The outcome of one call.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call: u64,
    /// Final status of the INVITE; 408 when nothing answered (timer B).
    pub status: u16,
    /// True when no response at all came back (transaction timeout).
    pub timed_out: bool,
    pub setup: Option<Duration>,
    pub pdd: Option<Duration>,
    pub started: Instant,
    pub ended_by_callee: bool,
    /// Final status of our BYE (None: callee hung up, no answer, or not sent).
    pub bye_status: Option<u16>,
}

#[derive(Debug)]
pub enum Output {
    /// The call is answered: send RTP from the call's port to `remote`.
    MediaStart {
        call: u64,
        remote: Option<SocketAddr>,
    },
    MediaStop {
        call: u64,
    },
    Finished(CallRecord),
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Inviting,
    Up,
    Byeing,
}

#[derive(Debug)]
struct Call {
    phase: Phase,
    dialog: Dialog,
    invite: Request,
    invite_tx: TxId,
    bye_tx: Option<TxId>,
    started: Instant,
    first_18x: Option<Instant>,
    answered: Option<Instant>,
    auth_tried: bool,
    cancelled: bool,
}

pub struct Caller {
    cfg: CallerConfig,
    ep: Endpoint,
    calls: HashMap<u64, Call>,
    by_tx: HashMap<TxId, u64>,
    by_call_id: HashMap<String, u64>,
    timers: BinaryHeap<Reverse<(Instant, u64, bool)>>,
    outputs: VecDeque<Output>,
    next: u64,
}

impl Caller {
    pub fn new(cfg: CallerConfig, seed: u64) -> Self {
        let ep = Endpoint::new(cfg.user_agent.clone(), seed);
        Caller {
            cfg,
            ep,
            calls: HashMap::new(),
            by_tx: HashMap::new(),
            by_call_id: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            next: 1,
        }
    }

    pub fn active(&self) -> usize {
        self.calls.len()
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ep.poll_transmit()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mine = self.timers.peek().map(|Reverse((t, _, _))| *t);
        match (mine, self.ep.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn contact(&self) -> String {
        let f = self.cfg.flow;
        format!(
            "<sip:{}@{}{}>",
            self.cfg.from_user,
            f.local,
            f.transport.uri_param()
        )
    }

    /// Place a call. `rtp_port`: the local RTP port to offer (None: no SDP).
    pub fn start_call(&mut self, now: Instant, rtp_port: Option<u16>) -> u64 {
        let id = self.next;
        self.next += 1;
        let f = self.cfg.flow;
        let call_id = format!("{}@loadtest", self.ep.ids().token());
        let tag = self.ep.ids().token();
        let target = format!("sip:{}@{}", self.cfg.to_user, f.remote);
        let mut dialog = Dialog::uac(
            call_id.clone(),
            tag,
            format!("<sip:{}@{}>", self.cfg.from_user, f.local),
            format!("<{target}>"),
            target,
            f,
            self.contact(),
        );
        let body = rtp_port.map(|p| crate::sdp::offer(self.cfg.media_ip, p, id));
        let invite = dialog.request(
            Method::Invite,
            body.as_deref().map(|b| (b.as_bytes(), "application/sdp")),
            &self.cfg.user_agent,
        );
        let tx = self.ep.send_request(now, invite.clone(), f);
        self.by_tx.insert(tx, id);
        self.by_call_id.insert(call_id, id);
        self.calls.insert(
            id,
            Call {
                phase: Phase::Inviting,
                dialog,
                invite,
                invite_tx: tx,
                bye_tx: None,
                started: now,
                first_18x: None,
                answered: None,
                auth_tried: false,
                cancelled: false,
            },
        );
        self.timers
            .push(Reverse((now + self.cfg.answer_timeout, id, false)));
        id
    }

    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.ep.handle_datagram(now, flow, data);
        self.process(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        while let Some(Reverse((t, id, hangup))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            if hangup {
                self.hang_up(now, id);
            } else {
                self.give_up(now, id);
            }
        }
        self.process(now);
    }

    fn hang_up(&mut self, now: Instant, id: u64) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.phase != Phase::Up {
            return;
        }
        let bye = c.dialog.request(Method::Bye, None, &self.cfg.user_agent);
        let flow = c.dialog.flow;
        c.phase = Phase::Byeing;
        let tx = self.ep.send_request(now, bye, flow);
        c.bye_tx = Some(tx);
        self.by_tx.insert(tx, id);
        self.outputs.push_back(Output::MediaStop { call: id });
    }

    /// Not answered within answer_timeout: CANCEL (after a provisional) or wait
    /// for the transaction to time out.
    fn give_up(&mut self, now: Instant, id: u64) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.phase == Phase::Inviting && !c.cancelled && c.first_18x.is_some() {
            c.cancelled = true;
            if let Some(t) = self.ep.cancel(now, c.invite_tx) {
                self.by_tx.insert(t, id);
            }
        }
    }

    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Response { tx, response, head } => self.on_response(now, tx, response, head),
                Event::StrayResponse { head, .. } => {
                    // Our ACK was lost and the 2xx came again: ACK again.
                    if let Some(c) = self
                        .by_call_id
                        .get(&head.call_id)
                        .and_then(|id| self.calls.get(id))
                    {
                        ack(&mut self.ep, &c.dialog, head.cseq, &self.cfg.user_agent);
                    }
                }
                Event::Request {
                    tx, request, head, ..
                } => self.on_request(now, tx, request, head),
                Event::Timeout { tx } | Event::TransportError { tx } => {
                    let code = if matches!(ev, Event::Timeout { .. }) {
                        408
                    } else {
                        503
                    };
                    let Some(id) = self.by_tx.remove(&tx) else {
                        continue;
                    };
                    let Some(c) = self.calls.get(&id) else {
                        continue;
                    };
                    if c.invite_tx == tx && c.phase == Phase::Inviting {
                        self.finish(id, code, true, None, false);
                    } else if c.bye_tx == Some(tx) {
                        self.finish(id, 200, false, None, false);
                    }
                }
                Event::Cancelled { .. }
                | Event::Ack { .. }
                | Event::AckTimeout { .. }
                | Event::Malformed { .. } => {}
            }
        }
    }

    fn on_response(&mut self, now: Instant, tx: TxId, resp: Response, head: Head) {
        let code = resp.status_code.code();
        let Some(&id) = self.by_tx.get(&tx) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if Some(tx) == c.bye_tx {
            if code >= 200 {
                self.by_tx.remove(&tx);
                self.finish(id, 200, false, Some(code), false);
            }
            return;
        }
        if tx != c.invite_tx {
            return; // CANCEL's own response
        }
        if code < 200 {
            if code > 100 && c.first_18x.is_none() {
                c.first_18x = Some(now);
            }
            return;
        }
        if code < 300 {
            if c.answered.is_some() {
                ack(&mut self.ep, &c.dialog, head.cseq, &self.cfg.user_agent);
                return;
            }
            c.answered = Some(now);
            c.dialog.on_response(&resp, &head);
            ack(&mut self.ep, &c.dialog, head.cseq, &self.cfg.user_agent);
            if c.cancelled {
                // Answered while we cancelled: hang up at once.
                c.phase = Phase::Up;
                self.hang_up(now, id);
                return;
            }
            c.phase = Phase::Up;
            let remote = Sdp::parse(&resp.body)
                .ok()
                .and_then(|s| s.audio_target().ok().flatten());
            self.outputs
                .push_back(Output::MediaStart { call: id, remote });
            self.timers.push(Reverse((now + self.cfg.hold, id, true)));
            return;
        }
        self.by_tx.remove(&tx);
        if (code == 401 || code == 407) && !c.auth_tried {
            if let Some((user, pass)) = self.cfg.auth.clone() {
                if let Some(retry) = self.with_credentials(id, &resp, code, &user, &pass) {
                    let c = self.calls.get_mut(&id).expect("present");
                    c.auth_tried = true;
                    let flow = c.dialog.flow;
                    let t = self.ep.send_request(now, retry, flow);
                    self.calls.get_mut(&id).expect("present").invite_tx = t;
                    self.by_tx.insert(t, id);
                    return;
                }
            }
        }
        self.finish(id, code, false, None, false);
    }

    /// The INVITE again with credentials for the challenge in `resp` (CSeq + 1).
    fn with_credentials(
        &mut self,
        id: u64,
        resp: &Response,
        code: u16,
        user: &str,
        pass: &str,
    ) -> Option<Request> {
        // One challenge per algorithm may come: answer the strongest we speak.
        let ch = auth::best_challenge(resp.headers.iter().filter_map(|h| match (h, code) {
            (Header::WwwAuthenticate(v), 401) => Some(v.value()),
            (Header::ProxyAuthenticate(v), 407) => Some(v.value()),
            _ => None,
        }))?;
        let cnonce = self.ep.ids().token();
        let c = self.calls.get_mut(&id)?;
        let uri = c.invite.uri.to_string();
        let value = auth::authorization(&ch, user, pass, "INVITE", &uri, &cnonce);
        c.dialog.local_seq += 1;
        let seq = c.dialog.local_seq;
        let mut req = c.invite.clone();
        let mut headers: Vec<Header> = Vec::new();
        for h in req.headers.iter() {
            match h {
                Header::Via(_) => {} // the endpoint adds a new one
                Header::CSeq(_) => {
                    headers.push(rsip::headers::CSeq::new(format!("{seq} INVITE")).into())
                }
                _ => headers.push(h.clone()),
            }
        }
        headers.push(if code == 401 {
            rsip::headers::Authorization::new(value).into()
        } else {
            rsip::headers::ProxyAuthorization::new(value).into()
        });
        req.headers = headers.into();
        Some(req)
    }

    fn on_request(&mut self, now: Instant, tx: TxId, req: Request, head: Head) {
        let Some(&id) = self.by_call_id.get(&head.call_id) else {
            let r = message::response(&req, 481, None, self.ep.server_name());
            self.ep.respond(now, tx, r);
            return;
        };
        match req.method {
            Method::Bye => {
                let r = message::response(&req, 200, None, self.ep.server_name());
                self.ep.respond(now, tx, r);
                self.outputs.push_back(Output::MediaStop { call: id });
                self.finish(id, 200, false, None, true);
            }
            Method::Invite => {
                // A re-INVITE: keep the session as it is.
                let c = &self.calls[&id];
                let body = Sdp::parse(&c.invite.body)
                    .ok()
                    .map(|_| c.invite.body.clone());
                let mut r = message::response(&req, 200, None, self.ep.server_name());
                r.headers
                    .push(rsip::headers::Contact::new(self.contact()).into());
                if let Some(b) = body {
                    r.body = message::set_body(&mut r.headers, &b, Some("application/sdp"));
                }
                self.ep.respond(now, tx, r);
            }
            _ => {
                let r = message::response(&req, 200, None, self.ep.server_name());
                self.ep.respond(now, tx, r);
            }
        }
    }

    fn finish(
        &mut self,
        id: u64,
        status: u16,
        timed_out: bool,
        bye_status: Option<u16>,
        by_callee: bool,
    ) {
        let Some(c) = self.calls.remove(&id) else {
            return;
        };
        self.by_call_id.remove(&c.dialog.call_id);
        self.by_tx.remove(&c.invite_tx);
        if let Some(t) = c.bye_tx {
            self.by_tx.remove(&t);
        }
        let status = if c.answered.is_some() { 200 } else { status };
        self.outputs.push_back(Output::Finished(CallRecord {
            call: id,
            status,
            timed_out,
            setup: c.answered.map(|a| a - c.started),
            pdd: c.first_18x.map(|a| a - c.started),
            started: c.started,
            ended_by_callee: by_callee,
            bye_status,
        }));
    }
}

fn ack(ep: &mut Endpoint, d: &Dialog, cseq: u32, ua: &str) {
    let via = ep.new_via(d.flow);
    let a = d.ack(cseq, via, None, ua);
    ep.send_ack(&a, d.flow);
}
