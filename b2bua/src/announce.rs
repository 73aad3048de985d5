//! The whisper announcement: the agent hears it before the caller is connected.

use crate::{B2bua, CallId, CallState};
use std::time::Instant;
use tracing::debug;

impl B2bua {
    /// The media driver played call `call`'s announcement to its end (or the safety
    /// timer fired): connect the caller.
    pub fn announcement_done(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.after_hours.is_some() {
            return self.closed_announced(now, call);
        }
        if c.state != CallState::Announcing {
            return;
        }
        let Some(answer) = c.pending_answer.take() else {
            return;
        };
        debug!(call = %c.public_id, "announcement over");
        self.connect_a(now, call, answer);
    }
}
