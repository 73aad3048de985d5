//! New calls: an INVITE from a trunk is checked (trunk, number, limits, ports),
//! answered 100, routed (static target or queue), and its B leg placed; queue calls
//! are offered to free agents; the responses that go back to the caller.

use crate::call::{BLeg, Call, SessionTimers};
use crate::index::{ClientRole, DialogOwner, ServerRole};
use crate::session;
use crate::timers::Timer;
use crate::{
    contact_for, header, is_sdp, B2bua, CallId, CallState, Command, Output, Route, Side,
    NO_ANSWER_TIMEOUT, QUEUE_RETRY, RETRY_AFTER_SECS,
};
use control::Destination;
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request};
use sip::dialog::Dialog;
use sip::message;
use sip::message::Head;
use sip::sdp::Sdp;
use sip::session_timer;
use sip::{Flow, Transport, TxId};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Where a new leg goes: its Request-URI and the peer; `local` is the flow's own
/// end when the target is a registration (the flow its REGISTER came on), else
/// one of the listen addresses of that transport is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LegTarget {
    pub uri: String,
    pub remote: SocketAddr,
    pub transport: Transport,
    pub local: Option<SocketAddr>,
    /// A pre-loaded route set (RFC 3261 §8.1.2): the Path of a binding registered
    /// through a proxy (RFC 3327). The request goes to the first hop (`remote`).
    pub route: Vec<String>,
    /// A browser (its binding is a SIP WebSocket, here or at the cluster node
    /// the request goes through): the leg gets WebRTC media.
    pub browser: bool,
}

impl B2bua {
    pub(crate) fn on_invite(
        &mut self,
        now: Instant,
        tx: TxId,
        req: Request,
        head: Head,
        flow: Flow,
    ) {
        if head.max_forwards == 0 {
            return self.reply(now, tx, &req, 483, None);
        }
        let (trunk, dialler) = match self.caller(now, tx, &req, flow) {
            crate::outbound::Caller::Trunk(t) => (t, None),
            crate::outbound::Caller::Agent(id) => {
                info!(call_id = %head.call_id, agent = %id, "agent dials out");
                (format!("agent:{id}"), Some(id))
            }
            crate::outbound::Caller::Replied => return,
        };
        if let Some(r) = crate::transfer::replaces_header(&req) {
            return self.on_invite_replaces(now, tx, req, head, flow, r, dialler);
        }
        if self.refusing_new_work() {
            return self.refuse_draining(now, tx, &req);
        }
        // Require was checked by the endpoint (420 for any request but CANCEL/ACK).
        if self.calls.len() >= self.snap.config.sip.max_calls {
            self.stats.rejected_overload += 1;
            return self.reply_busy(now, tx, &req);
        }
        let Ok(a_grant) = self.grant_for(now, tx, &req) else {
            return;
        };
        // The dialled number: the Request-URI's user part without user parameters
        // (`+4420123;npdi` routes as `+4420123`).
        let user = message::request_user(&req).unwrap_or_default();
        let number = user.split(';').next().unwrap_or("").to_string();
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
        // A closed queue: another queue, a forward, or the edge answers (after hours).
        let (mut closed, mut deflected) = (None, None);
        let route = match route {
            Route::Queue { name } => match self.deflect(now, name) {
                crate::after_hours::Deflection::Route(r, action) => {
                    deflected = action;
                    r
                }
                crate::after_hours::Deflection::Answer { queue, voicemail } => {
                    closed = Some(voicemail);
                    deflected = Some(if voicemail { "voicemail" } else { "announce" });
                    Route::Queue { name: queue }
                }
            },
            r => r,
        };
        // The offer, and what it says of a browser's transport (read once).
        let (a_sdp, a_webrtc) = if is_sdp(&req.headers, &req.body) {
            match Sdp::parse(&req.body)
                .and_then(|s| s.audio_target().map(|_| s))
                .and_then(|s| s.webrtc().map(|w| (s, w)))
            {
                Ok((s, Some(_))) if !s.has_g711() => {
                    // A browser that offers no G.711: the edge does not transcode.
                    info!(call_id = %head.call_id, "WebRTC offer without PCMU/PCMA: 488");
                    let w = crate::warning("offer PCMU or PCMA: the edge does not transcode");
                    return self.reply_with(now, tx, &req, 488, vec![w]);
                }
                Ok((s, w)) => (Some(s), w),
                Err(e) => {
                    info!(call_id = %head.call_id, error = %e, "unusable SDP offer: 488");
                    let w = crate::warning(&e.to_string());
                    return self.reply_with(now, tx, &req, 488, vec![w]);
                }
            }
        } else if !req.body.is_empty() {
            let h = rsip::headers::Accept::new("application/sdp").into();
            return self.reply_with(now, tx, &req, 415, vec![h]);
        } else {
            (None, None)
        };
        let a_te = a_sdp.as_ref().and_then(|s| s.telephone_event_pt());
        let Some((a_port, b_port)) = self.allocate_ports() else {
            warn!(call_id = %head.call_id, "RTP port pool exhausted: 503");
            self.stats.rejected_overload += 1;
            return self.reply_busy(now, tx, &req);
        };
        let id = CallId(self.calls.next_id());
        let public_id = format!("{:016x}", self.ep.ids().next_u64());
        let local_tag = self.ep.ids().token();
        let a = Dialog::uas(&req, &head, local_tag.clone(), flow, contact_for(flow));
        let req_headers = req.headers.clone();
        let caller = header(&req, |h| match h {
            Header::From(f) => Some(f.value()),
            _ => None,
        })
        .map(|v| message::uri_of(v).to_string())
        .unwrap_or_default();
        let _span = tracing::info_span!("call", call = %public_id).entered();
        info!(call_id = %head.call_id, %trunk, %caller, callee = %number, "new call");
        let reserved = self.reserved_data(&req, &public_id);
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
            forks: Vec::new(),
            stale: Vec::new(),
            a_port,
            b_port,
            reinvite: None,
            b_ack_waits_for_a: None,
            tried: HashSet::new(),
            attempts: 0,
            wait_deadline: None,
            queued_at: None,
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
            session: SessionTimers {
                a_grant,
                b_asked: self.session_settings().session_expires,
                peer_update: [session_timer::allows_update(&req_headers), false],
                ..SessionTimers::default()
            },
            reserved,
            after_hours: None,
            deflected,
            webrtc: [None, None],
            dialler: dialler.clone(),
            transfer: None,
            transfers: Vec::new(),
            consult: None,
            party_flags: [[false; 2]; 2],
            participant_events: Vec::new(),
            promoting: None,
            a_gone: false,
        };
        self.stats.started += 1;
        self.index.add_dialog(
            (head.call_id.clone(), local_tag),
            DialogOwner::Call(id, Side::A),
        );
        self.index.add_server(tx, id, ServerRole::Initial);
        let a_addr = call
            .a_sdp
            .as_ref()
            .and_then(|s| s.audio_target().ok().flatten());
        self.calls.insert(call);
        if let Some(agent) = &dialler {
            // An agent on its own call is offered nothing else until it ends, by
            // any node of a cluster.
            self.seize_and_claim(id, agent);
            self.agent_changed(now, agent);
        }
        self.outputs
            .push_back(Output::Media(id, Command::Open { a_port, b_port }));
        self.set_remote(id, Side::A, a_addr);
        if let Some(w) = &a_webrtc {
            // The caller is a browser: its leg is WebRTC from the start.
            self.make_webrtc(id, Side::A, Some(w));
        }
        if let Some(voicemail) = closed {
            if !self.answer_closed(now, id, voicemail) {
                info!(call_id = %head.call_id, "after hours: the caller offered no G.711 (or no SDP): 488");
                self.send_a_final(now, id, 488, None);
                self.finish_or_wait(now, id, "after hours: no usable offer");
            }
            return;
        }
        match route {
            Route::Static { target, .. } => {
                let number = self.calls[&id].callee.clone();
                let uri = Self::target_uri(&target, &number);
                let target = LegTarget {
                    uri,
                    remote: target.addr,
                    transport: target.transport,
                    local: None,
                    route: Vec::new(),
                    browser: false,
                };
                self.start_b(now, id, target, None);
            }
            Route::Queue { name } => {
                let max_wait = self
                    .snap
                    .queue(&name)
                    .map(|q| q.max_wait)
                    .unwrap_or(Duration::from_secs(60));
                let c = self.calls.get_mut(&id).expect("just inserted");
                c.wait_deadline = Some(now + max_wait);
                c.queued_at = Some(now);
                self.timers.set(now + max_wait, Timer::MaxWait(id));
                // Ringback while the caller waits.
                self.send_a_provisional(now, id, 180, None);
                self.acd.enqueue(id);
                self.dispatch_queues(now);
            }
        }
    }

    /// Two RTP/RTCP pairs: one facing the caller, one facing the callee.
    pub(crate) fn allocate_ports(&mut self) -> Option<(u16, u16)> {
        let a = self.allocate_port()?;
        match self.allocate_port() {
            Some(b) => Some((a, b)),
            None => {
                self.release_port(a);
                None
            }
        }
    }

    /// The Request-URI for a static route target: the target as written, with the
    /// dialled number as user part when the target has none.
    pub(crate) fn target_uri(target: &control::SipTarget, number: &str) -> String {
        match (&target.user, target.uri.strip_prefix("sip:")) {
            (None, Some(rest)) if !number.is_empty() => format!("sip:{number}@{rest}"),
            _ => target.uri.clone(),
        }
    }

    pub(crate) fn local_flow(&self, transport: Transport, remote: SocketAddr) -> Option<Flow> {
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
    pub(crate) fn start_b(
        &mut self,
        now: Instant,
        id: CallId,
        target: LegTarget,
        agent: Option<String>,
    ) {
        self.place_leg(now, id, target, agent, false);
    }

    /// Ring every target of an agent at once (its registered phones): the first
    /// to answer gets the call, the others are cancelled.
    pub(crate) fn start_b_forked(
        &mut self,
        now: Instant,
        id: CallId,
        targets: Vec<LegTarget>,
        agent: Option<String>,
    ) {
        let mut targets = targets.into_iter();
        let Some(first) = targets.next() else {
            return self.fail_attempt(now, id, 480);
        };
        self.place_leg(now, id, first, agent.clone(), false);
        for t in targets {
            if self.calls.get(&id).is_some_and(|c| c.b.is_some()) {
                self.place_leg(now, id, t, agent.clone(), true);
            }
        }
    }

    /// An INVITE towards `target`: the call's B leg, or (`fork`) one more leg
    /// ringing beside it.
    fn place_leg(
        &mut self,
        now: Instant,
        id: CallId,
        target: LegTarget,
        agent: Option<String>,
        fork: bool,
    ) {
        let LegTarget {
            uri,
            remote: addr,
            transport,
            local,
            route,
            browser,
        } = target;
        let flow = match local {
            Some(local) => Some(Flow {
                transport,
                local,
                remote: addr,
            }),
            None => self.local_flow(transport, addr),
        };
        let Some(flow) = flow else {
            warn!(%addr, %transport, "no listen address for this transport/family: cannot reach callee");
            if fork {
                return;
            }
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
        // Through the proxy the binding's REGISTER came by (its Path): the INVITE
        // carries those Route values; the 2xx's Record-Route replaces them.
        dialog.route_set = route;
        // A browser (SIP over WebSocket) gets WebRTC media: ICE-lite and DTLS-SRTP
        // on the B port. One set of credentials serves an attempt's forks.
        let browser = browser || flow.transport.is_websocket();
        let transferring = c.transfer.is_some();
        if let Some(t) = c.transfer.as_mut() {
            // A transfer's target: the transferor keeps side B's media until the
            // target answers, so a browser target's credentials wait here.
            if browser && (!fork || t.target_webrtc.is_none()) {
                let ice = self.new_ice_credentials();
                let c = self.calls.get_mut(&id).expect("present");
                c.transfer.as_mut().expect("checked").target_webrtc = Some(ice);
            } else if !browser && !fork {
                t.target_webrtc = None;
            }
        } else {
            let had = c.webrtc[Side::B as usize].is_some();
            if browser && (!fork || !had) {
                self.make_webrtc(id, Side::B, None);
            } else if !browser && !fork && had {
                self.plain_rtp(id, Side::B);
            }
        }
        let c = self.calls.get_mut(&id).expect("present");
        let fingerprint = self.webrtc_fingerprint.as_deref().filter(|_| browser);
        let addr = self.snap.config.media.address;
        let body = if transferring {
            // What the customer agreed to, from the edge's B port.
            let ice = c
                .transfer
                .as_ref()
                .and_then(|t| t.target_webrtc.as_ref())
                .filter(|_| browser);
            c.transfer_offer()
                .map(|s| crate::sdp_for(&s, addr, c.b_port, ice, fingerprint, true))
        } else {
            c.a_sdp
                .as_ref()
                .map(|s| c.sdp_towards(Side::B, s, addr, fingerprint, true))
        };
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
        let session_headers = self.session_request_headers(&self.calls[&id], Side::B);
        req.headers.extend(session_headers);
        if agent.is_some() {
            // The agent's phone can show the call's reserved data.
            let extra = self.reserved_headers(&self.calls[&id].reserved);
            req.headers.extend(extra);
        }
        let c = self.calls.get_mut(&id).expect("present");
        c.session.sent_sdp[Side::B as usize] = body;
        let agent_for_log = agent.clone();
        let tx = self.ep.send_request(now, req, flow);
        let c = self.calls.get_mut(&id).expect("present");
        let leg = BLeg {
            dialog,
            tx: Some(tx),
            provisional: false,
            cancel_pending: false,
            agent,
            attempt,
            answered: false,
        };
        if fork {
            c.forks.push(leg);
        } else {
            if let Some(old) = c.b.take() {
                c.stale.push(old);
            }
            c.b = Some(leg);
            if !transferring {
                c.state = CallState::Calling;
            }
        }
        debug!(call = %c.public_id, %uri, agent = ?agent_for_log, attempt, fork, "calling callee");
        c.client_txs.push(tx);
        self.index.add_client(tx, id, ClientRole::Initial(attempt));
        self.index
            .add_dialog((call_id, tag), DialogOwner::Call(id, Side::B));
        if !transferring {
            // (A transferor stays latched on side B until its target answers.)
            self.outputs.push_back(Output::Media(
                id,
                Command::Remote {
                    side: Side::B,
                    addr: None,
                },
            ));
        }
        let deadline = match &c.route {
            _ if transferring => Timer::Ring(id, attempt),
            Route::Queue { .. } => Timer::Ring(id, attempt),
            Route::Static { .. } => Timer::NoAnswer(id, attempt),
        };
        let after = match deadline {
            Timer::Ring(..) => self.snap.config.sip.agent_ring_timeout,
            _ => NO_ANSWER_TIMEOUT,
        };
        self.timers.set(now + after, deadline);
    }

    /// Offer waiting queue calls to free agents, oldest call first.
    pub(crate) fn dispatch_queues(&mut self, now: Instant) {
        let mut still_waiting = VecDeque::new();
        let mut any_round_exhausted = false;
        let snap = self.snap.clone();
        // Queues found with no agent free at all in this pass: their other
        // waiting calls are passed over without looking at every agent again
        // (with hundreds of agents and calls waiting, that was the cost).
        let mut none_free: HashSet<&str> = HashSet::new();
        while let Some(id) = self.acd.pop_waiting() {
            // A caller waiting for its answer, or an answered call transferred to
            // the queue (no leg ringing for it yet).
            if !self.wants_agent(id) {
                continue;
            }
            let Some(c) = self.calls.get(&id) else {
                continue;
            };
            let Route::Queue { name } = &c.route else {
                continue;
            };
            let Some(q) = snap.queue(name) else {
                still_waiting.push_back(id);
                continue;
            };
            let agents = &q.agents;
            let queued_at = c.queued_at;
            let pick = if none_free.contains(q.name.as_str()) {
                None
            } else {
                // Cluster mode: this node's own agents first, the longest idle
                // (the nodes share the idle order and would all claim its head);
                // then another node's, the most recently idle — the one its own
                // node, which offers its longest idle first, is least likely to
                // be claiming at this moment (taking the longest idle there
                // collided nearly every time, and each collision is a JetStream
                // round trip and another dispatch).
                let free = |a: &str| self.can_offer(now, a);
                let open = |a: &str| !c.tried.contains(a) && free(a);
                let pick = self
                    .acd
                    .pick_where(agents, |a| self.home_agent(a) && open(a))
                    .or_else(|| {
                        if self.clustered() {
                            self.acd.pick_newest_where(agents, open)
                        } else {
                            self.acd.pick_where(agents, open)
                        }
                    })
                    .map(str::to_string);
                if pick.is_none()
                    && (c.tried.is_empty() || self.acd.pick_where(agents, free).is_none())
                {
                    none_free.insert(q.name.as_str());
                }
                pick
            };
            match pick {
                Some(agent_id) => {
                    if self.agent_targets(now, &agent_id).is_empty() {
                        still_waiting.push_back(id);
                        continue;
                    }
                    // Cluster mode: another node's older call goes first.
                    if self.defers_to_older(now, &q.name, queued_at) {
                        still_waiting.push_back(id);
                        continue;
                    }
                    // Cluster mode: the offer waits for the agent's claim.
                    if self.ask_claim(id, &agent_id) {
                        continue;
                    }
                    if !self.offer(now, id, &agent_id) {
                        still_waiting.push_back(id);
                    }
                }
                None => {
                    let c = &self.calls[&id];
                    if agents.iter().all(|a| c.tried.contains(a)) {
                        any_round_exhausted = true;
                    }
                    still_waiting.push_back(id);
                }
            }
        }
        let waiting = !still_waiting.is_empty();
        self.acd.requeue(still_waiting);
        if any_round_exhausted {
            self.timers.set(now + QUEUE_RETRY, Timer::QueueRetry);
        }
        // Agents skipped because another node held them: look again when the
        // first of those holds lapses.
        if let Some(t) = self.next_claim_lapse(now).filter(|_| waiting) {
            self.retry_at_lapse(now, t);
        }
    }

    /// Offer call `id` to `agent_id`, ringing all its phones; false when it has no
    /// phone to ring now.
    pub(crate) fn offer(&mut self, now: Instant, id: CallId, agent_id: &str) -> bool {
        let targets = self.agent_targets(now, agent_id);
        if targets.is_empty() {
            return false;
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        self.acd.seize(agent_id);
        c.tried.insert(agent_id.to_string());
        c.agent = Some(agent_id.to_string());
        info!(call = %c.public_id, agent = %agent_id, "offering call to agent");
        self.agent_changed(now, agent_id);
        self.agent_call(id, agent_id, "ringing");
        self.start_b_forked(now, id, targets, Some(agent_id.to_string()));
        true
    }

    pub(crate) fn send_a_provisional(
        &mut self,
        now: Instant,
        id: CallId,
        code: u16,
        sdp: Option<String>,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(tx) = c.a_tx else { return };
        if sdp.is_some() {
            c.session.sent_sdp[Side::A as usize] = sdp.clone();
        }
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

    pub(crate) fn send_a_final(
        &mut self,
        now: Instant,
        id: CallId,
        code: u16,
        sdp: Option<String>,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(tx) = c.a_tx.take() else { return };
        c.outcome = Some(code);
        self.index.remove_server(&tx);
        let mut r = message::response(
            &c.a_invite,
            code,
            Some(&c.a.local_tag),
            self.ep.server_name(),
        );
        let answered = (200..300).contains(&code);
        if answered {
            r.headers
                .push(rsip::headers::Contact::new(c.a.local_contact.clone()).into());
            r.headers
                .push(rsip::headers::Allow::new(message::ALLOW).into());
            if let Some(n) = c.session.a_grant {
                r.headers.extend(session::grant_headers(n));
            }
        }
        if let Some(s) = sdp {
            r.body = message::set_body(&mut r.headers, s.as_bytes(), Some("application/sdp"));
            c.session.sent_sdp[Side::A as usize] = Some(s);
        }
        if answered {
            let grant = c.session.a_grant.take();
            session::arm(c, &mut self.timers, now, Side::A, grant);
        }
        if code == 503 {
            r.headers
                .push(rsip::headers::RetryAfter::new(RETRY_AFTER_SECS.to_string()).into());
        }
        self.ep.respond(now, tx, r);
    }
}
