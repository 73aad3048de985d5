//! Consult (warm) transfer by API: the agent puts the customer on hold and talks to
//! a third party, then connects the customer to it (and leaves) or goes back to
//! the customer.
//!
//! The consultation's target is called like a supervisor — its own dialog and RTP
//! port, mixed in the call's session in whisper mode: the agent and the target hear
//! each other, the customer (held: hold audio) hears neither, and the target's
//! voice is never recorded. Completing moves the target onto the call's B port by
//! a re-INVITE from the edge (the customer's leg is untouched: the edge anchors the
//! media), then ends the agent's leg; the customer's stream stays continuous.

use crate::call::BLeg;
use crate::in_dialog::ack_2xx;
use crate::index::{DialogOwner, MonitorRole};
use crate::monitor::MonitorState;
use crate::session;
use crate::transfer::{Target, TransferBy};
use crate::{is_sdp, B2bua, CallId, Command, CommandError, MonitorId, MonitorMode, Output, Side};
use rsip::{Method, Response};
use sip::message::Head;
use sip::sdp::Sdp;
use sip::TxId;
use std::time::Instant;
use tracing::{info, warn};

/// A consultation under way on a call.
#[derive(Debug)]
pub struct Consult {
    /// The target's leg (a monitor leg marked `consult`; the agent called, if
    /// any, is its `agent`).
    pub(crate) monitor: MonitorId,
    /// The customer was held before (stays held when the consultation is
    /// cancelled).
    a_held: bool,
    /// The re-INVITE moving the target onto the B port is out.
    completing: bool,
    /// The SDP that re-INVITE offers (the B leg's last SDP once it is answered).
    offer: Option<String>,
}

impl B2bua {
    /// `POST /api/v1/calls/{id}/consult {"to"}`: hold the customer and call `to`
    /// (an agent, a route number or an allowed URI) for the call's agent.
    pub(crate) fn consult_command(
        &mut self,
        now: Instant,
        call_public: &str,
        to: &str,
        by_agent: Option<&str>,
    ) -> Result<(), CommandError> {
        let id = self.own_call(call_public, by_agent)?;
        let target = self.transfer_target(now, to)?;
        self.transfer_allowed(id, &target)?;
        if self.calls[&id].consult.is_some() {
            return Err(CommandError::Conflict(
                "a consultation is under way on this call".into(),
            ));
        }
        let (party, agent) = self.third_party(now, target)?;
        let label = format!("consult:{to}");
        let (mid, _) = self.place_monitor(now, id, party, label, MonitorMode::Whisper, true)?;
        if let Some(a) = &agent {
            self.seize_and_claim(id, a);
            self.agent_changed(now, a);
            self.agent_call(id, a, "ringing");
        }
        if let Some(m) = self.monitors.get_mut(&mid) {
            m.agent = agent;
        }
        let c = self.calls.get_mut(&id).expect("checked");
        let a_held = c.held[Side::A as usize];
        c.consult = Some(Consult {
            monitor: mid,
            a_held,
            completing: false,
            offer: None,
        });
        let at_secs = now.saturating_duration_since(c.started).as_secs_f64();
        c.transfers.push(crate::TransferEvent {
            to: to.to_string(),
            by: TransferBy::Api,
            kind: "consult",
            outcome: "consulting",
            status: None,
            at_secs,
        });
        info!(call = %c.public_id, %to, "consultation: customer on hold, calling the target");
        *self.stats.transfers_by.entry("api").or_default() += 1;
        if a_held {
            self.set_held(id, Side::A, false);
        }
        self.set_held_or(id, Side::A, true, Some(media::audio::RINGBACK));
        self.process(now);
        Ok(())
    }

    /// Where a third party of a call is reached: an agent who is ready (its first
    /// phone), or a route number / allowed URI. Not a queue, not a join.
    pub(crate) fn third_party(
        &mut self,
        now: Instant,
        target: Target,
    ) -> Result<(crate::monitor::ThirdParty, Option<String>), CommandError> {
        Ok(match target {
            Target::Agent(a) => {
                // In cluster mode an agent another node holds is on a call there.
                if !self.agent_reachable(now, &a)
                    || !self.acd.is_free(&a)
                    || !self.claimable(now, &a)
                {
                    return Err(CommandError::Conflict(format!("agent {a} is not ready")));
                }
                let t = self
                    .agent_targets(now, &a)
                    .into_iter()
                    .next()
                    .ok_or_else(|| CommandError::Conflict(format!("agent {a} has no phone")))?;
                (self.third_party_at(t)?, Some(a))
            }
            Target::Leg(t) => (self.third_party_at(t)?, None),
            Target::Queue(q) => {
                return Err(CommandError::Conflict(format!(
                    "consult an agent, a number or a URI (queue `{q}`: transfer to it instead)"
                )))
            }
            Target::Join(_) => {
                return Err(CommandError::Conflict(
                    "consult an agent, a number or a URI".into(),
                ))
            }
        })
    }

    /// The call the API names, when `by_agent` (an agent asking) is on it.
    pub(crate) fn own_call(
        &self,
        call_public: &str,
        by_agent: Option<&str>,
    ) -> Result<CallId, CommandError> {
        let id = self.call_index(call_public)?;
        if let Some(me) = by_agent {
            if self.calls[&id].agent.as_deref() != Some(me) {
                return Err(CommandError::NotYours);
            }
        }
        Ok(id)
    }

    /// `POST …/consult/complete`: the target takes the customer; the agent leaves.
    /// Answered at once; the move is a re-INVITE to the target (its outcome is in
    /// the call's events).
    pub(crate) fn consult_complete(
        &mut self,
        now: Instant,
        call_public: &str,
        by_agent: Option<&str>,
    ) -> Result<(), CommandError> {
        let id = self.own_call(call_public, by_agent)?;
        let c = &self.calls[&id];
        let Some(k) = c.consult.as_ref().filter(|k| !k.completing) else {
            return Err(CommandError::Conflict("no consultation to complete".into()));
        };
        let mid = k.monitor;
        let m = &self.monitors[&mid];
        if m.state != MonitorState::Active {
            return Err(CommandError::Conflict(
                "the consultation's target has not answered".into(),
            ));
        }
        if m.webrtc.is_some() {
            return Err(CommandError::Conflict(
                "a consultation with a browser cannot be completed yet: transfer blind".into(),
            ));
        }
        let body = self.move_to_b(now, id, mid)?;
        let c = self.calls.get_mut(&id).expect("checked");
        let k = c.consult.as_mut().expect("checked");
        k.completing = true;
        k.offer = Some(body);
        info!(call = %c.public_id, "completing the consultation: the target moves to the customer");
        self.process(now);
        Ok(())
    }

    /// Send the re-INVITE that moves third party `mid` (answered, plain RTP)
    /// onto call `id`'s B port: the customer's codecs, the dialog's own `o=`
    /// line one version on (RFC 3264 §8). Its answer comes to
    /// [`Self::consult_moved`]. The SDP offered.
    pub(crate) fn move_to_b(
        &mut self,
        now: Instant,
        id: CallId,
        mid: MonitorId,
    ) -> Result<String, CommandError> {
        let media_addr = self.snap.config.media.address;
        let user_agent = self.snap.config.sip.user_agent.clone();
        let c = &self.calls[&id];
        let m = &self.monitors[&mid];
        let Some(offer) = c.transfer_offer() else {
            return Err(CommandError::Conflict(
                "the customer's SDP is unknown".into(),
            ));
        };
        let fam = if media_addr.is_ipv4() { "IP4" } else { "IP6" };
        let body = crate::transfer::with_o_line(
            &offer.rewrite(media_addr, c.b_port),
            &format!("o=edge {} 2 IN {fam} {media_addr}\r\n", m.sdp_session),
        );
        let m = self.monitors.get_mut(&mid).expect("checked");
        let req = m.dialog.request(
            Method::Invite,
            Some((body.as_bytes(), "application/sdp")),
            &user_agent,
        );
        let flow = m.dialog.flow;
        let tx = self.ep.send_request(now, req, flow);
        self.index.add_monitor_client(tx, mid, MonitorRole::Move);
        Ok(body)
    }

    /// `POST …/consult/cancel`: hang up on the target, back to the customer.
    pub(crate) fn consult_cancel(
        &mut self,
        now: Instant,
        call_public: &str,
        by_agent: Option<&str>,
    ) -> Result<(), CommandError> {
        let id = self.own_call(call_public, by_agent)?;
        let Some(k) = self.calls[&id].consult.as_ref().filter(|k| !k.completing) else {
            return Err(CommandError::Conflict("no consultation to cancel".into()));
        };
        let mid = k.monitor;
        self.end_monitor(now, mid, true, "consultation cancelled");
        self.process(now);
        Ok(())
    }

    /// The consultation's leg ended (cancelled, the target hung up or refused, the
    /// call ending): the customer is the agent's again; the `agent` called is
    /// released.
    pub(crate) fn consult_ended(
        &mut self,
        now: Instant,
        id: CallId,
        agent: Option<String>,
        answered: bool,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(k) = c.consult.take() else {
            return;
        };
        if let Some(e) = c
            .transfers
            .last_mut()
            .filter(|e| e.kind == "consult" && e.outcome == "consulting")
        {
            e.outcome = "cancelled";
        }
        *self.stats.transfers.entry("consult_cancelled").or_default() += 1;
        info!(call = %c.public_id, "consultation over: back to the customer");
        if let Some(a) = &agent {
            self.agent_call(id, a, "ended");
            self.agent_released(now, a, answered);
        }
        self.set_held(id, Side::A, false);
        if k.a_held {
            self.set_held(id, Side::A, true);
        }
    }

    /// The target's phone could not move (its re-INVITE failed): the
    /// consultation goes on as it was.
    pub(crate) fn consult_move_failed(&mut self, now: Instant, mid: MonitorId, code: u16) {
        let Some(call) = self.monitors.get(&mid).map(|m| m.call) else {
            return;
        };
        if let Some(c) = self
            .calls
            .get_mut(&call)
            .filter(|c| c.promoting == Some(mid))
        {
            // No member could take the agent's place: the conference ends.
            c.promoting = None;
            warn!(code, "the member refused to move onto the call: ending it");
            return self.end_call(
                now,
                call,
                200,
                "conference: nobody left to take the agent's place",
            );
        }
        if let Some(k) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.consult.as_mut())
            .filter(|k| k.monitor == mid)
        {
            k.completing = false;
            warn!(
                code,
                "the consultation's target refused to move: the consultation goes on"
            );
        }
    }

    /// The answer to the re-INVITE that moves the consultation's target onto the
    /// B port: on 2xx the target becomes the call's B leg and the agent leaves.
    pub(crate) fn consult_moved(
        &mut self,
        now: Instant,
        mid: MonitorId,
        tx: TxId,
        resp: Response,
        head: Head,
    ) {
        let code = resp.status_code.code();
        let user_agent = self.snap.config.sip.user_agent.clone();
        if code < 200 {
            return;
        }
        let Some(m) = self.monitors.get(&mid) else {
            // A retransmitted 2xx after the move: the dialog is the B leg's now.
            return;
        };
        let id = m.call;
        if code >= 300 {
            self.index.remove_client(&tx);
            return self.consult_move_failed(now, mid, code);
        }
        let sdp = is_sdp(&resp.headers, &resp.body)
            .then(|| Sdp::parse(&resp.body).ok())
            .flatten();
        let addr = sdp.as_ref().and_then(|s| s.audio_target().ok().flatten());
        let mut m = self.monitors.remove(&mid).expect("present");
        self.index.remove_client(&tx);
        self.index.remove_client(&m.invite_tx);
        m.dialog.on_response(&resp, &head);
        ack_2xx(&mut self.ep, &m.dialog, head.cseq, None, &user_agent);
        self.release_port(m.port);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        // A consultation completing (its offer kept there), or a conference
        // member taking the place of the agent who left (the offer already in
        // the B leg's last SDP).
        let offer = match c.consult.take() {
            Some(k) => k.offer,
            None => c.session.sent_sdp[Side::B as usize].take(),
        };
        let target_agent = m.agent.take();
        let promoted = c.promoting.take() == Some(mid);
        // The target's leg is the call's B leg now, on the B port.
        self.index
            .own_dialog(&m.dialog, DialogOwner::Call(id, Side::B));
        self.outputs
            .push_back(Output::Media(id, Command::MonitorClose { monitor: mid }));
        c.attempts += 1;
        let leg = BLeg {
            dialog: m.dialog,
            tx: None,
            provisional: true,
            cancel_pending: false,
            agent: target_agent.clone(),
            attempt: c.attempts,
            answered: true,
        };
        let old = c.b.replace(leg);
        let old_agent = c.agent.take();
        c.agent = target_agent.clone();
        c.te_pt[Side::B as usize] = sdp.as_ref().and_then(|s| s.telephone_event_pt());
        c.session.sent_sdp[Side::B as usize] = offer;
        session::arm(c, &mut self.timers, now, Side::B, None);
        if promoted {
            let at_secs = now.saturating_duration_since(c.started).as_secs_f64();
            c.participant_events.push(crate::ParticipantEvent {
                participant: m.public_id.clone(),
                who: m.user.clone(),
                action: "promoted",
                at_secs,
            });
            info!(call = %c.public_id, participant = %m.public_id, "the agent left the conference: a member took its place");
        } else {
            if let Some(e) = c
                .transfers
                .last_mut()
                .filter(|e| e.kind == "consult" && e.outcome == "consulting")
            {
                e.outcome = "completed";
            }
            info!(call = %c.public_id, agent = ?c.agent, "consultation completed: the target has the customer");
            *self.stats.transfers.entry("consult_completed").or_default() += 1;
        }
        if let Some(mut old) = old {
            let c = self.calls.get_mut(&id).expect("present");
            crate::transfer::bye_leg(&mut self.ep, &mut self.index, c, &mut old, now, &user_agent);
        }
        if let Some(a) = old_agent {
            self.agent_call(id, &a, "ended");
            self.agent_released(now, &a, true);
        }
        if let Some(a) = target_agent {
            self.offer_answered(now, &a);
            self.agent_call(id, &a, "connected");
        }
        // The moved party answered plain RTP (a browser is never moved): a B port
        // that ran ICE/DTLS-SRTP for a browser agent is plain again, or the
        // media would drop the new party's RTP and protect what goes to it.
        self.plain_rtp(id, Side::B);
        self.set_remote(id, Side::B, addr);
        // The new party starts with no flags of the one it replaces.
        let c = self.calls.get_mut(&id).expect("present");
        if std::mem::take(&mut c.party_flags[Side::B as usize]) != [false, false] {
            self.outputs.push_back(Output::Media(
                id,
                Command::PartyFlags {
                    side: Side::B,
                    muted: false,
                    deaf: false,
                },
            ));
        }
        self.set_held(id, Side::B, false);
        if !promoted {
            self.set_held(id, Side::A, false);
        }
        self.resume_customer(now, id);
    }
}
