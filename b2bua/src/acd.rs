//! Automatic call distribution: the calls waiting for an agent, oldest first, and
//! which agent gets the next one. An agent takes one call at a time; a queue offers a
//! call to the free agent idle the longest.

use crate::CallId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct AgentState {
    busy: bool,
    idle_since: Instant,
}

#[derive(Debug, Default)]
pub struct Acd {
    agents: HashMap<String, AgentState>,
    /// Queue calls waiting for an agent, oldest first.
    waiting: VecDeque<CallId>,
}

impl Acd {
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the agent set match the configuration: new agents start idle now,
    /// removed idle agents are forgotten (busy ones stay until released).
    pub fn sync<'a>(&mut self, ids: impl Iterator<Item = &'a str>, now: Instant) {
        let ids: HashSet<&str> = ids.collect();
        self.agents
            .retain(|id, s| s.busy || ids.contains(id.as_str()));
        for id in ids {
            self.agents.entry(id.to_string()).or_insert(AgentState {
                busy: false,
                idle_since: now,
            });
        }
    }

    /// The free agent among `candidates`, not in `exclude`, idle the longest.
    pub fn pick<'a>(&self, candidates: &'a [String], exclude: &HashSet<String>) -> Option<&'a str> {
        candidates
            .iter()
            .filter(|c| !exclude.contains(*c))
            .filter_map(|c| {
                self.agents
                    .get(c)
                    .filter(|s| !s.busy)
                    .map(|s| (c, s.idle_since))
            })
            .min_by_key(|(_, t)| *t)
            .map(|(c, _)| c.as_str())
    }

    pub fn is_free(&self, id: &str) -> bool {
        self.agents.get(id).is_some_and(|s| !s.busy)
    }

    /// The agent is offered a call (ringing) or talking.
    pub fn seize(&mut self, id: &str) {
        if let Some(s) = self.agents.get_mut(id) {
            s.busy = true;
        }
    }

    /// The agent is free again. `answered`: it took a call, so it goes to the back of
    /// the idle order; a skipped (unanswered) offer keeps its place.
    pub fn release(&mut self, id: &str, now: Instant, answered: bool) {
        if let Some(s) = self.agents.get_mut(id) {
            s.busy = false;
            if answered {
                s.idle_since = now;
            }
        }
    }
}

impl Acd {
    /// Call `call` waits for an agent (behind every call already waiting).
    pub fn enqueue(&mut self, call: CallId) {
        self.waiting.push_back(call);
    }

    /// Call `call` no longer waits (answered elsewhere, or ended).
    pub fn withdraw(&mut self, call: CallId) {
        self.waiting.retain(|w| *w != call);
    }

    /// The oldest waiting call, taken out to be offered; the ones that still wait go
    /// back with [`Acd::requeue`] in the same order.
    pub fn pop_waiting(&mut self) -> Option<CallId> {
        self.waiting.pop_front()
    }

    /// Put calls taken by [`Acd::pop_waiting`] back, ahead of any enqueued since.
    pub fn requeue(&mut self, mut still: VecDeque<CallId>) {
        still.append(&mut self.waiting);
        self.waiting = still;
    }

    pub fn waiting(&self) -> impl Iterator<Item = CallId> + '_ {
        self.waiting.iter().copied()
    }
}

#[cfg(test)]
#[path = "acd_tests.rs"]
mod tests;
