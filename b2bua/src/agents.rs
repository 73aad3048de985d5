//! Agent states as the B2BUA drives them: offers make an agent `busy`, an answered
//! call's end starts its wrap-up, unanswered offers count towards `max_no_answer`,
//! registrations coming and going sign it in and out, and the API sets what the
//! agent chose. Every change of what an agent shows is logged, counted and given to
//! the driver ([`Output::AgentState`]) for the consoles and the chat offers.
//! The state machine itself is [`crate::acd`].

use crate::acd::{AgentView, Choice, Presence};
use crate::{B2bua, Call, CallId, Output};
use control::Snapshot;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// Longest `not_ready` reason (printable characters).
pub const MAX_REASON: usize = 64;

/// An agent as the API lists it.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub id: String,
    pub name: String,
    /// The console user that is this agent (calls and chats as one person).
    pub user: Option<String>,
    pub state: &'static str,
    pub reason: Option<String>,
    /// Wall-clock time of the last state change.
    pub since: SystemTime,
    pub calls_today: u32,
    /// Offers in a row that rang out.
    pub missed_in_a_row: u32,
    /// Seconds since the agent became idle (ready agents: the queue's order).
    pub idle_secs: Option<f64>,
    pub bindings: usize,
    /// Whether a static contact is configured.
    pub static_contact: bool,
}

/// Why a state change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("no such agent")]
    NoAgent,
    #[error("state must be one of ready, not_ready, logged_out")]
    BadState,
    #[error("reason must be 1 to {MAX_REASON} printable characters")]
    BadReason,
}

/// Parse what the API asks for: `ready`, `not_ready` (reason required: break,
/// lunch, training… free text), or `logged_out` (signed out until `ready`).
pub fn parse_choice(state: &str, reason: Option<&str>) -> Result<Choice, AgentError> {
    match state {
        "ready" => Ok(Choice::Ready),
        "logged_out" => Ok(Choice::SignedOut),
        "not_ready" => {
            let r = reason.unwrap_or("").trim();
            if r.is_empty() || r.chars().count() > MAX_REASON || r.chars().any(|c| c.is_control()) {
                return Err(AgentError::BadReason);
            }
            Ok(Choice::NotReady(r.to_string()))
        }
        _ => Err(AgentError::BadState),
    }
}

/// The console frame's source about call `c` for `agent`, if it names a `user`.
pub(crate) fn agent_call_output(
    snap: &Snapshot,
    c: &Call,
    agent: &str,
    state: &'static str,
) -> Option<Output> {
    let user = snap.agent(agent)?.user.clone()?;
    Some(Output::AgentCall {
        user,
        call: c.public_id.clone(),
        state,
        caller: c.caller.clone(),
        queue: c.route_names().0,
        reserved: c.reserved.clone(),
    })
}

/// Days since the Unix epoch (UTC) of `t`: what "calls today" counts in.
fn day_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400
}

impl B2bua {
    /// Recompute agent `id`'s state and report a change. `quiet`: at start (the
    /// states every agent starts in are logged at debug, not one line per agent).
    pub(crate) fn agent_changed_with(&mut self, now: Instant, id: &str, quiet: bool) {
        let reachable = self.agent_reachable(now, id);
        let Some(change) = self.acd.refresh(id, reachable, now) else {
            return;
        };
        *self
            .stats
            .agent_changes
            .entry(change.presence.as_str())
            .or_default() += 1;
        if self.claims.is_some() {
            self.claim_follow(id, change.presence);
        }
        if quiet {
            debug!(agent = %id, state = change.presence.as_str(), reason = ?change.reason, "agent state");
        } else {
            info!(agent = %id, state = change.presence.as_str(), reason = ?change.reason, "agent state");
        }
        let user = self.snap.agent(id).and_then(|a| a.user.clone());
        self.outputs.push_back(Output::AgentState {
            agent: change.agent,
            user,
            state: change.presence,
            reason: change.reason,
        });
    }

    pub(crate) fn agent_changed(&mut self, now: Instant, id: &str) {
        self.agent_changed_with(now, id, false)
    }

    /// Tell the console of `agent` (when it names a `user`) about call `id`.
    pub(crate) fn agent_call(&mut self, id: CallId, agent: &str, state: &'static str) {
        if let Some(o) = self
            .calls
            .get(&id)
            .and_then(|c| agent_call_output(&self.snap, c, agent, state))
        {
            self.outputs.push_back(o);
        }
    }

    /// Every agent's state recomputed (start, reload, restored registrations).
    pub(crate) fn agents_changed(&mut self, now: Instant, quiet: bool) {
        let ids: Vec<String> = self.acd.ids().map(str::to_string).collect();
        for id in ids {
            self.agent_changed_with(now, &id, quiet);
        }
    }

    /// An offer to `agent` was not taken (`rang_out`: it rang until the ring
    /// timeout or the phone said no answer).
    pub(crate) fn offer_missed(&mut self, now: Instant, agent: &str, queue: &str, rang_out: bool) {
        let max = self.snap.queue(queue).map_or(0, |q| q.max_no_answer);
        if self.acd.missed(agent, rang_out, max) {
            self.stats.no_answer_not_ready += 1;
            warn!(%agent, %queue, max_no_answer = max, "agent let {max} offers in a row ring out: put not_ready (no_answer)");
        }
        if rang_out {
            // The count in a row is the cluster's (another node may offer next).
            self.share_agent(now, agent);
        }
        self.agent_changed(now, agent);
    }

    /// The agent answered an offer.
    pub(crate) fn offer_answered(&mut self, now: Instant, agent: &str) {
        let day = day_of(self.wall(now));
        self.acd.answered(agent, day);
    }

    /// The agent's call ended: wrap-up when it had answered, else it is free again.
    pub(crate) fn agent_released(&mut self, now: Instant, agent: &str, answered: bool) {
        if answered {
            let wrap = self
                .snap
                .agent(agent)
                .map(|a| a.wrap_up)
                .unwrap_or_default();
            self.acd.call_done(agent, now, wrap);
        } else {
            self.acd.missed(agent, false, 0);
        }
        if answered {
            self.share_agent(now, agent);
        }
        self.agent_changed(now, agent);
    }

    /// End the wrap-ups due now; the agents become ready (or not ready) again.
    pub(crate) fn end_wrap_ups(&mut self, now: Instant) {
        let done = self.acd.end_wrap_ups(now);
        if done.is_empty() {
            return;
        }
        for id in &done {
            self.agent_changed(now, id);
        }
        self.dispatch_queues(now);
    }

    /// The agent (or a supervisor, or an admin) sets its state.
    pub fn set_agent_state(
        &mut self,
        now: Instant,
        id: &str,
        choice: Choice,
    ) -> Result<AgentInfo, AgentError> {
        if self.snap.agent(id).is_none() || !self.acd.choose(id, choice.clone(), now) {
            return Err(AgentError::NoAgent);
        }
        info!(agent = %id, choice = ?choice, "agent state chosen");
        self.share_agent(now, id);
        self.agent_changed(now, id);
        self.dispatch_queues(now);
        self.agent_info(now, id).ok_or(AgentError::NoAgent)
    }

    fn agent_info(&self, now: Instant, id: &str) -> Option<AgentInfo> {
        let a = self.snap.agent(id)?;
        let AgentView {
            presence,
            reason,
            since,
            no_answer,
            idle_since,
            ..
        } = self.acd.view(id)?;
        let wall = self.wall(now);
        let since_wall = wall
            .checked_sub(now.saturating_duration_since(since))
            .unwrap_or(wall);
        // Ready here but held by another node of the cluster: on a call there, or
        // in the wrap-up that node shared.
        let presence = if presence == Presence::Ready && !self.claimable(now, id) {
            if self.acd.wrap_elsewhere(id).is_some_and(|t| t > now) {
                Presence::WrapUp
            } else {
                Presence::Busy
            }
        } else {
            presence
        };
        Some(AgentInfo {
            id: id.to_string(),
            name: a.name.clone(),
            user: a.user.clone(),
            state: presence.as_str(),
            reason,
            since: since_wall,
            calls_today: self.acd.calls_today(id, day_of(wall)),
            missed_in_a_row: no_answer,
            idle_secs: (presence == Presence::Ready)
                .then(|| now.saturating_duration_since(idle_since).as_secs_f64()),
            bindings: self.registrar.live(id, wall).len(),
            static_contact: a.contact.is_some(),
        })
    }

    /// Every configured agent with its state, by id.
    pub fn agents(&self, now: Instant) -> Vec<AgentInfo> {
        let mut v: Vec<AgentInfo> = self
            .snap
            .config
            .agents
            .iter()
            .filter_map(|a| self.agent_info(now, &a.id))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Agents per state now (metrics gauges).
    pub fn agent_counts(&self) -> [(Presence, usize); 5] {
        let mut counts = Presence::ALL.map(|p| (p, 0));
        for a in &self.snap.config.agents {
            if let Some(v) = self.acd.view(&a.id) {
                if let Some(c) = counts.iter_mut().find(|(p, _)| *p == v.presence) {
                    c.1 += 1;
                }
            }
        }
        counts
    }
}
