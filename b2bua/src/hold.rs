//! Hold: a party held by re-INVITE (sendonly, inactive, c=0.0.0.0) or by the API
//! hears hold audio (or silence); nobody hears it and it is not recorded.

use crate::{B2bua, CallId, Command, CommandError, Output, Side};
use tracing::info;

/// The hold audio of call `c`'s queue or route, if it has one.
pub(crate) fn hold_audio(snap: &control::Snapshot, c: &crate::Call) -> Option<std::path::PathBuf> {
    let (queue, route) = c.route_names();
    snap.call_settings(queue.as_deref(), route.as_deref())
        .hold_audio
        .map(|p| p.to_path_buf())
}

impl B2bua {
    /// Hold or resume `side` of call `id` (re-INVITE or API): the driver plays the
    /// queue's hold audio to it.
    pub(super) fn set_held(&mut self, id: CallId, side: Side, on: bool) {
        self.set_held_or(id, side, on, None);
    }

    /// As [`Self::set_held`]; `fallback` is played when the call's settings name
    /// no hold audio (a transfer plays ringback rather than silence).
    pub(super) fn set_held_or(&mut self, id: CallId, side: Side, on: bool, fallback: Option<&str>) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.held[side as usize] == on {
            return;
        }
        c.held[side as usize] = on;
        let audio = hold_audio(&self.snap, c).or_else(|| fallback.map(std::path::PathBuf::from));
        info!(call = %c.public_id, side = ?side, held = on, "hold");
        self.outputs.push_back(Output::Media(
            id,
            Command::Hold {
                side,
                held: on,
                audio,
            },
        ));
    }

    /// Hold (`true`) or resume `side` of a call from the API. The edge anchors the
    /// media, so no re-INVITE is needed: the held party hears hold audio, the other
    /// hears silence.
    pub fn hold(&mut self, call_public: &str, side: Side, on: bool) -> Result<(), CommandError> {
        let id = self.answered_call(call_public)?;
        self.set_held(id, side, on);
        Ok(())
    }
}
