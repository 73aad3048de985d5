//! Announcement and hold audio files of the configuration, decoded once (at start and
//! at each reload) to 8 kHz samples the relay workers play. A file that cannot be read
//! or decoded fails the start or rejects the reload, naming the file.

use control::Snapshot;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An audio file of the configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("audio file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audio file {}: {source}", path.display())]
    Decode {
        path: PathBuf,
        source: media::audio::AudioError,
    },
}

#[derive(Debug, Default)]
pub struct AudioCache {
    files: HashMap<PathBuf, Arc<[i16]>>,
}

impl AudioCache {
    /// Decode every `announcement` and `hold_audio` of the routes and queues, and the
    /// queues' `after_hours_announcement`; the built-in ringback is always there.
    pub fn load(snap: &Snapshot) -> Result<AudioCache, AudioError> {
        let c = &snap.config;
        let paths = c
            .queues
            .iter()
            .flat_map(|q| [&q.announcement, &q.hold_audio, &q.after_hours_announcement])
            .chain(
                c.routes
                    .iter()
                    .flat_map(|r| [&r.announcement, &r.hold_audio]),
            )
            .flatten();
        let mut files = HashMap::new();
        files.insert(
            PathBuf::from(media::audio::RINGBACK),
            media::audio::ringback().into(),
        );
        for p in paths {
            if files.contains_key(p) {
                continue;
            }
            let bytes = std::fs::read(p).map_err(|source| AudioError::Read {
                path: p.clone(),
                source,
            })?;
            let ext = p.extension().and_then(|e| e.to_str());
            let samples =
                media::audio::decode(bytes, ext).map_err(|source| AudioError::Decode {
                    path: p.clone(),
                    source,
                })?;
            tracing::info!(file = %p.display(), seconds = samples.len() as f64 / 8000.0, "audio loaded");
            files.insert(p.clone(), samples.into());
        }
        Ok(AudioCache { files })
    }

    pub fn get(&self, path: &Path) -> Option<Arc<[i16]>> {
        self.files.get(path).cloned()
    }
}
