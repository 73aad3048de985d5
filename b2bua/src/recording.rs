//! Recording control of a live call (pause, resume).

use crate::{B2bua, Command, CommandError, Output};
use tracing::info;

impl B2bua {
    /// Pause (`true`) or resume recording of a call.
    pub fn set_recording_paused(
        &mut self,
        call_public: &str,
        paused: bool,
    ) -> Result<(), CommandError> {
        let id = self.call_index(call_public)?;
        let c = self.calls.get_mut(&id).expect("indexed");
        let Some(state) = c.recording.as_mut() else {
            return Err(CommandError::NotRecording);
        };
        if *state != paused {
            *state = paused;
            info!(call = %c.public_id, paused, "recording");
            self.outputs
                .push_back(Output::Media(id, Command::RecordPause { paused }));
        }
        Ok(())
    }
}
