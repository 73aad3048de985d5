//! Commands on live calls (the HTTP API's, by the calls' public ids), applied in
//! one place: [`B2bua::handle_command`]. Their effects come out as the usual
//! outputs and transmits.

use crate::{B2bua, CallId, CommandError, MonitorMode, Side};
use std::time::Instant;

/// A command on a live call, naming it (and its monitor) by public id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCommand {
    /// End the call (an administrator).
    Hangup {
        call: String,
    },
    /// Call `user`'s phone and let it listen, whisper or barge.
    AddMonitor {
        call: String,
        user: String,
        mode: MonitorMode,
    },
    SetMode {
        call: String,
        monitor: String,
        mode: MonitorMode,
    },
    RemoveMonitor {
        call: String,
        monitor: String,
    },
    /// Pause (`true`) or resume the call's recording.
    Recording {
        call: String,
        paused: bool,
    },
    /// Send DTMF digits to a party.
    Dtmf {
        call: String,
        digits: String,
        to: Side,
    },
    /// Hold or resume a party (media only, no SIP).
    Hold {
        call: String,
        side: Side,
        held: bool,
    },
    /// Blind transfer to `to` (`1002`, `queue:sales`, `sip:…`). `by_agent`: the
    /// asking user's agent when it is an agent (its own calls only).
    Transfer {
        call: String,
        to: String,
        by_agent: Option<String>,
    },
    /// Hold the customer and call `to` for the agent (consult transfer).
    Consult {
        call: String,
        to: String,
        by_agent: Option<String>,
    },
    /// The consultation's target takes the customer; the agent leaves.
    ConsultComplete {
        call: String,
        by_agent: Option<String>,
    },
    /// Hang up on the consultation's target; back to the customer.
    ConsultCancel {
        call: String,
        by_agent: Option<String>,
    },
    /// Call `to` into the call's conference.
    AddParticipant {
        call: String,
        to: String,
        by_agent: Option<String>,
    },
    /// Mute, deafen or hold a party (`customer`, `agent` or a member's id).
    SetParticipant {
        call: String,
        participant: String,
        flags: crate::ParticipantFlags,
        by_agent: Option<String>,
    },
    /// BYE a member.
    RemoveParticipant {
        call: String,
        participant: String,
        by_agent: Option<String>,
    },
    /// RFC 4733 digits to a party.
    ParticipantDtmf {
        call: String,
        participant: String,
        digits: String,
        by_agent: Option<String>,
    },
}

/// What a successful command gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Done,
    /// The public id of the monitor created.
    Monitor(String),
    /// The id of the conference party added.
    Participant(String),
}

impl B2bua {
    /// Apply a command; drain outputs and transmits afterwards as after any input.
    pub fn handle_command(
        &mut self,
        now: Instant,
        cmd: CallCommand,
    ) -> Result<Reply, CommandError> {
        let done = |r: Result<(), CommandError>| r.map(|_| Reply::Done);
        match cmd {
            CallCommand::Hangup { call } => {
                if self.hangup(now, &call) {
                    Ok(Reply::Done)
                } else {
                    Err(CommandError::NoCall)
                }
            }
            CallCommand::AddMonitor { call, user, mode } => self
                .add_monitor(now, &call, &user, mode)
                .map(Reply::Monitor),
            CallCommand::SetMode {
                call,
                monitor,
                mode,
            } => done(self.set_monitor_mode(&call, &monitor, mode)),
            CallCommand::RemoveMonitor { call, monitor } => {
                done(self.remove_monitor(now, &call, &monitor))
            }
            CallCommand::Recording { call, paused } => {
                done(self.set_recording_paused(&call, paused))
            }
            CallCommand::Dtmf { call, digits, to } => done(self.send_dtmf(&call, &digits, to)),
            CallCommand::Hold { call, side, held } => done(self.hold(&call, side, held)),
            CallCommand::Transfer { call, to, by_agent } => {
                done(self.transfer_command(now, &call, &to, by_agent.as_deref()))
            }
            CallCommand::Consult { call, to, by_agent } => {
                done(self.consult_command(now, &call, &to, by_agent.as_deref()))
            }
            CallCommand::ConsultComplete { call, by_agent } => {
                done(self.consult_complete(now, &call, by_agent.as_deref()))
            }
            CallCommand::ConsultCancel { call, by_agent } => {
                done(self.consult_cancel(now, &call, by_agent.as_deref()))
            }
            CallCommand::AddParticipant { call, to, by_agent } => self
                .add_participant(now, &call, &to, by_agent.as_deref())
                .map(Reply::Participant),
            CallCommand::SetParticipant {
                call,
                participant,
                flags,
                by_agent,
            } => done(self.set_participant(&call, &participant, flags, by_agent.as_deref())),
            CallCommand::RemoveParticipant {
                call,
                participant,
                by_agent,
            } => done(self.remove_participant(now, &call, &participant, by_agent.as_deref())),
            CallCommand::ParticipantDtmf {
                call,
                participant,
                digits,
                by_agent,
            } => {
                self.own_call(&call, by_agent.as_deref())?;
                let to = match participant.as_str() {
                    "customer" => Side::A,
                    "agent" => Side::B,
                    member => return done(self.member_dtmf(&call, member, &digits)),
                };
                done(self.send_dtmf(&call, &digits, to))
            }
        }
    }

    /// The internal id of the call the API names.
    pub(crate) fn call_index(&self, call_public: &str) -> Result<CallId, CommandError> {
        self.calls
            .by_public(call_public)
            .ok_or(CommandError::NoCall)
    }

    /// The internal id of an answered call the API names.
    pub(crate) fn answered_call(&self, call_public: &str) -> Result<CallId, CommandError> {
        let id = self.call_index(call_public)?;
        if !self.calls[&id].is_established() {
            return Err(CommandError::NotAnswered);
        }
        Ok(id)
    }
}
