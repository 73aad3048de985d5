//! The call timers (max wait in queue, agent ring, callee no-answer, queue retry,
//! announcement limit, maximum call duration) and what each does when it fires.

use crate::{B2bua, CallId, CallState, Route, Side};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;
use tracing::{info, warn};

/// The B2BUA's named timers. A timer is not cancelled when what it guards changes:
/// when it fires, its handler checks that it still applies (the call, the attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Queue call waited max_wait.
    MaxWait(CallId),
    /// Agent attempt `.1` rang too long.
    Ring(CallId, u32),
    /// Static-route callee did not answer.
    NoAnswer(CallId, u32),
    /// Re-offer waiting queue calls.
    QueueRetry,
    /// Cluster mode: the batched dispatch after other nodes' changes.
    Dispatch,
    /// The announcement of call `.0` should have ended by now.
    Announcement(CallId),
    /// Call `.0` reached `[sip] max_call_duration`.
    MaxDuration(CallId),
    /// The edge refreshes leg `.1`'s session (timer generation `.2`).
    SessionRefresh(CallId, Side, u32),
    /// Leg `.1`'s session (timer generation `.2`) was not refreshed in time.
    SessionExpiry(CallId, Side, u32),
    /// Sweep expired registrations out (and re-arm).
    RegistrationSweep,
    /// A closed queue's call: its announcement should have ended, or its voicemail
    /// reached `voicemail_max`.
    AfterHours(CallId),
}

/// Deadlines of the named timers, earliest first (quinn's `TimerTable` in spirit:
/// the call model sets timers by name, the driver only asks for the next deadline).
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl TimerTable {
    pub(crate) fn set(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The next timer due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let Reverse((t, _)) = self.heap.peek()?;
        if *t > now {
            return None;
        }
        self.heap.pop().map(|Reverse((_, timer))| timer)
    }
}

impl B2bua {
    pub(super) fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::MaxWait(id) => {
                if self.calls.get(&id).is_some_and(|c| {
                    let waiting = c.a_tx.is_some() || c.transfer.as_ref().is_some_and(|t| t.queued);
                    waiting
                        && c.wait_deadline.is_some_and(|d| d <= now)
                        && !matches!(c.state, CallState::Ending | CallState::Announcing)
                }) {
                    info!(call = %self.calls[&id].public_id, "max_wait reached: 480");
                    self.end_call(now, id, 480, "max_wait");
                }
            }
            Timer::MaxDuration(id) => {
                if self.calls.get(&id).is_some_and(|c| c.is_established()) {
                    info!(call = %self.calls[&id].public_id, "maximum call duration reached: ending the call");
                    self.stats.max_duration += 1;
                    self.end_call(now, id, 200, "maximum call duration");
                }
            }
            Timer::Announcement(id) => {
                if self
                    .calls
                    .get(&id)
                    .is_some_and(|c| c.state == CallState::Announcing)
                {
                    warn!(call = %self.calls[&id].public_id, "announcement not reported as played: connecting");
                    self.announcement_done(now, id);
                }
            }
            Timer::Ring(id, attempt) => {
                let current = self.calls.get(&id).is_some_and(|c| {
                    (matches!(c.state, CallState::Calling | CallState::Early)
                        || c.transfer.is_some() && c.state != CallState::Ending)
                        && c.b
                            .as_ref()
                            .is_some_and(|b| b.attempt == attempt && b.tx.is_some())
                });
                if current {
                    info!(call = %self.calls[&id].public_id, "agent did not answer: skipping");
                    self.cancel_attempt(now, id);
                    self.fail_attempt(now, id, 480);
                }
            }
            Timer::NoAnswer(id, attempt) => {
                let current = self.calls.get(&id).is_some_and(|c| {
                    c.a_tx.is_some()
                        && c.b
                            .as_ref()
                            .is_some_and(|b| b.attempt == attempt && b.tx.is_some())
                });
                if current {
                    self.end_call(now, id, 480, "no answer");
                }
            }
            Timer::SessionRefresh(id, side, generation) => {
                self.session_refresh_due(now, id, side, generation)
            }
            Timer::SessionExpiry(id, side, generation) => {
                self.session_expired(now, id, side, generation)
            }
            Timer::AfterHours(id) => self.after_hours_timer(now, id),
            Timer::RegistrationSweep => {
                self.expire_bindings(now);
                self.ep.compact();
                // Sized by a burst (every agent's state at start).
                let (len, cap) = (self.outputs.len(), self.outputs.capacity());
                if let Some(n) = sip::endpoint::shrink_target(len, cap) {
                    self.outputs.shrink_to(n);
                }
                self.timers
                    .set(now + crate::REGISTRATION_SWEEP, Timer::RegistrationSweep);
            }
            Timer::Dispatch => self.dispatch_due(now),
            Timer::QueueRetry => {
                let snap = self.snap.clone();
                for id in self.acd.waiting().collect::<Vec<_>>() {
                    if let Some(c) = self.calls.get_mut(&id) {
                        if let Route::Queue { name } = &c.route {
                            if let Some(q) = snap.queue(name) {
                                if q.agents.iter().all(|a| c.tried.contains(a)) {
                                    c.tried.clear();
                                }
                            }
                        }
                    }
                }
                self.dispatch_queues(now);
            }
        }
    }
}

#[cfg(test)]
#[path = "timers_tests.rs"]
mod table_tests;
