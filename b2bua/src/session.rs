//! Session timers (RFC 4028) on both legs of a call: the edge is UAS on A and UAC
//! on B, and negotiates, refreshes and watches one timer per dialog. A leg whose
//! peer vanished (no refresh in time, or a refresh answered 408/481) ends the call
//! with BYE on both legs. Refreshes go by UPDATE when the peer allows it, else by
//! re-INVITE with the SDP last sent on that leg; any re-INVITE or UPDATE that
//! passes through the edge refreshes the legs it crosses.

use crate::call::Call;
use crate::in_dialog::ack_2xx;
use crate::index::ClientRole;
use crate::timers::{Timer, TimerTable};
use crate::{is_sdp, B2bua, CallId, Side};
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response};
use sip::message::Head;
use sip::sdp::Sdp;
use sip::session_timer::{self, Grant, Negotiated, Settings};
use sip::TxId;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How long a refresh that collided with another re-INVITE waits before retrying.
const REFRESH_RETRY: Duration = Duration::from_secs(2);

/// (Re)start leg `side`'s timer with `n` (`None`: no session timer on that leg).
pub(crate) fn arm(
    c: &mut Call,
    timers: &mut TimerTable,
    now: Instant,
    side: Side,
    n: Option<Negotiated>,
) {
    let s = &mut c.session;
    s.generation[side as usize] += 1;
    s.leg[side as usize] = n;
    let generation = s.generation[side as usize];
    if let Some(n) = n {
        if n.edge_refreshes {
            timers.set(
                now + n.refresh_after(),
                Timer::SessionRefresh(c.id, side, generation),
            );
        }
        timers.set(
            now + n.expire_after(),
            Timer::SessionExpiry(c.id, side, generation),
        );
    }
}

/// The headers of the edge's 2xx granting `n` to the peer's request.
pub(crate) fn grant_headers(n: Negotiated) -> Vec<Header> {
    let mut h = vec![n.in_response().header()];
    if !n.edge_refreshes {
        // The peer refreshes: it must understand that (§9).
        h.push(rsip::headers::Require::new("timer").into());
    }
    h
}

impl B2bua {
    pub(crate) fn session_settings(&self) -> Settings {
        let sip = &self.snap.config.sip;
        Settings {
            session_expires: u32::try_from(sip.session_expires.as_secs()).unwrap_or(u32::MAX),
            min_se: u32::try_from(sip.min_se.as_secs()).unwrap_or(u32::MAX),
        }
    }

    /// What the edge grants a request from a peer; `Err` is the refusal already sent
    /// (400 for an unreadable Session-Expires, 422 with Min-SE below ours).
    pub(crate) fn grant_for(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Request,
    ) -> Result<Option<Negotiated>, ()> {
        match self.session_settings().grant(&req.headers) {
            Ok(Grant::On(n)) => Ok(Some(n)),
            Ok(Grant::Off) => Ok(None),
            Ok(Grant::TooBrief(min)) => {
                self.reply_with(now, tx, req, 422, vec![session_timer::min_se_header(min)]);
                Err(())
            }
            Err(session_timer::BadSessionExpires) => {
                self.reply(now, tx, req, 400, None);
                Err(())
            }
        }
    }

    /// Session-timer headers for a request the edge sends on leg `side` of `c`.
    pub(crate) fn session_request_headers(&self, c: &Call, side: Side) -> Vec<Header> {
        let settings = self.session_settings();
        match c.session.leg[side as usize] {
            Some(n) => settings.request_headers(n.interval, Some(n.edge_refreshes)),
            None if side == Side::B => settings.request_headers(c.session.b_asked, None),
            None => settings.request_headers(settings.session_expires, None),
        }
    }

    /// The peer's UPDATE on leg `side`: a session refresh (RFC 4028 §7.4). An
    /// UPDATE with an offer is refused; offers go by re-INVITE.
    pub(crate) fn on_update(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        tx: TxId,
        req: Request,
    ) {
        if !req.body.is_empty() {
            let w =
                crate::warning("UPDATE with a session description is not supported: use re-INVITE");
            return self.reply_with(now, tx, &req, 488, vec![w]);
        }
        let Ok(grant) = self.grant_for(now, tx, &req) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return self.reply(now, tx, &req, 481, None);
        };
        if !c.is_established() {
            return self.reply(now, tx, &req, 200, None);
        }
        arm(c, &mut self.timers, now, side, grant);
        debug!(call = %c.public_id, ?side, "session refreshed by UPDATE");
        self.reply_with(
            now,
            tx,
            &req,
            200,
            grant.map(grant_headers).unwrap_or_default(),
        );
    }

    /// The edge's turn to refresh leg `side`.
    pub(crate) fn session_refresh_due(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        generation: u32,
    ) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let current = c.session.generation[side as usize] == generation;
        let Some(n) = c.session.leg[side as usize].filter(|_| current && c.is_established()) else {
            return;
        };
        if c.reinvite.is_some()
            || c.b_ack_waits_for_a.is_some()
            || c.session.refreshing[side as usize]
        {
            // Another offer/answer is under way (it may refresh this leg itself).
            self.timers.set(
                now + REFRESH_RETRY,
                Timer::SessionRefresh(id, side, generation),
            );
            return;
        }
        let mut headers = self
            .session_settings()
            .request_headers(n.interval, Some(true));
        let c = self.calls.get_mut(&id).expect("present");
        let by_update = c.session.peer_update[side as usize];
        let sdp = c.session.sent_sdp[side as usize].clone();
        let Some(d) = c.dialog_mut(side) else {
            return;
        };
        let mut req = if by_update {
            d.request(Method::Update, None, &user_agent)
        } else {
            d.request(
                Method::Invite,
                sdp.as_deref().map(|b| (b.as_bytes(), "application/sdp")),
                &user_agent,
            )
        };
        headers.push(rsip::headers::Allow::new(sip::message::ALLOW).into());
        req.headers.extend(headers);
        let flow = d.flow;
        debug!(call = %c.public_id, ?side, by_update, "refreshing the session");
        c.session.refreshing[side as usize] = true;
        let tx = self.ep.send_request(now, req, flow);
        let c = self.calls.get_mut(&id).expect("present");
        c.client_txs.push(tx);
        self.index
            .add_client(tx, id, ClientRole::Refresh(side, !by_update));
    }

    /// The answer to the edge's refresh on leg `side`.
    pub(crate) fn on_refresh_response(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        invite: bool,
        resp: Response,
        head: Head,
    ) {
        let code = resp.status_code.code();
        if code < 200 {
            return;
        }
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if !c.session.refreshing[side as usize] {
            // A retransmitted 2xx of a refresh re-INVITE: our ACK was lost.
            if invite && (200..300).contains(&code) {
                if let Some(d) = c.dialog(side) {
                    ack_2xx(&mut self.ep, d, head.cseq, None, &user_agent);
                }
            }
            return;
        }
        c.session.refreshing[side as usize] = false;
        let generation = c.session.generation[side as usize];
        if (200..300).contains(&code) {
            if let Some(d) = c.dialog_mut(side) {
                if invite {
                    d.on_response(&resp, &head);
                }
            }
            if invite {
                if let Some(d) = c.dialog(side) {
                    ack_2xx(&mut self.ep, d, head.cseq, None, &user_agent);
                }
            }
            let n = session_timer::from_answer(&resp.headers);
            arm(c, &mut self.timers, now, side, n);
            debug!(call = %c.public_id, ?side, "session refreshed");
            if invite && is_sdp(&resp.headers, &resp.body) {
                if let Ok(s) = Sdp::parse(&resp.body) {
                    let addr = s.audio_target().ok().flatten();
                    self.set_remote(id, side, addr);
                }
            }
            return;
        }
        match code {
            408 | 481 => {
                info!(call = %c.public_id, ?side, code, "session refresh failed: ending the call");
                self.stats.session_expired += 1;
                self.end_call(now, id, 200, "session refresh failed");
            }
            422 => {
                // Our interval is below what the peer accepts: ask for its Min-SE.
                let min = session_timer::min_se(&resp.headers);
                if let (Some(min), Some(n)) = (min, c.session.leg[side as usize].as_mut()) {
                    if min > n.interval {
                        n.interval = min;
                        self.timers
                            .set(now, Timer::SessionRefresh(id, side, generation));
                    }
                }
            }
            491 => self.timers.set(
                now + REFRESH_RETRY,
                Timer::SessionRefresh(id, side, generation),
            ),
            405 | 501 if !invite => {
                // It does not take UPDATE after all: refresh by re-INVITE.
                c.session.peer_update[side as usize] = false;
                self.timers
                    .set(now, Timer::SessionRefresh(id, side, generation));
            }
            _ => {
                warn!(call = %c.public_id, ?side, code, "session refresh refused; the session expires unless refreshed")
            }
        }
    }

    /// The edge's refresh on leg `side` got no answer at all.
    pub(crate) fn refresh_timed_out(&mut self, now: Instant, id: CallId, side: Side) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.session.refreshing[side as usize] = false;
        if c.is_established() {
            info!(call = %c.public_id, ?side, "session refresh unanswered: ending the call");
            self.stats.session_expired += 1;
            self.end_call(now, id, 200, "session refresh failed");
        }
    }

    /// Leg `side` was not refreshed in time (RFC 4028 §10): BYE both legs.
    pub(crate) fn session_expired(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        generation: u32,
    ) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.session.generation[side as usize] != generation || !c.is_established() {
            return;
        }
        info!(call = %c.public_id, ?side, "session timer expired: no refresh from the peer");
        self.stats.session_expired += 1;
        self.end_call(now, id, 200, "session expired");
    }
}
