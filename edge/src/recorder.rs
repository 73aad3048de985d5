//! Call recordings: a stereo 16-bit PCM WAV written by the call's relay worker while
//! the call lasts (customer left, agent side right, from the mix session's tap), and
//! a finisher thread that, when the call ends, patches the WAV header, syncs it,
//! computes its SHA-256 and hands the file plus its metadata JSON to the recordings
//! inbox (`{storage.dir}/inbox`: the WAV first, then the JSON), from where the
//! uploader spools it. Files being written live in `{storage.dir}/recording/`.

use media::wav::StereoWav;
use signaling::b2bua::RecordingMeta;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

/// Samples per second of recordings (G.711 calls).
pub const RATE: u32 = 8000;
const FRAMES_PER_SEC: f64 = 50.0;

pub struct Recorder {
    wav: Option<StereoWav<BufWriter<File>>>,
    path: PathBuf,
    inbox: PathBuf,
    meta: RecordingMeta,
    started: SystemTime,
    /// 20 ms frames written.
    frames: u64,
    paused_at: Option<u64>,
    spans: Vec<(u64, u64)>,
    error: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Recorder {
    /// Create `{dir}/recording/{call}.wav`.
    pub fn create(storage_dir: &Path, meta: RecordingMeta) -> io::Result<Recorder> {
        let dir = storage_dir.join("recording");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.wav", meta.call_id));
        let f = File::create(&path)?;
        let wav = StereoWav::new(BufWriter::with_capacity(64 * 1024, f), RATE)?;
        Ok(Recorder {
            wav: Some(wav),
            path,
            inbox: crate::recordings::inbox_dir(storage_dir),
            meta,
            started: SystemTime::now(),
            frames: 0,
            paused_at: None,
            spans: Vec::new(),
            error: None,
        })
    }

    /// One 20 ms stereo frame. A write error stops the recording (logged once); the
    /// call goes on.
    pub fn write(&mut self, left: &[i16], right: &[i16]) {
        let Some(w) = self.wav.as_mut() else { return };
        if let Err(e) = w.write(left, right) {
            tracing::error!(call = %self.meta.call_id, error = %e, "recording write failed: recording stopped");
            self.error = Some(e.to_string());
            self.wav = None;
            return;
        }
        self.frames += 1;
    }

    pub fn set_paused(&mut self, paused: bool) {
        match (paused, self.paused_at) {
            (true, None) => self.paused_at = Some(self.frames),
            (false, Some(from)) => {
                self.spans.push((from, self.frames));
                self.paused_at = None;
            }
            _ => {}
        }
    }

    /// Finish the file and hand it to the inbox (blocking I/O: run off the worker).
    fn finish(mut self) -> Result<PathBuf, String> {
        if let Some(from) = self.paused_at.take() {
            self.spans.push((from, self.frames));
        }
        let ended = SystemTime::now();
        let wav = self
            .wav
            .take()
            .ok_or_else(|| self.error.clone().unwrap_or_default())?;
        let mut w = wav.finish().map_err(|e| e.to_string())?;
        w.flush().map_err(|e| e.to_string())?;
        let f = w.into_inner().map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        drop(f);
        let sha256 = storage::sha256_file(&self.path).map_err(|e| e.to_string())?;
        let m = &self.meta;
        let secs = |f: u64| f as f64 / FRAMES_PER_SEC;
        let meta = serde_json::json!({
            "recording_id": m.call_id,
            "call_id": m.call_id,
            "caller": m.caller,
            "callee": m.callee,
            "queue": m.queue,
            "route": m.route,
            "agent": m.agent,
            "start": rfc3339(self.started),
            "end": rfc3339(ended),
            "duration_secs": secs(self.frames),
            "format": "wav",
            "channels": {"left": "customer", "right": "agent"},
            "sample_rate": RATE,
            "paused": self.spans.iter().map(|(a, b)| serde_json::json!({
                "from_secs": secs(*a), "to_secs": secs(*b)
            })).collect::<Vec<_>>(),
            "sha256": sha256,
            "file": format!("{}.wav", m.call_id),
        });
        std::fs::create_dir_all(&self.inbox).map_err(|e| e.to_string())?;
        let wav_in = self.inbox.join(format!("{}.wav", m.call_id));
        std::fs::rename(&self.path, &wav_in).map_err(|e| e.to_string())?;
        // The metadata file comes last and appears whole (temp + rename): the inbox
        // scanner takes a pair only once its JSON exists.
        let tmp = self.inbox.join(format!(".{}.json.tmp", m.call_id));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&meta).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let json = self.inbox.join(format!("{}.json", m.call_id));
        std::fs::rename(&tmp, &json).map_err(|e| e.to_string())?;
        Ok(json)
    }
}

/// The finisher thread's handle: finished recorders go here.
#[derive(Clone)]
pub struct Finisher(mpsc::Sender<Recorder>);

impl Finisher {
    pub fn start() -> io::Result<Finisher> {
        let (tx, rx) = mpsc::channel::<Recorder>();
        std::thread::Builder::new()
            .name("recording-finisher".into())
            .spawn(move || {
                for r in rx {
                    let call = r.meta.call_id.clone();
                    let path = r.path.clone();
                    match r.finish() {
                        Ok(json) => {
                            tracing::info!(%call, file = %json.display(), "recording handed to storage")
                        }
                        Err(e) => {
                            // The partial file stays under recording/ for an operator.
                            tracing::error!(%call, file = %path.display(), error = %e, "recording could not be finished");
                        }
                    }
                }
            })?;
        Ok(Finisher(tx))
    }

    pub fn finish(&self, r: Recorder) {
        if let Err(mpsc::SendError(r)) = self.0.send(r) {
            tracing::error!(call = %r.meta.call_id, "recording finisher is gone: recording left in place");
        }
    }
}
