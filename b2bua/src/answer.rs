//! Responses from the callee's side: routed by client transaction to the B leg's
//! INVITE (provisional, answer, failure, or a stale attempt's), a re-INVITE, a
//! relayed request, a BYE/CANCEL while ending, or a supervisor's leg; answering the
//! caller once the agent has answered.

use crate::in_dialog::{ack_2xx, send_cancel};
use crate::index::{ClientRole, ClientTx, MonitorRole};
use crate::session;
use crate::timers::Timer;
use crate::{
    is_sdp, map_failure, B2bua, CallId, CallState, Command, Output, Route, Side, ANNOUNCEMENT_LIMIT,
};
use rsip::{Method, Response};
use sip::message::Head;
use sip::sdp::Sdp;
use sip::session_timer;
use sip::TxId;
use std::time::Instant;
use tracing::{debug, info, warn};

impl B2bua {
    pub(crate) fn on_response(&mut self, now: Instant, tx: TxId, resp: Response, head: Head) {
        let code = resp.status_code.code();
        let Some(owner) = self.index.client(&tx) else {
            return;
        };
        if code >= 200 && !(owner.is_invite() && (200..300).contains(&code)) {
            self.index.remove_client(&tx);
        }
        let (id, role) = match owner {
            ClientTx::Call(id, role) => (id, role),
            ClientTx::Monitor(mid, MonitorRole::Invite) => {
                return self.on_monitor_response(now, mid, tx, resp, head)
            }
            ClientTx::Monitor(mid, MonitorRole::Move) => {
                return self.consult_moved(now, mid, tx, resp, head)
            }
            ClientTx::Monitor(mid, MonitorRole::End) => {
                if code >= 200 {
                    self.on_monitor_end_done(mid);
                }
                return;
            }
        };
        let _span = self.span(id).entered();
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
            ClientRole::Refresh(side, invite) => {
                self.on_refresh_response(now, id, side, invite, resp, head)
            }
            ClientRole::Notify => {
                if code >= 300 {
                    debug!(code, "the transferor refused a NOTIFY");
                }
            }
        }
    }

    pub(crate) fn on_b_invite_response(
        &mut self,
        now: Instant,
        id: CallId,
        tx: TxId,
        attempt: u32,
        resp: Response,
        head: Head,
    ) {
        let code = resp.status_code.code();
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let current =
            c.b.as_ref().is_some_and(|b| b.attempt == attempt) && c.state != CallState::Ending;
        if !current {
            if let Some(i) = c.forks.iter().position(|f| f.attempt == attempt) {
                return self.on_fork_response(now, id, tx, i, resp, head);
            }
            // A stale attempt (cancelled, superseded, or the call is ending).
            return self.on_stale_b_response(now, id, tx, attempt, &resp, &head);
        }
        match code {
            100 => {}
            101..=199 => self.on_b_provisional(now, id, tx, &resp, &head),
            200..=299 => {
                // This phone answered: the agent's other phones stop ringing.
                self.cancel_forks(now, id);
                self.on_b_answer(now, id, &resp, &head)
            }
            422 if self.retry_with_min_se(now, id, &resp) => {}
            _ => {
                // Failure of the current attempt.
                let c = self.calls.get_mut(&id).expect("present");
                if let Some(b) = c.b.as_mut() {
                    b.tx = None;
                }
                debug!(call = %c.public_id, code, "callee failed");
                if !self.promote_fork(id) {
                    self.fail_attempt(now, id, code);
                }
            }
        }
    }

    /// A response on one of the other phones ringing for the same offer.
    fn on_fork_response(
        &mut self,
        now: Instant,
        id: CallId,
        tx: TxId,
        i: usize,
        resp: Response,
        head: Head,
    ) {
        let code = resp.status_code.code();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        match code {
            100 => {}
            101..=199 => {
                let f = &mut c.forks[i];
                f.provisional = true;
                if head.to_tag.is_some() {
                    f.dialog.on_response(&resp, &head);
                }
                if f.cancel_pending {
                    f.cancel_pending = false;
                    send_cancel(&mut self.ep, &mut self.index, c, tx, now);
                }
            }
            200..=299 => {
                // This phone answered first: it becomes the call's B leg, and the
                // leg that was ringing as `b` is cancelled with the other forks.
                let winner = c.forks.remove(i);
                info!(call = %c.public_id, agent = ?winner.agent, uri = %winner.dialog.remote_target, "answered on another of the agent's phones");
                if let Some(main) = c.b.replace(winner) {
                    c.forks.push(main);
                }
                self.cancel_forks(now, id);
                self.on_b_answer(now, id, &resp, &head);
            }
            _ => {
                let f = c.forks.remove(i);
                debug!(call = %c.public_id, code, uri = %f.dialog.remote_target, "one of the agent's phones refused");
                self.index
                    .remove_dialog(&f.dialog.call_id, &f.dialog.local_tag);
            }
        }
    }

    /// The current leg failed while other phones of the same offer still ring:
    /// one of them becomes the current leg. False when none rings.
    pub(crate) fn promote_fork(&mut self, id: CallId) -> bool {
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        if c.forks.is_empty() || c.state == CallState::Ending {
            return false;
        }
        if let Some(old) = c.b.take() {
            self.index
                .remove_dialog(&old.dialog.call_id, &old.dialog.local_tag);
        }
        c.b = Some(c.forks.remove(0));
        true
    }

    /// Stop the other phones of the current offer: CANCEL what rings (once it can
    /// be cancelled); they are tracked with the stale attempts until their final
    /// (a late 2xx gets ACK + BYE).
    pub(crate) fn cancel_forks(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        for mut f in std::mem::take(&mut c.forks) {
            match f.tx {
                Some(t) if f.provisional => {
                    send_cancel(&mut self.ep, &mut self.index, c, t, now);
                }
                Some(_) => f.cancel_pending = true,
                None => {}
            }
            if f.tx.is_some() {
                c.stale.push(f);
            } else {
                self.index
                    .remove_dialog(&f.dialog.call_id, &f.dialog.local_tag);
            }
        }
    }

    /// A response to an attempt that is no longer current: CANCEL what rings once it
    /// can be cancelled, ACK + BYE a late 2xx, forget the attempt at its final.
    pub(crate) fn on_stale_b_response(
        &mut self,
        now: Instant,
        id: CallId,
        tx: TxId,
        attempt: u32,
        resp: &Response,
        head: &Head,
    ) {
        let code = resp.status_code.code();
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
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
                send_cancel(&mut self.ep, &mut self.index, c, tx, now);
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
                leg.dialog.on_response(resp, head);
                ack_2xx(&mut self.ep, &leg.dialog, head.cseq, None, &user_agent);
                let flow = leg.dialog.flow;
                let bye = leg.dialog.request(Method::Bye, None, &user_agent);
                let t = self.ep.send_request(now, bye, flow);
                c.open_ending += 1;
                c.client_txs.push(t);
                self.index.add_client(t, id, ClientRole::Ending);
                info!(call = %c.public_id, attempt, "late 2xx of a cancelled attempt: ACK + BYE");
            }
        }
        if code >= 200 {
            if let Some(b) = c.b.as_mut().filter(|b| b.attempt == attempt) {
                b.tx = None;
            }
            let index = &mut self.index;
            c.stale.retain(|b| {
                let keep = b.attempt != attempt || (200..300).contains(&code);
                if !keep {
                    index.remove_dialog(&b.dialog.call_id, &b.dialog.local_tag);
                }
                keep
            });
            self.maybe_finish(now, id);
        }
    }

    /// 18x from the current attempt: early dialog, early media relayed to A.
    pub(crate) fn on_b_provisional(
        &mut self,
        now: Instant,
        id: CallId,
        tx: TxId,
        resp: &Response,
        head: &Head,
    ) {
        let code = resp.status_code.code();
        let media_addr = self.snap.config.media.address;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let b = c.b.as_mut().expect("current attempt");
        b.provisional = true;
        if head.to_tag.is_some() {
            b.dialog.on_response(resp, head);
        }
        if b.cancel_pending {
            b.cancel_pending = false;
            send_cancel(&mut self.ep, &mut self.index, c, tx, now);
            return;
        }
        if c.transfer.is_some() {
            // A transfer's target rings: the transferor hears of it; the customer
            // keeps its hold audio (no early media from the target).
            return self.notify_transferor(now, id, code, false);
        }
        c.state = CallState::Early;
        let sdp = if is_sdp(&resp.headers, &resp.body) {
            Sdp::parse(&resp.body).ok()
        } else {
            None
        };
        // Early media from a browser: its transport, as from its answer. An SDP the
        // edge cannot use here is not relayed; the 2xx decides.
        let sdp = sdp.filter(|s| self.webrtc_sdp(id, Side::B, s).is_ok());
        let c = self.calls.get_mut(&id).expect("present");
        let fingerprint = self.webrtc_fingerprint.as_deref();
        let rewritten = sdp
            .as_ref()
            .map(|s| c.sdp_towards(Side::A, s, media_addr, fingerprint, false));
        if let Some(s) = &sdp {
            let addr = s.audio_target().ok().flatten();
            c.remote[1] = addr;
            self.outputs.push_back(Output::Media(
                id,
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
    }

    /// 2xx from the current attempt: ACK B (or wait for A's answer on a late offer),
    /// then play the announcement to the agent or connect the caller.
    pub(crate) fn on_b_answer(&mut self, now: Instant, id: CallId, resp: &Response, head: &Head) {
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let b = c.b.as_mut().expect("current attempt");
        if b.tx.is_none() {
            // A retransmitted 2xx: our ACK was lost. ACK again (unless it waits for A).
            if c.b_ack_waits_for_a.is_none() {
                ack_2xx(&mut self.ep, &b.dialog, head.cseq, None, &user_agent);
            }
            return;
        }
        b.tx = None;
        b.answered = true;
        b.dialog.on_response(resp, head);
        c.session.peer_update[Side::B as usize] = session_timer::allows_update(&resp.headers);
        let granted = session_timer::from_answer(&resp.headers);
        session::arm(c, &mut self.timers, now, Side::B, granted);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let b = c.b.as_mut().expect("current attempt");
        let sdp = if is_sdp(&resp.headers, &resp.body) {
            Sdp::parse(&resp.body).ok()
        } else {
            None
        };
        let agent = b.agent.clone();
        if c.a_sdp.is_some() || c.transfer.is_some() {
            // Normal offer/answer: ACK B at once.
            ack_2xx(&mut self.ep, &b.dialog, head.cseq, None, &user_agent);
        } else {
            // Late offer: B's 2xx holds the offer, A's ACK will hold the answer.
            c.b_ack_waits_for_a = Some((head.cseq, Side::B));
        }
        if c.transfer.is_some() {
            return self.transfer_answer(now, id, sdp);
        }
        let Some(sdp) = sdp else {
            warn!(call = %c.public_id, "callee answered without SDP: ending call");
            return self.end_call(now, id, 488, "answer without SDP");
        };
        if self.webrtc_sdp(id, Side::B, &sdp).is_err() {
            let c = self.calls.get_mut(&id).expect("present");
            warn!(call = %c.public_id, "callee answered with a secure stream the edge cannot use: ending call");
            return self.end_call(now, id, 488, "unusable secure answer");
        }
        let c = self.calls.get_mut(&id).expect("present");
        let addr = sdp.audio_target().ok().flatten();
        c.remote[1] = addr;
        c.te_pt[1] = sdp.telephone_event_pt();
        self.outputs.push_back(Output::Media(
            id,
            Command::Remote {
                side: Side::B,
                addr,
            },
        ));
        let fingerprint = self.webrtc_fingerprint.as_deref();
        let rewritten = c.sdp_towards(Side::A, &sdp, media_addr, fingerprint, false);
        c.agent = agent.or(c.agent.take());
        self.acd.withdraw(id);
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
                    id,
                    Command::Announce {
                        side: Side::B,
                        file: file.to_path_buf(),
                        pt,
                    },
                ));
                self.timers
                    .set(now + ANNOUNCEMENT_LIMIT, Timer::Announcement(id));
                return;
            }
            // A late offer: B's ACK needs A's answer, so A must be answered now.
            warn!(call = %c.public_id, "late-offer call: announcement skipped");
        }
        self.connect_a(now, id, rewritten);
    }

    /// The agent answered (and heard any announcement): answer the caller.
    pub(crate) fn connect_a(&mut self, now: Instant, id: CallId, answer: String) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.state = CallState::Answered;
        c.answered = Some(now);
        self.stats.answered += 1;
        if let Some(agent) = c.agent.clone() {
            self.offer_answered(now, &agent);
            self.agent_call(id, &agent, "connected");
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let max = self.snap.config.sip.max_call_duration;
        if !max.is_zero() {
            self.timers.set(now + max, Timer::MaxDuration(id));
        }
        info!(call = %c.public_id, agent = ?c.agent, "answered");
        let (queue, route) = c.route_names();
        if self
            .snap
            .call_settings(queue.as_deref(), route.as_deref())
            .record
        {
            c.recording = Some(false);
            self.outputs.push_back(Output::RecordStart {
                call: id,
                meta: c.recording_meta(false),
            });
        }
        self.send_a_final(now, id, 200, Some(answer));
    }

    /// B refused our session interval as too brief (422, RFC 4028 §7.4): place the
    /// attempt again, once, asking for its Min-SE. False when that does not apply.
    fn retry_with_min_se(&mut self, now: Instant, id: CallId, resp: &Response) -> bool {
        let Some(min) = session_timer::min_se(&resp.headers) else {
            return false;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        // A day at most: longer would let a dead call hold its ports for days.
        if min <= c.session.b_asked || min > 86_400 || c.session.b_asked == 0 {
            return false;
        }
        let Some(b) = c.b.take() else {
            return false;
        };
        c.session.b_asked = min;
        self.index
            .remove_dialog(&b.dialog.call_id, &b.dialog.local_tag);
        info!(call = %c.public_id, min_se = min, "callee wants a longer session interval (422): calling again");
        let flow = b.dialog.flow;
        // The same way again: its pre-loaded route (a Path), and WebRTC for a
        // browser (one behind another cluster node too).
        let target = crate::invite::LegTarget {
            uri: b.dialog.remote_target,
            remote: flow.remote,
            transport: flow.transport,
            local: Some(flow.local),
            route: b.dialog.route_set,
            browser: c.webrtc[Side::B as usize].is_some(),
        };
        self.start_b(now, id, target, b.agent);
        true
    }

    /// The current B attempt failed with `code`: try the next agent, or fail the call.
    pub(crate) fn fail_attempt(&mut self, now: Instant, id: CallId, code: u16) {
        let transfer = self
            .calls
            .get(&id)
            .and_then(|c| c.transfer.as_ref())
            .map(|t| t.queued);
        if transfer == Some(false) {
            return self.transfer_failed(now, id, code);
        }
        let queued_transfer = transfer == Some(true);
        self.cancel_forks(now, id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let agent = c.b.as_ref().and_then(|b| b.agent.clone());
        if let Some(old) = c.b.take() {
            if old.tx.is_some() {
                c.stale.push(old);
            } else {
                self.index
                    .remove_dialog(&old.dialog.call_id, &old.dialog.local_tag);
            }
        }
        match (&c.route, agent) {
            (Route::Queue { name }, Some(agent)) if c.a_tx.is_some() || queued_transfer => {
                let queue = name.clone();
                if !queued_transfer {
                    c.state = CallState::Queued;
                }
                c.agent = None;
                c.queued_at.get_or_insert(now);
                self.acd.enqueue(id);
                // 480 (the ring timeout, or the phone's own) and 408: it rang out.
                self.offer_missed(now, &agent, &queue, matches!(code, 408 | 480));
                self.agent_call(id, &agent, "missed");
                self.dispatch_queues(now);
            }
            _ => {
                self.send_a_final(now, id, map_failure(code), None);
                self.finish_or_wait(now, id, "callee failed");
            }
        }
    }
}
