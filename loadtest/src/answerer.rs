//! The answering side, sans-IO: a UAS that answers every INVITE (180, then 200
//! with SDP after `ring`), rejects a configured share with a configured status,
//! answers BYE/CANCEL/re-INVITE, and reports each call. With a [`ReferPlan`] it is
//! an agent that transfers each answered call blind: REFER (RFC 3515) after a
//! delay, then the NOTIFY sipfrag progress until the final one. Same drive order
//! as [`crate::caller::Caller`].

use rsip::headers::UntypedHeader;
use rsip::{Method, Request};
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
pub struct AnswerConfig {
    pub ring: Duration,
    /// Reject this percentage of calls with this status (spread evenly).
    pub reject: Option<(u16, f64)>,
    pub media_ip: IpAddr,
    pub user_agent: String,
    pub refer: Option<ReferPlan>,
}

/// Transfer every answered call to `to` (a SIP URI) by REFER, `after` the answer.
#[derive(Debug, Clone)]
pub struct ReferPlan {
    pub to: String,
    pub after: Duration,
}

/// Where the driver gets a local RTP port for an answer.
pub trait PortSource {
    fn take(&mut self) -> Option<u16>;
}

#[derive(Debug, Clone)]
pub struct AnswerRecord {
    pub call: u64,
    /// Final status we sent to the INVITE.
    pub status: u16,
    pub ended_by_bye: bool,
}

#[derive(Debug)]
pub enum Output {
    /// Answered: RTP on local `port`, to `remote` (from the offer).
    MediaStart {
        call: u64,
        port: u16,
        remote: Option<SocketAddr>,
    },
    MediaStop {
        call: u64,
    },
    Finished(AnswerRecord),
    /// A transfer this side asked for ended: the REFER's response, the final
    /// sipfrag status (none when the REFER was refused or the call ended first)
    /// and the time from REFER to that final NOTIFY.
    Transfer {
        call: u64,
        refer_status: u16,
        outcome: Option<u16>,
        took: Option<Duration>,
    },
}

#[derive(Debug)]
struct Call {
    id: u64,
    tx: Option<TxId>,
    invite: Request,
    tag: String,
    port: Option<u16>,
    remote: Option<SocketAddr>,
    local_contact: String,
    /// The call's dialog (this side is its UAS), for the REFER.
    dialog: Dialog,
    /// When the REFER left, and its response.
    referred: Option<(Instant, Option<u16>)>,
}

pub struct Answerer {
    cfg: AnswerConfig,
    ep: Endpoint,
    calls: HashMap<String, Call>,
    by_tx: HashMap<TxId, String>,
    /// REFER client transactions → their call.
    refers: HashMap<TxId, String>,
    /// (when, refer: false answers the call, true transfers it, call id).
    timers: BinaryHeap<Reverse<(Instant, bool, String)>>,
    outputs: VecDeque<Output>,
    seen: u64,
}

impl Answerer {
    pub fn new(cfg: AnswerConfig, seed: u64) -> Self {
        let ep = Endpoint::new(cfg.user_agent.clone(), seed);
        Answerer {
            cfg,
            ep,
            calls: HashMap::new(),
            by_tx: HashMap::new(),
            refers: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            seen: 0,
        }
    }

    pub fn active(&self) -> usize {
        self.calls.len()
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

    pub fn handle_datagram(
        &mut self,
        now: Instant,
        flow: Flow,
        data: &[u8],
        ports: &mut dyn PortSource,
    ) {
        self.ep.handle_datagram(now, flow, data);
        self.process(now, ports);
    }

    pub fn handle_timeout(&mut self, now: Instant, ports: &mut dyn PortSource) {
        self.ep.handle_timeout(now);
        while let Some(Reverse((t, _, _))) = self.timers.peek() {
            if *t > now {
                break;
            }
            let Reverse((_, refer, call_id)) = self.timers.pop().expect("peeked");
            if refer {
                self.refer(now, &call_id);
            } else {
                self.answer(now, &call_id, ports);
            }
        }
        self.process(now, ports);
    }

    /// Whether call number `n` (0-based) is one of the rejected share.
    fn rejects(&self, n: u64) -> Option<u16> {
        let (code, pct) = self.cfg.reject?;
        let before = (n as f64 * pct / 100.0).floor();
        let after = ((n + 1) as f64 * pct / 100.0).floor();
        (after > before).then_some(code)
    }

    fn process(&mut self, now: Instant, ports: &mut dyn PortSource) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Request {
                    tx,
                    request,
                    head,
                    flow,
                } => self.on_request(now, tx, request, head, flow, ports),
                Event::Cancelled { invite } => {
                    if let Some(call_id) = self.by_tx.remove(&invite) {
                        if let Some(c) = self.calls.remove(&call_id) {
                            let r = message::response(
                                &c.invite,
                                487,
                                Some(&c.tag),
                                self.ep.server_name(),
                            );
                            self.ep.respond(now, invite, r);
                            self.outputs.push_back(Output::Finished(AnswerRecord {
                                call: c.id,
                                status: 487,
                                ended_by_bye: false,
                            }));
                        }
                    }
                }
                Event::Response { tx, response, .. } => {
                    let code = response.status_code.code();
                    if code < 200 {
                        continue;
                    }
                    let Some(call_id) = self.refers.remove(&tx) else {
                        continue;
                    };
                    let Some(c) = self.calls.get_mut(&call_id) else {
                        continue;
                    };
                    if let Some((_, status)) = c.referred.as_mut() {
                        *status = Some(code);
                    }
                    if code >= 300 {
                        self.outputs.push_back(Output::Transfer {
                            call: c.id,
                            refer_status: code,
                            outcome: None,
                            took: None,
                        });
                    }
                }
                Event::Timeout { tx } | Event::TransportError { tx } => {
                    if let Some(call_id) = self.refers.remove(&tx) {
                        if let Some(c) = self.calls.get(&call_id) {
                            self.outputs.push_back(Output::Transfer {
                                call: c.id,
                                refer_status: 408,
                                outcome: None,
                                took: None,
                            });
                        }
                    }
                }
                Event::AckTimeout { call_id, .. } => {
                    if let Some(c) = self.calls.remove(&call_id) {
                        self.outputs.push_back(Output::MediaStop { call: c.id });
                        self.outputs.push_back(Output::Finished(AnswerRecord {
                            call: c.id,
                            status: 200,
                            ended_by_bye: false,
                        }));
                    }
                }
                _ => {}
            }
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        tx: TxId,
        req: Request,
        head: Head,
        flow: Flow,
        ports: &mut dyn PortSource,
    ) {
        let server = self.ep.server_name().to_string();
        match (req.method, head.to_tag.is_some()) {
            (Method::Invite, false) => {
                let n = self.seen;
                self.seen += 1;
                let id = n + 1;
                if let Some(code) = self.rejects(n) {
                    let tag = self.ep.ids().token();
                    let r = message::response(&req, code, Some(&tag), &server);
                    self.ep.respond(now, tx, r);
                    self.outputs.push_back(Output::Finished(AnswerRecord {
                        call: id,
                        status: code,
                        ended_by_bye: false,
                    }));
                    return;
                }
                let tag = self.ep.ids().token();
                let remote = Sdp::parse(&req.body)
                    .ok()
                    .and_then(|s| s.audio_target().ok().flatten());
                let local_contact =
                    format!("<sip:answer@{}{}>", flow.local, flow.transport.uri_param());
                let dialog = Dialog::uas(&req, &head, tag.clone(), flow, local_contact.clone());
                let mut ringing = message::response(&req, 180, Some(&tag), &server);
                ringing
                    .headers
                    .push(rsip::headers::Contact::new(local_contact.clone()).into());
                self.ep.respond(now, tx, ringing);
                self.by_tx.insert(tx, head.call_id.clone());
                self.calls.insert(
                    head.call_id.clone(),
                    Call {
                        id,
                        tx: Some(tx),
                        invite: req,
                        tag,
                        port: None,
                        remote,
                        local_contact,
                        dialog,
                        referred: None,
                    },
                );
                if self.cfg.ring.is_zero() {
                    self.answer(now, &head.call_id, ports);
                } else {
                    self.timers
                        .push(Reverse((now + self.cfg.ring, false, head.call_id)));
                }
            }
            (Method::Bye, true) => {
                let r = message::response(&req, 200, None, &server);
                self.ep.respond(now, tx, r);
                if let Some(c) = self.calls.remove(&head.call_id) {
                    self.outputs.push_back(Output::MediaStop { call: c.id });
                    self.outputs.push_back(Output::Finished(AnswerRecord {
                        call: c.id,
                        status: 200,
                        ended_by_bye: true,
                    }));
                }
            }
            (Method::Invite, true) => {
                // re-INVITE: answer with our current SDP.
                let body = self.calls.get(&head.call_id).and_then(|c| {
                    c.port.map(|p| {
                        (
                            c.local_contact.clone(),
                            crate::sdp::offer(self.cfg.media_ip, p, c.id),
                        )
                    })
                });
                let code = if body.is_some() { 200 } else { 481 };
                let mut r = message::response(&req, code, None, &server);
                if let Some((contact, b)) = body {
                    r.headers.push(rsip::headers::Contact::new(contact).into());
                    r.body =
                        message::set_body(&mut r.headers, b.as_bytes(), Some("application/sdp"));
                }
                self.ep.respond(now, tx, r);
            }
            (Method::Notify, true) => {
                let r = message::response(&req, 200, None, &server);
                self.ep.respond(now, tx, r);
                self.on_notify(now, &head.call_id, &req);
            }
            (Method::Options, _) | (Method::Info, true) => {
                let r = message::response(&req, 200, None, &server);
                self.ep.respond(now, tx, r);
            }
            (_, true) => {
                let r = message::response(&req, 481, None, &server);
                self.ep.respond(now, tx, r);
            }
            _ => {
                let mut r = message::response(&req, 405, None, &server);
                r.headers.push(
                    rsip::headers::Allow::new("INVITE, ACK, CANCEL, BYE, OPTIONS, INFO").into(),
                );
                self.ep.respond(now, tx, r);
            }
        }
    }

    fn answer(&mut self, now: Instant, call_id: &str, ports: &mut dyn PortSource) {
        let server = self.ep.server_name().to_string();
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(tx) = c.tx.take() else { return };
        self.by_tx.remove(&tx);
        let Some(port) = ports.take() else {
            let r = message::response(&c.invite, 503, Some(&c.tag), &server);
            self.ep.respond(now, tx, r);
            let id = c.id;
            self.calls.remove(call_id);
            self.outputs.push_back(Output::Finished(AnswerRecord {
                call: id,
                status: 503,
                ended_by_bye: false,
            }));
            return;
        };
        c.port = Some(port);
        let mut r = message::response(&c.invite, 200, Some(&c.tag), &server);
        r.headers
            .push(rsip::headers::Contact::new(c.local_contact.clone()).into());
        let body = crate::sdp::offer(self.cfg.media_ip, port, c.id);
        r.body = message::set_body(&mut r.headers, body.as_bytes(), Some("application/sdp"));
        self.ep.respond(now, tx, r);
        self.outputs.push_back(Output::MediaStart {
            call: c.id,
            port,
            remote: c.remote,
        });
        if let Some(plan) = &self.cfg.refer {
            self.timers
                .push(Reverse((now + plan.after, true, call_id.to_string())));
        }
    }

    /// Transfer the answered call `call_id` blind (its ACK may not have come: a
    /// REFER is in the dialog all the same).
    fn refer(&mut self, now: Instant, call_id: &str) {
        let Some(plan) = self.cfg.refer.clone() else {
            return;
        };
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        let mut req = c.dialog.request(Method::Refer, None, &self.cfg.user_agent);
        req.headers.push(rsip::Header::Other(
            "Refer-To".into(),
            format!("<{}>", plan.to),
        ));
        req.headers
            .push(rsip::headers::Contact::new(c.local_contact.clone()).into());
        c.referred = Some((now, None));
        let flow = c.dialog.flow;
        let tx = self.ep.send_request(now, req, flow);
        self.refers.insert(tx, call_id.to_string());
    }

    /// A NOTIFY of the transfer: its final sipfrag status ends the transfer.
    fn on_notify(&mut self, now: Instant, call_id: &str, req: &Request) {
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        // (rsip parses Subscription-State as an unknown header.)
        let terminated = req.headers.iter().any(|h| match h {
            rsip::Header::SubscriptionState(s) => s.value().trim_start().starts_with("terminated"),
            rsip::Header::Other(name, value) if name.eq_ignore_ascii_case("Subscription-State") => {
                value.trim_start().starts_with("terminated")
            }
            _ => false,
        });
        let code = std::str::from_utf8(&req.body)
            .ok()
            .and_then(|b| b.strip_prefix("SIP/2.0 "))
            .and_then(|b| b.get(..3))
            .and_then(|c| c.parse::<u16>().ok());
        let Some((sent, status)) = c.referred else {
            return;
        };
        if terminated {
            c.referred = None;
            self.outputs.push_back(Output::Transfer {
                call: c.id,
                refer_status: status.unwrap_or(202),
                outcome: code,
                took: Some(now.saturating_duration_since(sent)),
            });
        }
    }
}
