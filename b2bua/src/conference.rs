//! Conferences: parties added to an answered call by API. Each added party is a
//! leg of its own (its dialog and RTP port, like a supervisor's) mixed in the
//! call's session as a member: it hears the customer, the agent and the other
//! members and is heard by them (not by whispering supervisors' ears only), and
//! is recorded on the agent's channel. Every party (customer, agent, member) can
//! be muted (heard by nobody), made deaf (hears nothing) or held (hears the hold
//! audio, heard by nobody); a member can be removed (BYE). `max_participants`
//! (`[sip]`, default 10) bounds a call's parties.

use crate::monitor::MonitorState;
use crate::transfer::Target;
use crate::{B2bua, Call, CallId, Command, CommandError, MonitorId, MonitorMode, Output, Side};
use std::time::Instant;
use tracing::info;

/// One party of a call, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// `customer`, `agent`, or the member's id (`m7`).
    pub id: String,
    /// `customer`, `agent` or `member`.
    pub role: &'static str,
    /// Who it is: the caller, the agent's id, or what the member was added as.
    pub who: String,
    /// `calling` (a member not answered yet) or `connected`.
    pub state: &'static str,
    pub muted: bool,
    pub deaf: bool,
    pub held: bool,
}

/// A party added to or removed from a call's conference.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantEvent {
    pub participant: String,
    pub who: String,
    /// `added`, `answered`, `removed` or `left` (hung up or refused).
    pub action: &'static str,
    pub at_secs: f64,
}

/// What `PATCH …/participants/{pid}` changes (absent: unchanged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub muted: Option<bool>,
    pub deaf: Option<bool>,
    pub held: Option<bool>,
}

fn push_event(c: &mut Call, now: Instant, participant: &str, who: &str, action: &'static str) {
    let at_secs = now.saturating_duration_since(c.started).as_secs_f64();
    c.participant_events.push(ParticipantEvent {
        participant: participant.to_string(),
        who: who.to_string(),
        action,
        at_secs,
    });
}

/// A conference member's leg that is still in its call.
fn live_member(m: &crate::monitor::Monitor) -> bool {
    m.mode == MonitorMode::Member && m.state != MonitorState::Ending
}

impl B2bua {
    /// The members of call `id` still in it.
    fn members(&self, id: CallId) -> impl Iterator<Item = &crate::monitor::Monitor> {
        self.monitors
            .values()
            .filter(move |m| m.call == id && live_member(m))
    }

    /// Conferences now by their number of parties (customer, agent and members
    /// still in the call), for the metrics.
    pub fn conference_sizes(&self) -> Vec<(usize, usize)> {
        // One pass over the monitor legs (this runs at every metrics scrape).
        let mut members: std::collections::HashMap<CallId, usize> = Default::default();
        for m in self.monitors.values().filter(|m| live_member(m)) {
            *members.entry(m.call).or_default() += 1;
        }
        let mut by: std::collections::BTreeMap<usize, usize> = Default::default();
        for (call, n) in members {
            if let Some(c) = self.calls.get(&call) {
                *by.entry(1 + usize::from(c.b.is_some()) + n).or_default() += 1;
            }
        }
        by.into_iter().collect()
    }

    /// The parties of call `c`, for the API: customer, agent, and the conference
    /// members among its third parties `of` (each monitor leg of the call, in any
    /// order).
    pub(crate) fn participants(c: &Call, of: &[&crate::monitor::Monitor]) -> Vec<ParticipantInfo> {
        let mut v = Vec::new();
        v.extend((!c.a_gone).then(|| ParticipantInfo {
            id: "customer".into(),
            role: "customer",
            who: c.caller.clone(),
            state: if c.is_established() {
                "connected"
            } else {
                "calling"
            },
            muted: c.party_flags[0][0],
            deaf: c.party_flags[0][1],
            held: c.held[0],
        }));
        if c.b.as_ref().is_some_and(|b| b.answered) {
            v.push(ParticipantInfo {
                id: "agent".into(),
                role: "agent",
                who: c.agent.clone().unwrap_or_else(|| c.callee.clone()),
                state: "connected",
                muted: c.party_flags[1][0],
                deaf: c.party_flags[1][1],
                held: c.held[1],
            });
        }
        let mut members: Vec<_> = of.iter().filter(|m| live_member(m)).collect();
        members.sort_by_key(|m| m.id);
        v.extend(members.into_iter().map(|m| ParticipantInfo {
            id: m.public_id.clone(),
            role: "member",
            who: m.user.clone(),
            state: if m.state == MonitorState::Active {
                "connected"
            } else {
                "calling"
            },
            muted: m.flags[0],
            deaf: m.flags[1],
            held: m.flags[2],
        }));
        v
    }

    /// `POST /api/v1/calls/{id}/participants {"to"}`: call `to` (an agent, a
    /// queue's longest-idle free agent, a route number or an allowed URI) into the
    /// call. The new party's id.
    pub(crate) fn add_participant(
        &mut self,
        now: Instant,
        call_public: &str,
        to: &str,
        by_agent: Option<&str>,
    ) -> Result<String, CommandError> {
        let id = self.own_call(call_public, by_agent)?;
        let c = &self.calls[&id];
        if !c.is_established() || c.b.is_none() {
            return Err(CommandError::NotAnswered);
        }
        if c.transfer.is_some() || c.consult.is_some() {
            return Err(CommandError::Conflict(
                "a transfer or consultation is under way on this call".into(),
            ));
        }
        let max = self.snap.config.sip.max_participants;
        if 2 + self.members(id).count() >= max {
            return Err(CommandError::Conflict(format!(
                "the conference is full (max_participants = {max})"
            )));
        }
        let target = match self.transfer_target(now, to)? {
            Target::Queue(q) => {
                let agents = self
                    .snap
                    .queue(&q)
                    .map(|q| q.agents.clone())
                    .unwrap_or_default();
                match self.acd.pick_where(&agents, |a| self.can_offer(now, a)) {
                    Some(a) => Target::Agent(a.to_string()),
                    None => {
                        return Err(CommandError::Conflict(format!(
                            "no agent of queue `{q}` is ready"
                        )))
                    }
                }
            }
            t => t,
        };
        let (party, agent) = self.third_party(now, target)?;
        let (mid, pid) =
            self.place_monitor(now, id, party, to.to_string(), MonitorMode::Member, false)?;
        if let Some(a) = &agent {
            self.seize_and_claim(id, a);
            self.agent_changed(now, a);
        }
        if let Some(m) = self.monitors.get_mut(&mid) {
            m.agent = agent;
        }
        let c = self.calls.get_mut(&id).expect("checked");
        push_event(c, now, &pid, to, "added");
        info!(call = %c.public_id, participant = %pid, %to, "conference: calling a party");
        *self.stats.transfers.entry("conference_added").or_default() += 1;
        self.process(now);
        Ok(pid)
    }

    /// `PATCH …/participants/{pid}`: mute, deafen or hold a party.
    pub(crate) fn set_participant(
        &mut self,
        call_public: &str,
        pid: &str,
        f: Flags,
        by_agent: Option<&str>,
    ) -> Result<(), CommandError> {
        let id = self.own_call(call_public, by_agent)?;
        if !self.calls[&id].is_established() {
            return Err(CommandError::NotAnswered);
        }
        let side = match pid {
            "customer" => Some(Side::A),
            "agent" => Some(Side::B),
            _ => None,
        };
        if let Some(side) = side {
            let c = self.calls.get_mut(&id).expect("checked");
            let old = c.party_flags[side as usize];
            let new = [f.muted.unwrap_or(old[0]), f.deaf.unwrap_or(old[1])];
            if new != old {
                c.party_flags[side as usize] = new;
                info!(call = %c.public_id, participant = %pid, muted = new[0], deaf = new[1], "participant flags");
                self.outputs.push_back(Output::Media(
                    id,
                    Command::PartyFlags {
                        side,
                        muted: new[0],
                        deaf: new[1],
                    },
                ));
            }
            if let Some(h) = f.held {
                self.set_held(id, side, h);
            }
            return Ok(());
        }
        let Some(m) = self.monitors.values_mut().find(|m| {
            m.call == id
                && m.public_id == pid
                && m.mode == MonitorMode::Member
                && m.state != MonitorState::Ending
        }) else {
            return Err(CommandError::NoParticipant);
        };
        let old = m.flags;
        m.flags = [
            f.muted.unwrap_or(old[0]),
            f.deaf.unwrap_or(old[1]),
            f.held.unwrap_or(old[2]),
        ];
        if m.flags != old {
            info!(participant = %pid, muted = m.flags[0], deaf = m.flags[1], held = m.flags[2], "participant flags");
            let [muted, deaf, held] = m.flags;
            let (call, mid) = (m.call, m.id);
            self.outputs.push_back(Output::Media(
                call,
                Command::MemberFlags {
                    monitor: mid,
                    muted,
                    deaf,
                    held,
                },
            ));
            if held != old[2] {
                // What a held member hears: the call's hold audio (the session
                // keeps one for the call).
                let c = &self.calls[&call];
                let audio = crate::hold::hold_audio(&self.snap, c)
                    .unwrap_or_else(|| media::audio::RINGBACK.into());
                if held && !c.held.contains(&true) {
                    // Only loads the audio: nobody of the two parties is held.
                    self.outputs.push_back(Output::Media(
                        call,
                        Command::Hold {
                            side: Side::A,
                            held: false,
                            audio: Some(audio),
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// `DELETE …/participants/{pid}`: BYE (or CANCEL) a member.
    pub(crate) fn remove_participant(
        &mut self,
        now: Instant,
        call_public: &str,
        pid: &str,
        by_agent: Option<&str>,
    ) -> Result<(), CommandError> {
        let id = self.own_call(call_public, by_agent)?;
        if matches!(pid, "customer" | "agent") {
            return Err(CommandError::Conflict(
                "the customer's and the agent's legs end by hanging up the call".into(),
            ));
        }
        let mid = self
            .members(id)
            .find(|m| m.public_id == pid)
            .map(|m| m.id)
            .ok_or(CommandError::NoParticipant)?;
        if let Some(c) = self.calls.get_mut(&id) {
            push_event(c, now, pid, "", "removed");
        }
        self.end_monitor(now, mid, true, "removed from the conference");
        self.process(now);
        Ok(())
    }

    /// The agent hung up (its BYE answered) while members are on the call: the
    /// conference goes on — the first answered member (plain RTP) is moved onto
    /// the B port by a re-INVITE and takes the agent's place. False (the call
    /// ends as usual) when no member can.
    pub(crate) fn agent_leaves_conference(&mut self, now: Instant, id: CallId) -> bool {
        let c = &self.calls[&id];
        let (queue, route) = c.route_names();
        let settings = self.snap.call_settings(queue.as_deref(), route.as_deref());
        if settings.conference_ends_without_agent
            || !c.is_established()
            || c.transfer.is_some()
            || c.consult.is_some()
            || c.promoting.is_some()
            || c.reinvite.is_some()
        {
            return false;
        }
        let Some(mid) = self
            .members(id)
            .filter(|m| m.state == MonitorState::Active && m.webrtc.is_none())
            .map(|m| m.id)
            .min()
        else {
            return false;
        };
        if c.a_gone && self.members(id).count() < 2 {
            // Without the customer, one member alone is no conference.
            return false;
        }
        let c = self.calls.get_mut(&id).expect("checked");
        if let Some(leg) = c.b.take() {
            self.index
                .remove_dialog(&leg.dialog.call_id, &leg.dialog.local_tag);
        }
        crate::session::arm(c, &mut self.timers, now, Side::B, None);
        c.promoting = Some(mid);
        let agent = c.agent.take();
        info!(call = %c.public_id, agent = ?agent, "the agent left the conference: a member moves onto the call");
        if let Some(a) = agent {
            self.agent_call(id, &a, "ended");
            self.agent_released(now, &a, true);
        }
        self.set_remote(id, Side::B, None);
        match self.move_to_b(now, id, mid) {
            Ok(body) => {
                let c = self.calls.get_mut(&id).expect("checked");
                c.session.sent_sdp[Side::B as usize] = Some(body);
                true
            }
            Err(_) => {
                self.calls.get_mut(&id).expect("checked").promoting = None;
                false
            }
        }
    }

    /// The customer hung up (its BYE answered) while the agent and members are
    /// on the call: unless the queue or route says otherwise, the conference
    /// goes on without it (its leg is over; the recording's left channel falls
    /// silent). False (the call ends as usual) otherwise.
    pub(crate) fn customer_leaves_conference(&mut self, now: Instant, id: CallId) -> bool {
        let c = &self.calls[&id];
        let (queue, route) = c.route_names();
        let settings = self.snap.call_settings(queue.as_deref(), route.as_deref());
        let members = self
            .members(id)
            .filter(|m| m.state == MonitorState::Active)
            .count();
        let parties_left = members + usize::from(c.b.as_ref().is_some_and(|b| b.answered));
        if settings.conference_ends_without_customer
            || members == 0
            || parties_left < 2
            || !c.is_established()
            || c.transfer.is_some()
            || c.consult.is_some()
            || c.a_gone
        {
            return false;
        }
        let c = self.calls.get_mut(&id).expect("checked");
        c.a_gone = true;
        self.index.remove_dialog(&c.a.call_id, &c.a.local_tag);
        crate::session::arm(c, &mut self.timers, now, Side::A, None);
        push_event(c, now, "customer", &c.caller.clone(), "left");
        info!(call = %c.public_id, parties = parties_left, "the customer left the conference: it goes on");
        // Whatever still arrives on its port is neither heard nor recorded.
        c.party_flags[Side::A as usize] = [true, true];
        self.outputs.push_back(Output::Media(
            id,
            Command::PartyFlags {
                side: Side::A,
                muted: true,
                deaf: true,
            },
        ));
        self.set_remote(id, Side::A, None);
        true
    }

    /// With the customer gone, a conference that is down to one party ends.
    fn conference_down_to_one(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if !c.a_gone || c.state == crate::CallState::Ending || c.promoting.is_some() {
            return;
        }
        let members = self.members(id).count();
        let parties = members + usize::from(c.b.is_some());
        if parties < 2 {
            info!(call = %c.public_id, "the conference is down to one party: ending it");
            self.end_call(now, id, 200, "conference down to one party");
        }
    }

    /// A member's leg ended (removed, hung up, refused, the call ending).
    pub(crate) fn member_left(&mut self, now: Instant, mid: MonitorId, answered: bool) {
        let Some(m) = self.monitors.get_mut(&mid) else {
            return;
        };
        let (call, pid, who, agent) = (m.call, m.public_id.clone(), m.user.clone(), m.agent.take());
        if let Some(a) = agent {
            self.agent_released(now, &a, answered);
        }
        if let Some(c) = self.calls.get_mut(&call) {
            let removed = c
                .participant_events
                .last()
                .is_some_and(|e| e.participant == pid && e.action == "removed");
            if !removed {
                push_event(c, now, &pid, &who, "left");
            }
        }
        self.conference_down_to_one(now, call);
    }
}
