//! After-hours deflection: a call for a queue whose `hours` are closed gets the
//! queue's `after_hours` action instead of waiting for an agent. `queue:NAME` and
//! `forward:URI` only change where the call goes (decided before the call exists);
//! `announce` and `voicemail` make the edge answer the caller itself, play the
//! queue's `after_hours_announcement` to it, and then hang up (announce) or record
//! its message (voicemail: mono, up to `voicemail_max`, `#` or hang-up ends it; the
//! recording goes to the spool with `"voicemail": true`).

use crate::call::{Closed, ClosedPhase};
use crate::timers::Timer;
use crate::{B2bua, CallId, CallState, Command, Output, Route, Side};
use control::AfterHours;
use std::time::Instant;
use tracing::{info, warn};

/// Where a call for a queue goes, given the hours.
pub(crate) enum Deflection {
    /// Open (or no hours): the queue as dialled, or where the closed queues'
    /// actions (the last one named) sent it: an open queue or a forward target.
    Route(Route, Option<&'static str>),
    /// Answered by the edge: the announcement, then hang up or voicemail.
    Answer { queue: String, voicemail: bool },
}

impl B2bua {
    /// Apply the closed queues' `after_hours` along the chain of deflections
    /// ([`control::Snapshot::after_hours_route`]); every action taken is counted.
    pub(crate) fn deflect(&mut self, now: Instant, queue: String) -> Deflection {
        let r = self.snap.after_hours_route(&queue, self.wall(now));
        if r.hops > 0 {
            *self.stats.after_hours.entry("queue").or_default() += r.hops as u64;
            info!(from = %queue, to = %r.queue, hops = r.hops, "queue closed: after-hours deflection");
        }
        if r.too_long {
            warn!(queue = %r.queue, "after-hours queue chain too long: announcing");
        }
        let Some(action) = r.action else {
            let taken = (r.hops > 0).then_some("queue");
            return Deflection::Route(Route::Queue { name: r.queue }, taken);
        };
        let kind = action.kind();
        *self.stats.after_hours.entry(kind).or_default() += 1;
        info!(queue = %r.queue, action = ?action, "queue closed: after-hours action");
        match action {
            AfterHours::Forward(target) => Deflection::Route(
                Route::Static {
                    number: format!("after-hours:{}", r.queue),
                    target,
                },
                Some(kind),
            ),
            AfterHours::Voicemail => Deflection::Answer {
                queue: r.queue,
                voicemail: true,
            },
            // Announce; never Queue (the route followed those).
            _ => Deflection::Answer {
                queue: r.queue,
                voicemail: false,
            },
        }
    }

    /// Answer a closed queue's caller with the edge's own SDP and play the
    /// announcement to it. `false`: the caller offered no G.711 (the call fails).
    pub(crate) fn answer_closed(&mut self, now: Instant, id: CallId, voicemail: bool) -> bool {
        let addr = self.snap.config.media.address;
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        let Route::Queue { name } = &c.route else {
            return false;
        };
        let Some(file) = self
            .snap
            .queue(name)
            .and_then(|q| q.after_hours_announcement.clone())
        else {
            return false;
        };
        let Some(sdp) = c
            .a_sdp
            .as_ref()
            .and_then(|s| s.answer_g711(addr, c.a_port, id.0))
        else {
            return false;
        };
        let pt = c
            .a_sdp
            .as_ref()
            .and_then(|s| s.first_g711_pt())
            .unwrap_or(0);
        c.state = CallState::Answered;
        c.answered = Some(now);
        c.after_hours = Some(Closed {
            voicemail,
            phase: ClosedPhase::Announcing,
        });
        self.send_a_final(now, id, 200, Some(sdp));
        self.outputs.push_back(Output::Media(
            id,
            Command::Announce {
                side: Side::A,
                file,
                pt,
            },
        ));
        self.timers
            .set(now + crate::ANNOUNCEMENT_LIMIT, Timer::AfterHours(id));
        true
    }

    /// The announcement to a closed queue's caller ended: record its message
    /// (voicemail) or hang up.
    pub(crate) fn closed_announced(&mut self, now: Instant, id: CallId) {
        let max = {
            let Some(c) = self.calls.get(&id) else { return };
            let (queue, _) = c.route_names();
            queue
                .and_then(|q| self.snap.queue(&q).map(|q| q.voicemail_max))
                .unwrap_or(crate::ANNOUNCEMENT_LIMIT)
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let established = c.is_established();
        let Some(closed) = c.after_hours.as_mut() else {
            return;
        };
        if closed.phase != ClosedPhase::Announcing || !established {
            return;
        }
        if !closed.voicemail {
            info!(call = %c.public_id, "after-hours announcement played: hanging up");
            return self.end_call(now, id, 200, "after hours");
        }
        closed.phase = ClosedPhase::Recording;
        info!(call = %c.public_id, max_secs = max.as_secs(), "recording a voicemail");
        self.outputs.push_back(Output::RecordStart {
            call: id,
            meta: c.recording_meta(true),
        });
        self.stats.voicemails += 1;
        self.timers.set(now + max, Timer::AfterHours(id));
    }

    /// The after-hours safety timer: an announcement never reported as played
    /// moves on; a voicemail at `voicemail_max` ends.
    pub(crate) fn after_hours_timer(&mut self, now: Instant, id: CallId) {
        let Some(phase) = self
            .calls
            .get(&id)
            .and_then(|c| c.after_hours.as_ref())
            .map(|c| c.phase)
        else {
            return;
        };
        match phase {
            ClosedPhase::Announcing => {
                warn!(call = %self.calls[&id].public_id, "after-hours announcement not reported as played: moving on");
                self.closed_announced(now, id);
            }
            ClosedPhase::Recording => {
                info!(call = %self.calls[&id].public_id, "voicemail reached voicemail_max: hanging up");
                self.end_call(now, id, 200, "voicemail_max");
            }
        }
    }

    /// A digit from the caller: `#` ends a voicemail being recorded.
    pub(crate) fn closed_digit(&mut self, now: Instant, id: CallId, digit: char) {
        let recording = self.calls.get(&id).is_some_and(|c| {
            c.after_hours
                .as_ref()
                .is_some_and(|a| a.phase == ClosedPhase::Recording)
        });
        if recording && digit == '#' {
            info!(call = %self.calls[&id].public_id, "voicemail ended by #");
            self.end_call(now, id, 200, "voicemail ended by #");
        }
    }
}
