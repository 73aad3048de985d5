//! Automatic call distribution: the agents' states, the calls waiting for an agent
//! (oldest first), and which agent gets the next one. An agent takes one call at a
//! time; a queue offers a call to the `ready` agent idle the longest, idle counted
//! from the end of its last wrap-up.
//!
//! An agent's state is derived, not stored: what the agent chose (`ready`,
//! `not_ready` with a reason, or signed out), whether a call holds it (`busy`, from
//! the offer until the call ends), whether it is in wrap-up after a call, and whether
//! the edge can reach a phone of it (a live registration or a static contact — the
//! caller passes that in). [`Acd::presence`] combines them in that order of
//! precedence: busy, wrap-up, signed out, not ready, no phone (logged out), ready.

use crate::CallId;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// What an agent shows and what decides whether it gets offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presence {
    Ready,
    NotReady,
    Busy,
    WrapUp,
    LoggedOut,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Ready => "ready",
            Presence::NotReady => "not_ready",
            Presence::Busy => "busy",
            Presence::WrapUp => "wrap_up",
            Presence::LoggedOut => "logged_out",
        }
    }

    pub const ALL: [Presence; 5] = [
        Presence::Ready,
        Presence::NotReady,
        Presence::Busy,
        Presence::WrapUp,
        Presence::LoggedOut,
    ];
}

/// What the agent (or a supervisor for it) asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Ready,
    NotReady(String),
    SignedOut,
}

/// The reason given when the edge itself puts an agent `not_ready` after
/// `max_no_answer` offers in a row rang out.
pub const NO_ANSWER_REASON: &str = "no_answer";

#[derive(Debug, Clone)]
struct AgentState {
    choice: Choice,
    /// A call holds the agent (ringing or talking).
    busy: bool,
    /// In wrap-up until then.
    wrap_until: Option<Instant>,
    idle_since: Instant,
    /// Offers in a row that rang out.
    no_answer: u32,
    /// Calls answered on `day` (days since the Unix epoch, UTC).
    calls_today: u32,
    day: u64,
    /// Cluster mode: the end of a wrap-up on another node (that node holds the
    /// agent meanwhile; shown as `wrap_up` here).
    wrap_elsewhere: Option<Instant>,
    /// The presence and reason last reported, and since when.
    shown: (Presence, Option<String>),
    since: Instant,
}

/// An agent's counters, shared by the nodes of a cluster so that the agent is
/// counted as one person: the node that holds the agent (one at a time, by its
/// claim) writes them, the others take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Calls answered on `day` (days since the Unix epoch, UTC).
    pub calls_today: u32,
    pub day: u64,
    /// Offers in a row that rang out (towards `max_no_answer`).
    pub no_answer: u32,
}

/// A state change to report (log, metrics, consoles, chat offers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub agent: String,
    pub presence: Presence,
    pub reason: Option<String>,
}

/// An agent as listed.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub presence: Presence,
    pub reason: Option<String>,
    pub since: Instant,
    pub calls_today: u32,
    pub no_answer: u32,
    pub idle_since: Instant,
}

#[derive(Debug, Default)]
pub struct Acd {
    /// By id (from the configuration, so a fast hasher: the pick reads every
    /// agent of the queue for each call).
    agents: HashMap<String, AgentState, foldhash::fast::RandomState>,
    /// Wrap-ups by end time (an entry whose agent's `wrap_until` differs is stale).
    wrap_ups: BinaryHeap<Reverse<(Instant, String)>>,
    /// Queue calls waiting for an agent, oldest first.
    waiting: VecDeque<CallId>,
}

fn fresh(now: Instant) -> AgentState {
    AgentState {
        choice: Choice::Ready,
        busy: false,
        wrap_until: None,
        idle_since: now,
        no_answer: 0,
        calls_today: 0,
        day: 0,
        wrap_elsewhere: None,
        shown: (Presence::Ready, None),
        since: now,
    }
}

impl Acd {
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the agent set match the configuration: new agents start `ready` (they
    /// get calls as soon as a phone of theirs is reachable), removed idle agents are
    /// forgotten (busy ones stay until released).
    pub fn sync<'a>(&mut self, ids: impl Iterator<Item = &'a str>, now: Instant) {
        let ids: HashSet<&str> = ids.collect();
        self.agents
            .retain(|id, s| s.busy || ids.contains(id.as_str()));
        for id in ids {
            self.agents
                .entry(id.to_string())
                .or_insert_with(|| fresh(now));
        }
    }

    fn offerable(s: &AgentState) -> bool {
        !s.busy && s.wrap_until.is_none() && s.choice == Choice::Ready
    }

    /// The `ready` agent among `candidates`, not in `exclude`, idle the longest.
    /// (Reachability is the caller's: put unreachable agents in `exclude`.)
    pub fn pick<'a>(&self, candidates: &'a [String], exclude: &HashSet<String>) -> Option<&'a str> {
        self.pick_where(candidates, |c| !exclude.contains(c))
    }

    /// The `ready` agent among `candidates` that `allowed` accepts, idle the
    /// longest. `allowed` is asked only about ready agents (the cheap test
    /// first: in a busy queue most agents are not).
    pub fn pick_where<'a>(
        &self,
        candidates: &'a [String],
        allowed: impl Fn(&str) -> bool,
    ) -> Option<&'a str> {
        self.offerable_among(candidates, allowed)
            .min_by_key(|(_, t)| *t)
            .map(|(c, _)| c)
    }

    /// The `ready` agent among `candidates` that `allowed` accepts, idle the
    /// shortest (see [`Acd::pick_where`]).
    pub fn pick_newest_where<'a>(
        &self,
        candidates: &'a [String],
        allowed: impl Fn(&str) -> bool,
    ) -> Option<&'a str> {
        self.offerable_among(candidates, allowed)
            .max_by_key(|(_, t)| *t)
            .map(|(c, _)| c)
    }

    /// The offerable agents among `candidates` that `allowed` accepts, with the
    /// instant each is idle since.
    fn offerable_among<'a, 's>(
        &'s self,
        candidates: &'a [String],
        allowed: impl Fn(&str) -> bool + 's,
    ) -> impl Iterator<Item = (&'a str, Instant)> + 's
    where
        'a: 's,
    {
        candidates
            .iter()
            .filter_map(|c| {
                self.agents
                    .get(c)
                    .filter(|s| Self::offerable(s))
                    .map(|s| (c.as_str(), s.idle_since))
            })
            .filter(move |(c, _)| allowed(c))
    }

    pub fn is_free(&self, id: &str) -> bool {
        self.agents.get(id).is_some_and(Self::offerable)
    }

    /// The agent is offered a call (ringing) or talking.
    pub fn seize(&mut self, id: &str) {
        if let Some(s) = self.agents.get_mut(id) {
            s.busy = true;
        }
    }

    /// An offer was not taken. `rang_out`: the agent let it ring (or its phone said
    /// no answer); after `max_no_answer` of those in a row (0: never) the agent is put
    /// `not_ready` with reason [`NO_ANSWER_REASON`]. The agent keeps its idle place.
    /// Returns whether that happened.
    pub fn missed(&mut self, id: &str, rang_out: bool, max_no_answer: u32) -> bool {
        let Some(s) = self.agents.get_mut(id) else {
            return false;
        };
        s.busy = false;
        if !rang_out {
            return false;
        }
        s.no_answer += 1;
        if max_no_answer > 0 && s.no_answer >= max_no_answer && s.choice == Choice::Ready {
            s.choice = Choice::NotReady(NO_ANSWER_REASON.to_string());
            return true;
        }
        false
    }

    /// The agent answered a call (`day`: days since the Unix epoch, for calls today).
    pub fn answered(&mut self, id: &str, day: u64) {
        if let Some(s) = self.agents.get_mut(id) {
            s.no_answer = 0;
            if s.day != day {
                s.day = day;
                s.calls_today = 0;
            }
            s.calls_today += 1;
        }
    }

    /// The agent's answered call ended: wrap-up for `wrap_up` (none when zero), then
    /// it is idle from the end of wrap-up.
    pub fn call_done(&mut self, id: &str, now: Instant, wrap_up: Duration) {
        let Some(s) = self.agents.get_mut(id) else {
            return;
        };
        s.busy = false;
        if wrap_up.is_zero() {
            s.idle_since = now;
        } else {
            let until = now + wrap_up;
            s.wrap_until = Some(until);
            s.idle_since = until;
            self.wrap_ups.push(Reverse((until, id.to_string())));
        }
    }

    /// When the next wrap-up ends.
    pub fn next_wrap_up_end(&self) -> Option<Instant> {
        self.wrap_ups.peek().map(|Reverse((t, _))| *t)
    }

    /// End the wrap-ups due at `now`; the agents whose wrap-up ended.
    pub fn end_wrap_ups(&mut self, now: Instant) -> Vec<String> {
        let mut done = Vec::new();
        while let Some(Reverse((t, _))) = self.wrap_ups.peek() {
            if *t > now {
                break;
            }
            let Reverse((t, id)) = self.wrap_ups.pop().expect("peeked");
            if let Some(s) = self.agents.get_mut(&id) {
                if s.wrap_until == Some(t) {
                    s.wrap_until = None;
                    done.push(id);
                }
            }
        }
        done
    }

    /// The agent's (or a supervisor's) choice. It ends a wrap-up at once (the agent
    /// is done with its notes, or goes on break); during a call it applies when the
    /// call (and its wrap-up) ends. A `ready` choice clears the no-answer count.
    /// `false`: no such agent.
    pub fn choose(&mut self, id: &str, choice: Choice, now: Instant) -> bool {
        let Some(s) = self.agents.get_mut(id) else {
            return false;
        };
        if s.wrap_until.take().is_some() {
            s.idle_since = now;
        }
        if choice == Choice::Ready {
            s.no_answer = 0;
        }
        s.choice = choice;
        true
    }

    /// The agent's presence now, `reachable`: a phone of it can be called.
    pub fn presence(&self, id: &str, reachable: bool) -> Option<(Presence, Option<String>)> {
        let s = self.agents.get(id)?;
        Some(if s.busy {
            (Presence::Busy, None)
        } else if s.wrap_until.is_some() {
            (Presence::WrapUp, None)
        } else {
            match &s.choice {
                Choice::SignedOut => (Presence::LoggedOut, Some("signed_out".into())),
                Choice::NotReady(r) => (Presence::NotReady, Some(r.clone())),
                Choice::Ready if !reachable => (Presence::LoggedOut, Some("no_phone".into())),
                Choice::Ready => (Presence::Ready, None),
            }
        })
    }

    /// Recompute the agent's presence; a [`Change`] when it differs from the one
    /// last reported (which it then becomes, since `now`).
    pub fn refresh(&mut self, id: &str, reachable: bool, now: Instant) -> Option<Change> {
        let shown = self.presence(id, reachable)?;
        let s = self.agents.get_mut(id)?;
        if s.shown == shown {
            return None;
        }
        s.shown = shown.clone();
        s.since = now;
        Some(Change {
            agent: id.to_string(),
            presence: shown.0,
            reason: shown.1,
        })
    }

    /// What the agent chose.
    pub fn choice(&self, id: &str) -> Option<&Choice> {
        self.agents.get(id).map(|s| &s.choice)
    }

    /// Since when the agent is idle (the queue's order among ready agents).
    pub fn idle_since(&self, id: &str) -> Option<Instant> {
        self.agents.get(id).map(|s| s.idle_since)
    }

    /// The agent's counters (to share with the other nodes).
    pub fn tally(&self, id: &str) -> Option<Tally> {
        self.agents.get(id).map(|s| Tally {
            calls_today: s.calls_today,
            day: s.day,
            no_answer: s.no_answer,
        })
    }

    /// When the agent's wrap-up here ends, if it is in one.
    pub fn wrap_until(&self, id: &str) -> Option<Instant> {
        self.agents.get(id).and_then(|s| s.wrap_until)
    }

    /// Take the counters and the wrap-up end learnt from the node that held the
    /// agent last, unless a call or wrap-up of it here decides them.
    pub fn adopt_tally(&mut self, id: &str, t: Tally, wrap_elsewhere: Option<Instant>) {
        if let Some(s) = self.agents.get_mut(id) {
            if !s.busy && s.wrap_until.is_none() {
                s.calls_today = t.calls_today;
                s.day = t.day;
                s.no_answer = t.no_answer;
                s.wrap_elsewhere = wrap_elsewhere;
            }
        }
    }

    /// The end of the agent's wrap-up on another node, as last shared.
    pub fn wrap_elsewhere(&self, id: &str) -> Option<Instant> {
        self.agents.get(id).and_then(|s| s.wrap_elsewhere)
    }

    /// Take an idle time learnt elsewhere (another node of the cluster ended the
    /// agent's call), unless a call or wrap-up of it here decides it.
    pub fn adopt_idle_since(&mut self, id: &str, t: Instant) {
        if let Some(s) = self.agents.get_mut(id) {
            if !s.busy && s.wrap_until.is_none() {
                s.idle_since = t;
            }
        }
    }

    /// The agent as last reported.
    pub fn view(&self, id: &str) -> Option<AgentView> {
        let s = self.agents.get(id)?;
        Some(AgentView {
            presence: s.shown.0,
            reason: s.shown.1.clone(),
            since: s.since,
            calls_today: s.calls_today,
            no_answer: s.no_answer,
            idle_since: s.idle_since,
        })
    }

    /// Calls answered today (`day` as for [`Acd::answered`]).
    pub fn calls_today(&self, id: &str, day: u64) -> u32 {
        self.agents
            .get(id)
            .filter(|s| s.day == day)
            .map_or(0, |s| s.calls_today)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
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
