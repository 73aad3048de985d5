//! re-INVITE pass-through (hold/unhold, new SDP): the offer from one side goes to the
//! other with the SDP rewritten for the edge's ports, and the answer comes back the
//! same way. A re-INVITE without SDP gets the other side's offer in our 2xx and its
//! answer in the ACK, which we forward in our ACK.

use crate::call::Reinvite;
use crate::in_dialog::ack_2xx;
use crate::index::{ClientRole, ServerRole};
use crate::session;
use crate::{is_sdp, map_failure, B2bua, CallId, CallState, Side};
use rsip::headers::UntypedHeader;
use rsip::{Method, Request, Response};
use sip::message;
use sip::message::Head;
use sip::sdp::Direction;
use sip::sdp::Sdp;
use sip::session_timer;
use sip::TxId;
use std::time::Instant;
use tracing::debug;

impl B2bua {
    pub(super) fn on_reinvite(
        &mut self,
        now: Instant,
        id: CallId,
        side: Side,
        tx: TxId,
        req: Request,
    ) {
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let c = self.calls.get_mut(&id).expect("checked");
        c.server_txs.push(tx);
        let busy = c.reinvite.is_some()
            || c.transfer.is_some()
            || c.b_ack_waits_for_a.is_some()
            || c.session.refreshing.contains(&true);
        if !c.is_established() || busy || (c.state == CallState::Answered && side == Side::A) {
            let h = rsip::headers::RetryAfter::new("1").into();
            return self.reply_with(now, tx, &req, 491, vec![h]);
        }
        let sdp = if is_sdp(&req.headers, &req.body) {
            match Sdp::parse(&req.body)
                .and_then(|s| s.audio_target().map(|_| s))
                .and_then(|s| s.webrtc().map(|_| s))
            {
                Ok(s) => Some(s),
                Err(e) => {
                    let w = crate::warning(&e.to_string());
                    return self.reply_with(now, tx, &req, 488, vec![w]);
                }
            }
        } else {
            None
        };
        // A re-INVITE refreshes the session of the leg it came on (RFC 4028).
        let Ok(grant) = self.grant_for(now, tx, &req) else {
            return;
        };
        if let Some(s) = &sdp {
            if self.webrtc_sdp(id, side, s).is_err() {
                let w = crate::warning("secure stream not usable here");
                return self.reply_with(now, tx, &req, 488, vec![w]);
            }
        }
        let c = self.calls.get_mut(&id).expect("checked");
        if let Some(d) = c.dialog_mut(side) {
            d.on_refresh(&req);
        }
        let previous = c.remote[side as usize];
        let other = side.other();
        let fingerprint = self.webrtc_fingerprint.as_deref();
        let mut body = sdp
            .as_ref()
            .map(|s| c.sdp_towards(other, s, media_addr, fingerprint, true));
        let hold = sdp.as_ref().map(Sdp::is_hold);
        let (queue, route) = c.route_names();
        let hold_audio = self
            .snap
            .call_settings(queue.as_deref(), route.as_deref())
            .hold_audio
            .is_some();
        // Held with `inactive` while the edge plays hold audio: the held party is told
        // `sendonly` (it receives), and the holder gets `inactive` back.
        let answer_inactive = hold == Some(true)
            && hold_audio
            && sdp.as_ref().map(Sdp::audio_direction) == Some(Direction::Inactive);
        if answer_inactive {
            body = body.map(|b| b.replace("a=inactive\r\n", "a=sendonly\r\n"));
        }
        let session_headers = self.session_request_headers(&self.calls[&id], other);
        let c = self.calls.get_mut(&id).expect("checked");
        if body.is_some() {
            c.session.sent_sdp[other as usize] = body.clone();
        }
        let Some(d) = c.dialog_mut(other) else {
            return self.reply(now, tx, &req, 500, None);
        };
        let mut out = d.request(
            Method::Invite,
            body.as_deref().map(|b| (b.as_bytes(), "application/sdp")),
            &user_agent,
        );
        out.headers.extend(session_headers);
        let flow = d.flow;
        c.reinvite = Some(Reinvite {
            from: side,
            server_tx: tx,
            offerless: sdp.is_none(),
            hold,
            answer_inactive,
            previous,
            grant,
        });
        if side == Side::A {
            if let Some(s) = &sdp {
                c.a_sdp = Some(s.clone());
            }
        }
        debug!(call = %c.public_id, from = ?side, hold = ?sdp.as_ref().map(|s| s.audio_direction()), "re-INVITE");
        let ctx = self.ep.send_request(now, out, flow);
        let c = self.calls.get_mut(&id).expect("checked");
        c.client_txs.push(ctx);
        self.index.add_client(ctx, id, ClientRole::Reinvite);
        self.index.add_relayed(tx, id, ServerRole::Reinvite, req);
        if let Some(s) = sdp {
            let addr = s.audio_target().ok().flatten();
            self.set_remote(id, side, addr);
        }
    }

    pub(super) fn on_reinvite_response(
        &mut self,
        now: Instant,
        id: CallId,
        _tx: TxId,
        resp: Response,
        head: Head,
    ) {
        let code = resp.status_code.code();
        if code < 200 {
            return;
        }
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(rv) = c.reinvite.take() else {
            // A retransmitted 2xx: ACK again on the leg it came from.
            if (200..300).contains(&code) && c.b_ack_waits_for_a.is_none() {
                let side = if c.a.call_id == head.call_id {
                    Side::A
                } else {
                    Side::B
                };
                if let Some(d) = c.dialog(side) {
                    ack_2xx(&mut self.ep, d, head.cseq, None, &user_agent);
                }
            }
            return;
        };
        let other = rv.from.other();
        let Some(req) = self.index.answered(&rv.server_tx) else {
            return;
        };
        if !(200..300).contains(&code) {
            let c = self.calls.get_mut(&id).expect("present");
            c.reinvite = None;
            self.set_remote(id, rv.from, rv.previous);
            let mapped = if code == 491 { 491 } else { map_failure(code) };
            return self.reply(now, rv.server_tx, &req, mapped, None);
        }
        let sdp = if is_sdp(&resp.headers, &resp.body) {
            Sdp::parse(&resp.body).ok()
        } else {
            None
        };
        // A browser's answer keeps its transport (same ICE and DTLS, or new ones).
        let sdp = sdp.filter(|s| self.webrtc_sdp(id, other, s).is_ok());
        let c = self.calls.get_mut(&id).expect("present");
        if let Some(d) = c.dialog_mut(other) {
            d.on_response(&resp, &head);
        }
        // Both legs were refreshed: `other` by its 2xx, `from` by ours.
        let granted = session_timer::from_answer(&resp.headers);
        session::arm(c, &mut self.timers, now, other, granted);
        session::arm(c, &mut self.timers, now, rv.from, rv.grant);
        if rv.offerless {
            c.b_ack_waits_for_a = Some((head.cseq, other));
        } else if let Some(d) = c.dialog(other) {
            ack_2xx(&mut self.ep, d, head.cseq, None, &user_agent);
        }
        let contact = c
            .dialog(rv.from)
            .map(|d| d.local_contact.clone())
            .unwrap_or_default();
        let fingerprint = self.webrtc_fingerprint.as_deref();
        let mut body = sdp
            .as_ref()
            .map(|s| c.sdp_towards(rv.from, s, media_addr, fingerprint, false));
        if rv.answer_inactive {
            body = body.map(|b| b.replace("a=recvonly\r\n", "a=inactive\r\n"));
        }
        if let Some(s) = &sdp {
            let addr = s.audio_target().ok().flatten();
            self.set_remote(id, other, addr);
        }
        if let Some(h) = rv.hold {
            self.set_held(id, other, h);
        }
        let mut r = message::response(&req, 200, None, self.ep.server_name());
        r.headers.push(rsip::headers::Contact::new(contact).into());
        if let Some(n) = rv.grant {
            r.headers.extend(session::grant_headers(n));
        }
        if let Some(b) = body {
            r.body = message::set_body(&mut r.headers, b.as_bytes(), Some("application/sdp"));
            if let Some(c) = self.calls.get_mut(&id) {
                c.session.sent_sdp[rv.from as usize] = Some(b);
            }
        }
        self.ep.respond(now, rv.server_tx, r);
    }

    /// The re-INVITE to the other side got no answer at all.
    pub(super) fn reinvite_failed(&mut self, now: Instant, id: CallId, code: u16) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(rv) = c.reinvite.take() else { return };
        let req = self.index.answered(&rv.server_tx);
        self.set_remote(id, rv.from, rv.previous);
        if let Some(req) = req {
            self.reply(now, rv.server_tx, &req, code, None);
        }
    }
}
