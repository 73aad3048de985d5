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

/// Longest chain of `queue:NAME` deflections followed (each closed in turn).
const MAX_HOPS: usize = 4;

/// Where a call for a queue goes, given the hours.
pub(crate) enum Deflection {
    /// Open (or no hours): the queue as dialled, or where the last closed queue's
    /// action (named) sent it: an open queue or a forward target.
    Route(Route, Option<&'static str>),
    /// Answered by the edge: the announcement, then hang up or voicemail.
    Answer { queue: String, voicemail: bool },
}

impl B2bua {
    /// Apply the closed queues' `after_hours` along a chain of deflections.
    pub(crate) fn deflect(&mut self, now: Instant, queue: String) -> Deflection {
        let wall = self.wall(now);
        let mut name = queue;
        let mut taken = None;
        for _ in 0..MAX_HOPS {
            let Some(action) = self.snap.closed_action(&name, wall) else {
                return Deflection::Route(Route::Queue { name }, taken);
            };
            let kind = match &action {
                AfterHours::Announce => "announce",
                AfterHours::Voicemail => "voicemail",
                AfterHours::Queue(_) => "queue",
                AfterHours::Forward(_) => "forward",
            };
            taken = Some(kind);
            *self.stats.after_hours.entry(kind).or_default() += 1;
            info!(queue = %name, action = ?action, "queue closed: after-hours action");
            match action {
                AfterHours::Queue(next) => name = next,
                AfterHours::Forward(target) => {
                    return Deflection::Route(
                        Route::Static {
                            number: format!("after-hours:{name}"),
                            target,
                        },
                        taken,
                    )
                }
                AfterHours::Announce => {
                    return Deflection::Answer {
                        queue: name,
                        voicemail: false,
                    }
                }
                AfterHours::Voicemail => {
                    return Deflection::Answer {
                        queue: name,
                        voicemail: true,
                    }
                }
            }
        }
        warn!(queue = %name, "after-hours queue chain too long: announcing");
        Deflection::Answer {
            queue: name,
            voicemail: false,
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
