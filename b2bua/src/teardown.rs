//! Ending calls: BYE/CANCEL towards the legs still up, waiting for those
//! transactions, then releasing ports, the agent and every index entry; transaction
//! timeouts and stray responses.

use crate::in_dialog::{ack_2xx, send_cancel};
use crate::index::{ClientRole, ClientTx, DialogOwner, MonitorRole};
use crate::{B2bua, CallId, CallState, Command, Output, Side};
use rsip::{Method, Request, Response};
use sip::message::Head;
use sip::{Flow, TxId};
use std::net::SocketAddr;
use std::time::Instant;
use tracing::info;

impl B2bua {
    /// Record a side's RTP address and tell the driver.
    pub(super) fn set_remote(&mut self, id: CallId, side: Side, addr: Option<SocketAddr>) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.remote[side as usize] = addr;
            self.outputs
                .push_back(Output::Media(id, Command::Remote { side, addr }));
        }
    }

    /// End a call from the edge's side: `code` for a caller not yet answered.
    pub(super) fn end_call(&mut self, now: Instant, id: CallId, code: u16, reason: &'static str) {
        self.end_call_inner(now, id, None, code, reason);
    }

    /// `side` sent BYE (already answered 200): end the rest of the call.
    pub(super) fn end_call_from(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        reason: &'static str,
    ) {
        self.end_call_inner(now, id, Some(side), 487, reason);
    }

    fn end_call_inner(
        &mut self,
        now: Instant,
        id: CallId,
        from: Option<Side>,
        code: u16,
        reason: &'static str,
    ) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get(&id) else { return };
        if c.state == CallState::Ending {
            return;
        }
        let established = c.is_established();
        let b_confirmed = c.b_confirmed();
        if c.a_tx.is_some() {
            self.send_a_final(now, id, code, None);
        }
        // Ending from here on: what the legs ending below trigger (a member
        // leaving) sees it.
        let c = self.calls.get_mut(&id).expect("present");
        c.end_reason = reason;
        c.state = CallState::Ending;
        self.end_monitors_of(now, id);
        self.cancel_forks(now, id);
        self.transfer_abandoned(now, id);
        let c = self.calls.get_mut(&id).expect("present");
        self.acd.withdraw(id);
        // B leg: CANCEL a pending INVITE, BYE a confirmed dialog.
        let mut byes: Vec<(Request, Flow)> = Vec::new();
        if let Some(b) = c.b.as_mut() {
            match b.tx {
                Some(t) if b.provisional => {
                    send_cancel(&mut self.ep, &mut self.index, c, t, now);
                }
                Some(_) => b.cancel_pending = true,
                None if (b_confirmed || b.answered) && from != Some(Side::B) => {
                    byes.push((
                        b.dialog.request(Method::Bye, None, &user_agent),
                        b.dialog.flow,
                    ));
                }
                None => {}
            }
        }
        if established && from != Some(Side::A) && !c.a_gone {
            byes.push((c.a.request(Method::Bye, None, &user_agent), c.a.flow));
        }
        for (bye, flow) in byes {
            let t = self.ep.send_request(now, bye, flow);
            self.index.add_client(t, id, ClientRole::Ending);
            c.client_txs.push(t);
            c.open_ending += 1;
        }
        // The caller's answer is no longer awaited by anyone.
        self.maybe_finish(now, id);
    }

    /// After a failed final to A: finish now unless legs are still open.
    pub(super) fn finish_or_wait(&mut self, now: Instant, id: CallId, reason: &'static str) {
        self.cancel_forks(now, id);
        if let Some(c) = self.calls.get_mut(&id) {
            if c.state != CallState::Ending {
                c.state = CallState::Ending;
                c.end_reason = reason;
                if let Some(b) = c.b.as_mut() {
                    if b.tx.is_some() && !b.provisional {
                        b.cancel_pending = true;
                    }
                }
            }
        }
        self.maybe_finish(now, id);
    }

    pub(super) fn ending_done(&mut self, now: Instant, id: CallId) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.open_ending = c.open_ending.saturating_sub(1);
        }
        self.maybe_finish(now, id);
    }

    pub(super) fn maybe_finish(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get(&id) else { return };
        let legs_open =
            c.b.iter()
                .chain(&c.forks)
                .chain(&c.stale)
                .any(|b| b.tx.is_some());
        if c.state == CallState::Ending && c.open_ending == 0 && !legs_open && c.a_tx.is_none() {
            self.finish(now, id);
        }
    }

    fn finish(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.remove(&id) else {
            return;
        };
        self.index.remove_dialog(&c.a.call_id, &c.a.local_tag);
        for d in c.transfer.iter().filter_map(|t| t.transferor_dialog()) {
            self.index.remove_dialog(&d.call_id, &d.local_tag);
        }
        for b in c.b.iter().chain(&c.forks).chain(&c.stale) {
            self.index
                .remove_dialog(&b.dialog.call_id, &b.dialog.local_tag);
        }
        for t in &c.client_txs {
            self.index.remove_client(t);
        }
        for t in &c.server_txs {
            // A request relayed to a leg that is gone: answer it.
            if let Some(req) = self.index.answered(t) {
                self.reply(now, *t, &req, 481, None);
            }
        }
        self.release_port(c.a_port);
        self.release_port(c.b_port);
        self.outputs.push_back(Output::Media(id, Command::Close));
        if let Some(agent) = &c.agent {
            if let Some(o) = crate::agents::agent_call_output(&self.snap, &c, agent, "ended") {
                self.outputs.push_back(o);
            }
            self.agent_released(now, agent, c.answered.is_some());
        }
        if let Some(agent) = &c.dialler {
            self.agent_released(now, agent, c.answered.is_some());
        }
        let outcome = c
            .outcome
            .unwrap_or(if c.answered.is_some() { 200 } else { 487 });
        *self.stats.ended_by_status.entry(outcome).or_default() += 1;
        let secs = c
            .answered
            .map(|a| now.saturating_duration_since(a).as_secs_f64())
            .unwrap_or(0.0);
        info!(call = %c.public_id, outcome, reason = c.end_reason, talk_secs = secs, "call ended");
        self.outputs.push_back(Output::CallEnded {
            call: id,
            public_id: c.public_id,
            outcome,
            answered: c.answered.is_some(),
            reason: c.end_reason,
        });
        self.dispatch_queues(now);
    }

    /// CANCEL the current B attempt (it stays tracked as stale until its final).
    pub(crate) fn cancel_attempt(&mut self, now: Instant, id: CallId) {
        self.cancel_forks(now, id);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(b) = c.b.as_mut() else { return };
        match b.tx {
            Some(t) if b.provisional => {
                send_cancel(&mut self.ep, &mut self.index, c, t, now);
            }
            Some(_) => b.cancel_pending = true,
            None => {}
        }
    }

    /// A client transaction ended without a final response: timed out (`code`
    /// 408) or its transport failed (503, §8.1.3.1).
    pub(super) fn on_tx_failed(&mut self, now: Instant, tx: TxId, code: u16) {
        let (id, role) = match self.index.remove_client(&tx) {
            Some(ClientTx::Call(id, role)) => (id, role),
            Some(ClientTx::Monitor(mid, MonitorRole::Move)) => {
                return self.consult_move_failed(now, mid, code);
            }
            Some(ClientTx::Monitor(mid, role)) => {
                let invite = matches!(role, MonitorRole::Invite);
                return self.on_monitor_tx_timeout(now, mid, invite);
            }
            None => return,
        };
        {
            let _span = self.span(id).entered();
            match role {
                ClientRole::Initial(attempt) => {
                    let current = self.calls.get(&id).is_some_and(|c| {
                        c.state != CallState::Ending
                            && c.b.as_ref().is_some_and(|b| b.attempt == attempt)
                    });
                    if let Some(c) = self.calls.get_mut(&id) {
                        for b in c.b.iter_mut().chain(c.stale.iter_mut()) {
                            if b.attempt == attempt {
                                b.tx = None;
                            }
                        }
                        // A phone of the current offer that never answered.
                        let index = &mut self.index;
                        c.forks.retain(|f| {
                            if f.attempt == attempt {
                                index.remove_dialog(&f.dialog.call_id, &f.dialog.local_tag);
                            }
                            f.attempt != attempt
                        });
                        let index = &mut self.index;
                        c.stale.retain(|b| {
                            if b.attempt == attempt {
                                index.remove_dialog(&b.dialog.call_id, &b.dialog.local_tag);
                            }
                            b.attempt != attempt
                        });
                    }
                    if current && self.promote_fork(id) {
                        // Another of the agent's phones still rings.
                    } else if current {
                        let why = if code == 408 {
                            "did not respond"
                        } else {
                            "is unreachable (transport failed)"
                        };
                        info!(call = %self.calls[&id].public_id, "callee {why}: {code}");
                        self.fail_attempt(now, id, code);
                    } else {
                        self.maybe_finish(now, id);
                    }
                }
                ClientRole::Reinvite => self.reinvite_failed(now, id, code),
                ClientRole::Relay(server) => {
                    if let Some(req) = self.index.answered(&server) {
                        self.reply(now, server, &req, code, None);
                    }
                }
                ClientRole::Ending => self.ending_done(now, id),
                ClientRole::Refresh(side, _) => self.refresh_timed_out(now, id, side),
                ClientRole::Notify => {}
            }
        }
    }

    /// A 2xx for an INVITE whose transaction is gone: our ACK was lost; ACK again.
    pub(super) fn on_stray(&mut self, _now: Instant, _resp: Response, head: Head, _flow: Flow) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(tag) = head.from_tag.clone() else {
            return;
        };
        let Some(DialogOwner::Call(id, side)) = self.index.dialog(&head.call_id, &tag) else {
            return;
        };
        let Some(c) = self.calls.get(&id) else { return };
        if c.b_ack_waits_for_a.is_some() {
            return;
        }
        if let Some(d) = c.dialog(side) {
            ack_2xx(&mut self.ep, d, head.cseq, None, &user_agent);
        }
    }
}
