//! CANCEL, ACK, BYE and the other in-dialog requests of a call, relayed between
//! the legs; ACK for 2xx and CANCEL towards B.

use crate::call::Call;
use crate::index::{ClientRole, DialogOwner, Index, ServerRole};
use crate::{content_type, is_sdp, B2bua, CallId, CallState, Command, Output, Side};
use rsip::headers::UntypedHeader;
use rsip::{Method, Request, Response};
use sip::dialog::Dialog;
use sip::endpoint::Endpoint;
use sip::message;
use sip::message::Head;
use sip::sdp::Sdp;
use sip::{Flow, TxId};
use std::time::Instant;
use tracing::info;

impl B2bua {
    pub(crate) fn on_cancelled(&mut self, now: Instant, invite: TxId) {
        let Some((id, ServerRole::Initial)) = self.index.server(&invite) else {
            return;
        };
        info!(call = %self.calls.get(&id).map(|c| c.public_id.as_str()).unwrap_or("?"), "caller cancelled");
        self.send_a_final(now, id, 487, None);
        self.end_call(now, id, 487, "caller cancelled");
    }

    pub(crate) fn on_ack(&mut self, _now: Instant, req: Request, head: Head, _flow: Flow) {
        let Some(tag) = head.to_tag.clone() else {
            return;
        };
        let Some(DialogOwner::Call(id, side)) = self.index.dialog(&head.call_id, &tag) else {
            return;
        };
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if side == Side::A && c.state == CallState::Answered {
            c.state = CallState::Connected;
        }
        // Forward the answer in the ACK when our ACK to the other side waited for it.
        if let Some((cseq, waiting_side)) = c.b_ack_waits_for_a {
            if waiting_side == side.other() {
                c.b_ack_waits_for_a = None;
                let sdp = if is_sdp(&req.headers, &req.body) {
                    Sdp::parse(&req.body).ok()
                } else {
                    None
                };
                if let Some(s) = &sdp {
                    let addr = s.audio_target().ok().flatten();
                    c.remote[side as usize] = addr;
                    self.outputs
                        .push_back(Output::Media(id, Command::Remote { side, addr }));
                }
                let other = side.other();
                let fingerprint = self.webrtc_fingerprint.as_deref();
                let body = sdp.map(|s| c.sdp_towards(other, &s, media_addr, fingerprint, false));
                if body.is_some() {
                    c.session.sent_sdp[other as usize] = body.clone();
                }
                if let Some(d) = c.dialog(other) {
                    ack_2xx(&mut self.ep, d, cseq, body.as_deref(), &user_agent);
                }
            }
        }
    }

    pub(crate) fn on_in_dialog(
        &mut self,
        now: Instant,
        tx: TxId,
        req: Request,
        head: Head,
        owner: Option<DialogOwner>,
    ) {
        let Some(DialogOwner::Call(id, side)) = owner else {
            return self.reply(now, tx, &req, 481, None);
        };
        let _span = self.span(id).entered();
        let Some(c) = self.calls.get_mut(&id) else {
            return self.reply(now, tx, &req, 481, None);
        };
        let Some(d) = c.dialog_mut(side) else {
            return self.reply(now, tx, &req, 481, None);
        };
        if !d.accept_remote_seq(head.cseq, req.method) {
            return self.reply(now, tx, &req, 500, None);
        }
        match req.method {
            Method::Bye => {
                self.reply(now, tx, &req, 200, None);
                let c = &self.calls[&id];
                info!(call = %c.public_id, from = ?side, "BYE");
                if c.state == CallState::Announcing && side == Side::B {
                    // The agent left before the customer was connected: next agent.
                    let c = self.calls.get_mut(&id).expect("present");
                    c.pending_answer = None;
                    self.outputs
                        .push_back(Output::Media(id, Command::AnnounceStop));
                    return self.fail_attempt(now, id, 480);
                }
                if side == Side::B && self.agent_leaves_conference(now, id) {
                    return;
                }
                if side == Side::A && self.customer_leaves_conference(now, id) {
                    return;
                }
                self.end_call_from(now, id, side, "BYE");
            }
            Method::Invite => self.on_reinvite(now, id, side, tx, req),
            Method::Options => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                self.reply_with(now, tx, &req, 200, vec![allow]);
            }
            Method::Info => self.relay_request(now, id, side, tx, req),
            Method::Refer => self.on_refer(now, id, side, tx, req, head.cseq),
            Method::Update => self.on_update(now, id, side, tx, req),
            _ => {
                let allow = rsip::headers::Allow::new(message::ALLOW).into();
                self.reply_with(now, tx, &req, 405, vec![allow]);
            }
        }
    }

    /// Pass an in-dialog non-INVITE request (INFO) to the other side.
    pub(crate) fn relay_request(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        tx: TxId,
        req: Request,
    ) {
        let user_agent = self.snap.config.sip.user_agent.clone();
        let c = self.calls.get_mut(&id).expect("checked");
        if c.transfer.is_some() {
            // The other side is changing hands: ask again once it is settled.
            let h = rsip::headers::RetryAfter::new("1").into();
            return self.reply_with(now, tx, &req, 491, vec![h]);
        }
        let established = c.is_established();
        let Some(d) = c.dialog_mut(side.other()).filter(|_| established) else {
            return self.reply(now, tx, &req, 481, None);
        };
        let ct = content_type(&req.headers);
        let body = (!req.body.is_empty()).then(|| {
            (
                req.body.as_slice(),
                ct.as_deref().unwrap_or("application/octet-stream"),
            )
        });
        let out = d.request(req.method, body, &user_agent);
        let flow = d.flow;
        let ctx = self.ep.send_request(now, out, flow);
        self.index.add_client(ctx, id, ClientRole::Relay(tx));
        self.index.add_relayed(tx, id, ServerRole::Relayed, req);
        let c = self.calls.get_mut(&id).expect("checked");
        c.client_txs.push(ctx);
        c.server_txs.push(tx);
    }

    pub(crate) fn relay_response(
        &mut self,
        now: Instant,
        _id: CallId,
        server: TxId,
        resp: &Response,
    ) {
        let code = resp.status_code.code();
        if code < 200 {
            return;
        }
        if let Some(req) = self.index.answered(&server) {
            self.reply(now, server, &req, code, None);
        }
    }
}

/// Send the ACK for a 2xx with CSeq `cseq` on `dialog` (again for each
/// retransmitted 2xx).
pub(crate) fn ack_2xx(
    ep: &mut Endpoint,
    dialog: &Dialog,
    cseq: u32,
    body: Option<&str>,
    user_agent: &str,
) {
    let flow = dialog.flow;
    let via = ep.new_via(flow);
    let ack = dialog.ack(
        cseq,
        via,
        body.map(|b| (b.as_bytes(), "application/sdp")),
        user_agent,
    );
    ep.send_ack(&ack, flow);
}

/// CANCEL the client INVITE `tx` of call `c`; the CANCEL is an ending transaction.
pub(crate) fn send_cancel(
    ep: &mut Endpoint,
    index: &mut Index,
    c: &mut Call,
    tx: TxId,
    now: Instant,
) {
    if let Some(t) = ep.cancel(now, tx) {
        index.add_client(t, c.id, ClientRole::Ending);
        c.client_txs.push(t);
        c.open_ending += 1;
    }
}
