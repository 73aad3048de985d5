//! DTMF: RFC 4733 digits decoded by the media (a party's are listed as call events,
//! a supervisor's switch its mode) and digits sent to a party by the API.

use crate::monitor::MAX_DIGITS;
use crate::{
    mode_for_digit, B2bua, CallId, Command, CommandError, DigitEvent, DigitFrom, Output, Side,
};
use std::time::Instant;
use tracing::{debug, info};

impl B2bua {
    /// A DTMF digit the media driver decoded (RFC 4733) in call `call`'s media.
    pub fn media_digit(&mut self, now: Instant, call: CallId, from: DigitFrom, digit: char) {
        match from {
            DigitFrom::Monitor(mid) => {
                if let Some(mode) = mode_for_digit(digit) {
                    self.apply_mode(mid, mode);
                }
            }
            DigitFrom::Party(side) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    if c.digits.len() < MAX_DIGITS {
                        c.digits.push(DigitEvent {
                            from: match side {
                                Side::A => "customer".into(),
                                Side::B => "agent".into(),
                            },
                            digit,
                            at_secs: now.saturating_duration_since(c.started).as_secs_f64(),
                        });
                    }
                    debug!(call = %c.public_id, ?side, %digit, "DTMF");
                }
                if side == Side::A {
                    self.closed_digit(now, call, digit);
                }
            }
        }
    }

    /// Send `digits` as RFC 4733 events to conference member `member`.
    pub(crate) fn member_dtmf(
        &mut self,
        call_public: &str,
        member: &str,
        digits: &str,
    ) -> Result<(), CommandError> {
        let id = self.answered_call(call_public)?;
        let events = dtmf_events(digits)?;
        let m = self
            .monitors
            .values()
            .find(|m| {
                m.call == id
                    && m.public_id == member
                    && m.mode == crate::MonitorMode::Member
                    && m.state == crate::monitor::MonitorState::Active
            })
            .ok_or(CommandError::NoParticipant)?;
        let pt = m.te_pt.ok_or(CommandError::NoTelephoneEvent("member"))?;
        info!(participant = %member, digits = events.len(), "sending DTMF");
        self.outputs.push_back(Output::Media(
            id,
            Command::MemberDtmf {
                monitor: m.id,
                events,
                pt,
            },
        ));
        Ok(())
    }

    /// Send `digits` as RFC 4733 events into the call towards `to` (A: the customer).
    pub fn send_dtmf(
        &mut self,
        call_public: &str,
        digits: &str,
        to: Side,
    ) -> Result<(), CommandError> {
        let id = self.answered_call(call_public)?;
        let c = &self.calls[&id];
        let n = digits.chars().count();
        let events = dtmf_events(digits)?;
        let who = match to {
            Side::A => "customer",
            Side::B => "agent",
        };
        let pt = c.te_pt[to as usize].ok_or(CommandError::NoTelephoneEvent(who))?;
        info!(call = %c.public_id, to = who, digits = n, "sending DTMF");
        self.outputs.push_back(Output::Media(
            id,
            Command::SendDtmf {
                side: to,
                events,
                pt,
            },
        ));
        Ok(())
    }
}

/// 1 to 32 DTMF digits (0-9, *, #, A-D) as RFC 4733 event codes.
fn dtmf_events(digits: &str) -> Result<Vec<u8>, CommandError> {
    let n = digits.chars().count();
    if n == 0 || n > 32 {
        return Err(CommandError::DigitCount);
    }
    digits
        .chars()
        .map(|d| media::dtmf::event_code(d).ok_or(CommandError::BadDigit(d)))
        .collect()
}
