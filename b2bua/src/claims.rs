//! Cluster claims of agents: in cluster mode an agent is offered a queue call only
//! once this node holds the agent's claim in the cluster's shared state, so two
//! nodes never offer one agent at once. Sans-IO like the rest: a pick emits
//! [`Output::ClaimAgent`] and the call waits; the driver makes the claim (a
//! compare-and-set in NATS JetStream) and answers with [`B2bua::claim_result`].
//! Granted: the offer goes out as on a single node. Taken (another node holds it):
//! the agent is skipped for [`CLAIM_RECHECK`], for [`CLAIM_LEASE`] from each
//! claim or refresh of it seen ([`B2bua::claim_elsewhere`]), or until that node
//! releases it ([`B2bua::claim_released_elsewhere`]); the call is dispatched
//! again at once.
//! Failed (NATS did not answer): the call waits for the next queue retry.
//!
//! A held claim is released ([`Output::ReleaseAgent`]) when the agent is no longer
//! busy or in wrap-up here. The driver refreshes held claims within the lease; a
//! node that dies stops refreshing and its claims lapse after the lease.
//!
//! Without [`B2bua::enable_claims`] (a single node) none of this runs.

use crate::acd::{Choice, Presence, Tally};
use crate::call::{CallState, Route};
use crate::timers::Timer;
use crate::{B2bua, CallId, Output};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How long a claim lives without a refresh, and how long an agent another node
/// holds is skipped without news of it.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// How long an agent is skipped after a claim of it was refused. Short: the
/// refusal may come from the claim of a node that just died, about to lapse; a
/// live holder's next refresh (seen through the watch) extends the skip to a
/// whole lease anyway.
pub const CLAIM_RECHECK: Duration = Duration::from_secs(5);

/// What a node tells the others of an agent (cluster mode): its choice, since
/// when it is idle (wall clock, ms since the Unix epoch), and — from the node
/// that held it last — its counters and the end of its wrap-up there (`None`
/// from a node that wrote before these were shared: they are then left as they
/// are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentShare {
    pub choice: Choice,
    pub idle_since_ms: u64,
    pub tally: Option<Tally>,
    pub wrap_until_ms: Option<u64>,
}

/// The cluster's answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimResult {
    /// This node holds the agent now.
    Granted = 0,
    /// Another node holds it.
    Taken = 1,
    /// No answer (NATS unreachable, no quorum): try again later.
    Failed = 2,
}

impl ClaimResult {
    pub const ALL: [ClaimResult; 3] = [
        ClaimResult::Granted,
        ClaimResult::Taken,
        ClaimResult::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClaimResult::Granted => "granted",
            ClaimResult::Taken => "taken",
            ClaimResult::Failed => "failed",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Calls waiting for the cluster's answer, and the agent asked for.
    pending: HashMap<CallId, String>,
    /// Agents this node holds.
    held: HashSet<String>,
    /// Agents other nodes hold, skipped until then.
    elsewhere: HashMap<String, Instant>,
    /// Agents seized here outside a queue offer (a transfer, consultation or
    /// conference target, an agent dialling out) whose claim is asked for, and
    /// the call it was asked with: the leg is not held back for the answer.
    seized: HashMap<String, CallId>,
    /// The queue retry set for the first lapse (one timer, not one per dispatch).
    retry_at: Option<Instant>,
    /// This node's place among the live nodes (by name) and their number: a
    /// node offers first the longest idle of "its" agents (those whose id hashes
    /// to its place), then any, so that the nodes, which see the same idle order,
    /// do not all claim its head.
    rank: (usize, usize),
    /// A dispatch is set for [`DISPATCH_BATCH`] from the first of a burst of
    /// other nodes' releases and state changes.
    dispatch_soon: bool,
    /// Per queue, the oldest call waiting on another live node (its id) and when
    /// it started to wait (from the nodes' heartbeats).
    remote_heads: HashMap<String, (String, Instant)>,
    /// Per queue, since when this node holds back an agent for another node's
    /// older call ([`FIFO_DEFER_MAX`] at most).
    fifo_defer: HashMap<String, Instant>,
}

/// Another node's call must have waited this much longer than this node's
/// oldest for this node to hold back (closer calls race, as before).
pub const FIFO_MARGIN: Duration = Duration::from_millis(500);

/// The longest this node holds back a free agent for another node's older
/// call: that node may be unable to take the agent (it rang out there, or its
/// claim failed), and the heads it shares are up to a heartbeat old.
pub const FIFO_DEFER_MAX: Duration = Duration::from_secs(2);

/// Other nodes' releases and state changes arrive hundreds a second on a busy
/// cluster, each a reason to look at the waiting calls again; they are looked at
/// once per this long, not once per change (each look scans the queues' agents
/// for every waiting call).
pub const DISPATCH_BATCH: Duration = Duration::from_millis(5);

/// Whether an agent in `presence` keeps the claim this node holds: on a call or
/// in its wrap-up here.
fn keeps_claim(presence: Presence) -> bool {
    matches!(presence, Presence::Busy | Presence::WrapUp)
}

/// Which of `nodes` nodes offers agent `id` first (FNV-1a of the id).
pub(crate) fn home_of(id: &str, nodes: usize) -> usize {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % nodes.max(1) as u64) as usize
}

impl Claims {
    pub(crate) fn held_elsewhere(&self, now: Instant, agent: &str) -> bool {
        self.elsewhere.get(agent).is_some_and(|t| *t > now)
    }
}

impl B2bua {
    /// Cluster mode with other live nodes (agents are split among the nodes).
    pub(crate) fn clustered(&self) -> bool {
        self.claims.as_ref().is_some_and(|c| c.rank.1 > 1)
    }

    /// Whether this node offers agent `id` first (always on a single node).
    pub(crate) fn home_agent(&self, id: &str) -> bool {
        self.claims
            .as_ref()
            .is_none_or(|c| c.rank.1 <= 1 || home_of(id, c.rank.1) == c.rank.0)
    }

    /// Cluster mode: this node's place among `nodes` live nodes (sorted by
    /// name). Each node offers first the agents whose id hashes to its place, so
    /// the nodes, which share the idle order, do not all claim the same agent.
    pub fn set_claim_rank(&mut self, rank: usize, nodes: usize) {
        if let Some(c) = self.claims.as_mut() {
            c.rank = (rank, nodes);
        }
    }

    /// Cluster mode: claim each agent before offering it a queue call.
    pub fn enable_claims(&mut self) {
        self.claims.get_or_insert_with(Claims::default);
    }

    /// Agents this node holds in the cluster (for the driver's refresh).
    pub fn claims_held(&self) -> Vec<String> {
        self.claims
            .as_ref()
            .map(|c| c.held.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Another node holds `agent` (its claim was made or refreshed): skip it for
    /// a lease.
    pub fn claim_elsewhere(&mut self, now: Instant, agent: &str) {
        if let Some(c) = self.claims.as_mut() {
            if c.held.contains(agent) {
                // Ours lapsed (NATS was away longer than the lease) and another
                // node took it: the cluster says it is theirs now.
                warn!(%agent, "claim of an agent held here was taken by another node");
                c.held.remove(agent);
            }
            c.elsewhere.insert(agent.to_string(), now + CLAIM_LEASE);
        }
    }

    /// Another node released `agent`: offer it again if calls wait.
    pub fn claim_released_elsewhere(&mut self, now: Instant, agent: &str) {
        let Some(c) = self.claims.as_mut() else {
            return;
        };
        if c.elsewhere.remove(agent).is_some() {
            self.dispatch_soon(now);
        }
    }

    /// This node's oldest waiting call per queue: (queue, call id, how long it
    /// has waited), shared with the other nodes in the heartbeat.
    pub fn queue_heads(&self, now: Instant) -> Vec<(String, String, Duration)> {
        let mut heads: HashMap<&str, (Instant, &str)> = HashMap::new();
        for id in self.acd.waiting() {
            let Some(c) = self.calls.get(&id) else {
                continue;
            };
            let (Route::Queue { name }, Some(t)) = (&c.route, c.queued_at) else {
                continue;
            };
            if !self.wants_agent(id) {
                continue;
            }
            let e = heads.entry(name.as_str()).or_insert((t, &c.public_id));
            if t < e.0 {
                *e = (t, &c.public_id);
            }
        }
        let mut v: Vec<(String, String, Duration)> = heads
            .into_iter()
            .map(|(q, (t, id))| {
                (
                    q.to_string(),
                    id.to_string(),
                    now.saturating_duration_since(t),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Cluster mode: per queue, the oldest call waiting on the other live nodes
    /// (its id) and when it started to wait. A queue whose head is another call
    /// now gets a fresh hold-back window; the waiting calls are looked at again.
    pub fn set_remote_heads(&mut self, now: Instant, heads: HashMap<String, (String, Instant)>) {
        let Some(c) = self.claims.as_mut() else {
            return;
        };
        if c.remote_heads == heads {
            return;
        }
        let same = |q: &String| match (heads.get(q), c.remote_heads.get(q)) {
            (Some(a), Some(b)) => a.0 == b.0,
            _ => false,
        };
        let keep: HashSet<String> = c.fifo_defer.keys().filter(|q| same(q)).cloned().collect();
        c.fifo_defer.retain(|q, _| keep.contains(q));
        c.remote_heads = heads;
        self.dispatch_soon(now);
    }

    /// Whether this node holds a free agent back from its call of `queue`
    /// waiting since `queued_at`: another live node's call of the queue has
    /// waited [`FIFO_MARGIN`] longer, and this node has not held back for it for
    /// [`FIFO_DEFER_MAX`] yet. The oldest call of the cluster is served first.
    pub(crate) fn defers_to_older(
        &mut self,
        now: Instant,
        queue: &str,
        queued_at: Option<Instant>,
    ) -> bool {
        let Some(c) = self.claims.as_mut() else {
            return false;
        };
        let Some(t) = queued_at else { return false };
        let older = c
            .remote_heads
            .get(queue)
            .is_some_and(|(_, r)| *r + FIFO_MARGIN < t);
        if !older {
            c.fifo_defer.remove(queue);
            return false;
        }
        let since = match c.fifo_defer.get(queue) {
            Some(s) => *s,
            None => {
                c.fifo_defer.insert(queue.to_string(), now);
                self.stats.fifo_holdbacks += 1;
                // Look again when the hold-back is over.
                self.timers.set(now + FIFO_DEFER_MAX, Timer::Dispatch);
                debug!(queue, "an older call waits on another node: holding back");
                now
            }
        };
        now < since + FIFO_DEFER_MAX
    }

    /// Dispatch the waiting calls [`DISPATCH_BATCH`] from now (once for a burst).
    pub(crate) fn dispatch_soon(&mut self, now: Instant) {
        let Some(c) = self.claims.as_mut() else {
            return self.dispatch_queues(now);
        };
        if !c.dispatch_soon {
            c.dispatch_soon = true;
            self.timers.set(now + DISPATCH_BATCH, Timer::Dispatch);
        }
    }

    /// The batched dispatch is due.
    pub(crate) fn dispatch_due(&mut self, now: Instant) {
        if let Some(c) = self.claims.as_mut() {
            c.dispatch_soon = false;
        }
        self.dispatch_queues(now);
    }

    /// Whether `agent` may be picked here now: not held by another node. (An
    /// agent with a claim in flight from here is seized, so no pick takes it.)
    pub(crate) fn claimable(&self, now: Instant, agent: &str) -> bool {
        self.claims
            .as_ref()
            .is_none_or(|c| !c.held_elsewhere(now, agent))
    }

    /// Whether a ready `agent` can be offered a call from here: a phone of it
    /// can be reached (a live registration or a static contact; without, it is
    /// logged out) and, in cluster mode, no other node holds it.
    pub(crate) fn can_offer(&self, now: Instant, agent: &str) -> bool {
        self.agent_reachable(now, agent) && self.claimable(now, agent)
    }

    /// After a pick in cluster mode: ask for the claim; the call waits for the
    /// answer (neither waiting nor offered). Returns false on a single node.
    pub(crate) fn ask_claim(&mut self, call: CallId, agent: &str) -> bool {
        let Some(c) = self.claims.as_mut() else {
            return false;
        };
        if c.held.contains(agent) {
            return false; // already ours (e.g. a wrap-up ended early): offer now
        }
        c.pending.insert(call, agent.to_string());
        self.acd.seize(agent);
        self.outputs.push_back(Output::ClaimAgent {
            call,
            agent: agent.to_string(),
        });
        true
    }

    /// Seize `agent` for call `call` outside a queue offer (a transfer,
    /// consultation or conference target, an agent dialling out, a phone taking
    /// a call with Replaces); in cluster mode also ask for its claim, so that no
    /// other node offers it a call meanwhile. The leg goes ahead without waiting
    /// (a caller or an agent is on the line); the pick already skipped agents
    /// other nodes hold, so a refusal means two nodes took the agent within the
    /// claim's round trip: the leg still ringing for it here is ended.
    pub(crate) fn seize_and_claim(&mut self, call: CallId, agent: &str) {
        self.acd.seize(agent);
        let Some(c) = self.claims.as_mut() else {
            return;
        };
        if c.held.contains(agent)
            || c.seized.contains_key(agent)
            || c.pending.values().any(|a| a == agent)
        {
            return;
        }
        c.seized.insert(agent.to_string(), call);
        self.outputs.push_back(Output::ClaimAgent {
            call,
            agent: agent.to_string(),
        });
    }

    /// The cluster's answer to a [`B2bua::seize_and_claim`] claim.
    fn seized_claim_result(&mut self, now: Instant, agent: &str, r: ClaimResult) {
        self.stats.claims[r as usize] += 1;
        // Held while it is on a call or in its wrap-up here, as `claim_follow` has
        // it (not "not free": an agent gone not ready after a short consultation
        // would keep the claim until its next change of state).
        let still = self
            .acd
            .presence(agent, true)
            .is_some_and(|(p, _)| keeps_claim(p));
        let c = self.claims.as_mut().expect("enabled");
        match r {
            ClaimResult::Granted if still => {
                c.held.insert(agent.to_string());
            }
            ClaimResult::Granted => {
                // Free again already (a short consultation): give it back.
                self.outputs.push_back(Output::ReleaseAgent {
                    agent: agent.to_string(),
                });
            }
            ClaimResult::Taken => {
                c.elsewhere.insert(agent.to_string(), now + CLAIM_RECHECK);
                warn!(%agent, "agent seized here was claimed by another node at the same time: its leg here ends if it is still ringing");
                self.end_unanswered_legs_of(now, agent);
            }
            ClaimResult::Failed => {
                warn!(%agent, "claim of an agent seized here failed (cluster state unreachable): other nodes may offer it calls");
            }
        }
    }

    /// End what still rings for `agent` here outside a queue offer: a
    /// consultation or conference leg not yet answered (CANCEL), a blind
    /// transfer to it (failed as busy: the call goes back as after a 486).
    fn end_unanswered_legs_of(&mut self, now: Instant, agent: &str) {
        let ringing: Vec<_> = self
            .monitors
            .values()
            .filter(|m| {
                m.agent.as_deref() == Some(agent)
                    && m.state == crate::monitor::MonitorState::Calling
            })
            .map(|m| m.id)
            .collect();
        for mid in ringing {
            self.end_monitor(now, mid, true, "the agent was claimed by another node");
        }
        let transfers: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.transfer.as_ref().and_then(|t| t.target_agent.as_deref()) == Some(agent))
            .map(|c| c.id)
            .collect();
        for id in transfers {
            self.transfer_failed(now, id, 486);
        }
    }

    /// Whether call `id` still waits for an agent: a caller waiting for its
    /// answer, or an answered call transferred to a queue (no leg ringing for it).
    pub(crate) fn wants_agent(&self, id: CallId) -> bool {
        self.calls.get(&id).is_some_and(|c| {
            let transferred = c
                .transfer
                .as_ref()
                .is_some_and(|t| t.queued && c.b.is_none() && c.state != CallState::Ending);
            matches!(c.route, Route::Queue { .. })
                && (transferred || (c.state == CallState::Queued && c.a_tx.is_some()))
        })
    }

    /// The cluster's answer to the claim of `agent` for `call`.
    pub fn claim_result(&mut self, now: Instant, call: CallId, agent: &str, r: ClaimResult) {
        let Some(c) = self.claims.as_mut() else {
            return;
        };
        if c.seized.get(agent) == Some(&call) {
            c.seized.remove(agent);
            self.seized_claim_result(now, agent, r);
            self.process(now);
            return;
        }
        if c.pending.get(&call).map(String::as_str) != Some(agent) {
            debug!(%agent, "claim answer for nothing pending: ignored");
            if r == ClaimResult::Granted && !c.held.contains(agent) {
                self.outputs.push_back(Output::ReleaseAgent {
                    agent: agent.to_string(),
                });
            }
            self.process(now);
            return;
        }
        c.pending.remove(&call);
        self.stats.claims[r as usize] += 1;
        let wants = self.wants_agent(call);
        match r {
            ClaimResult::Granted => {
                self.claims
                    .as_mut()
                    .expect("enabled")
                    .held
                    .insert(agent.to_string());
                if wants && self.offer(now, call, agent) {
                    self.process(now);
                    return;
                }
                // The call went away (or the agent has no phone now).
                self.release_claim(agent);
            }
            ClaimResult::Taken => {
                info!(%agent, "agent held by another node: skipped");
                self.claims
                    .as_mut()
                    .expect("enabled")
                    .elsewhere
                    .insert(agent.to_string(), now + CLAIM_RECHECK);
            }
            ClaimResult::Failed => {
                warn!(%agent, "agent claim failed (cluster state unreachable): the call waits");
                self.timers.set(now + crate::QUEUE_RETRY, Timer::QueueRetry);
            }
        }
        // Not offered: the agent is free here again, and the call waits in line.
        self.acd.missed(agent, false, 0);
        if wants {
            self.acd.requeue([call].into());
        }
        // Taken or given back: dispatch again now; failed: at the queue retry.
        if r != ClaimResult::Failed {
            self.dispatch_queues(now);
        }
        self.process(now);
    }

    fn release_claim(&mut self, agent: &str) {
        if let Some(c) = self.claims.as_mut() {
            if c.held.remove(agent) {
                self.outputs.push_back(Output::ReleaseAgent {
                    agent: agent.to_string(),
                });
            }
        }
    }

    /// An agent's presence changed: a claim held here ends when the agent is
    /// neither busy nor in wrap-up.
    pub(crate) fn claim_follow(&mut self, agent: &str, presence: Presence) {
        if !keeps_claim(presence) {
            self.release_claim(agent);
        }
    }

    /// Dispatch again at `t`, when a skipped agent's hold lapses, unless a retry is
    /// already set for then or earlier.
    pub(crate) fn retry_at_lapse(&mut self, now: Instant, t: Instant) {
        let Some(c) = self.claims.as_mut() else {
            return;
        };
        if c.retry_at.is_none_or(|r| r <= now || r > t) {
            c.retry_at = Some(t);
            self.timers.set(t, Timer::QueueRetry);
        }
    }

    /// When a skipped agent's lease ends (to dispatch again then).
    pub(crate) fn next_claim_lapse(&self, now: Instant) -> Option<Instant> {
        self.claims
            .as_ref()?
            .elsewhere
            .values()
            .filter(|t| **t > now)
            .min()
            .copied()
    }
}

/// Wall-clock ms of `t` on a B2BUA whose clock reads `wall` at `now`.
fn wall_ms(now: Instant, wall: std::time::SystemTime, t: Instant) -> u64 {
    let w = if t >= now {
        wall + (t - now)
    } else {
        wall.checked_sub(now - t).unwrap_or(std::time::UNIX_EPOCH)
    };
    w.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The inverse of [`wall_ms`]: the instant of wall-clock `ms` (`now` when it is
/// before this clock's start).
fn instant_of_ms(now: Instant, wall: std::time::SystemTime, ms: u64) -> Instant {
    let now_ms = wall_ms(now, wall, now);
    if ms >= now_ms {
        now + Duration::from_millis(ms - now_ms)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - ms))
            .unwrap_or(now)
    }
}

impl B2bua {
    /// Cluster mode: tell every node what `agent` chose, since when it is idle,
    /// its counters (calls today, offers missed in a row) and its wrap-up.
    pub(crate) fn share_agent(&mut self, now: Instant, agent: &str) {
        if self.claims.is_none() {
            return;
        }
        let (Some(choice), Some(idle), Some(tally)) = (
            self.acd.choice(agent).cloned(),
            self.acd.idle_since(agent),
            self.acd.tally(agent),
        ) else {
            return;
        };
        let wall = self.wall(now);
        let share = AgentShare {
            choice,
            idle_since_ms: wall_ms(now, wall, idle),
            tally: Some(tally),
            wrap_until_ms: self.acd.wrap_until(agent).map(|t| wall_ms(now, wall, t)),
        };
        self.outputs.push_back(Output::AgentShared {
            agent: agent.to_string(),
            share,
        });
    }

    /// Another node says what `agent` chose and since when it is idle (see
    /// [`B2bua::agent_shared_with`]); what an older node shares, and what the
    /// tests say briefly.
    #[cfg(test)]
    pub(crate) fn agent_shared(
        &mut self,
        now: Instant,
        agent: &str,
        choice: Choice,
        idle_since_ms: u64,
    ) {
        let share = AgentShare {
            choice,
            idle_since_ms,
            tally: None,
            wrap_until_ms: None,
        };
        self.agent_shared_with(now, agent, &share);
    }

    /// Another node says what `agent` chose, since when it is idle, its counters
    /// and its wrap-up: the agent is one person in the whole cluster. A different
    /// choice applies as the agent's own would here (it ends a wrap-up); the idle
    /// time, the counters (calls today, offers missed in a row: `max_no_answer`
    /// counts the cluster's offers) and the wrap-up shown are taken unless a call
    /// or wrap-up of the agent here decides them.
    pub fn agent_shared_with(&mut self, now: Instant, agent: &str, share: &AgentShare) {
        if self.claims.is_none() || self.snap.agent(agent).is_none() {
            return;
        }
        if self.acd.choice(agent) != Some(&share.choice) {
            info!(%agent, choice = ?share.choice, "agent state chosen on another node");
            self.acd.choose(agent, share.choice.clone(), now);
        }
        let wall = self.wall(now);
        let idle = instant_of_ms(now, wall, share.idle_since_ms);
        self.acd.adopt_idle_since(agent, idle);
        if let Some(t) = share.tally {
            let wrap = share.wrap_until_ms.map(|ms| instant_of_ms(now, wall, ms));
            self.acd.adopt_tally(agent, t, wrap);
        }
        self.agent_changed(now, agent);
        self.dispatch_soon(now);
        self.process(now);
    }
}
