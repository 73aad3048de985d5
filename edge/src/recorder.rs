//! Call recordings: a stereo 16-bit PCM WAV written by the call's relay worker while
//! the call lasts (customer left, agent side right, from the mix session's tap), and
//! a finisher thread that, when the call ends, patches the WAV header, syncs it,
//! computes its SHA-256 and hands the file plus its metadata JSON to the recordings
//! inbox (`{storage.dir}/inbox`: the WAV first, then the JSON), from where the
//! uploader spools it. Files being written live in `{storage.dir}/recording/`, each
//! with a `{call}.meta.json` sidecar written at the start; after a crash,
//! [`recover`] (run at start) repairs the WAV header of each file left there and hands
//! it over with `"recovered": true` (its paused spans are not known; the audio in them
//! is silence, as the mixer wrote it).

use b2bua::RecordingMeta;
use media::wav::StereoWav;
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
    /// The write error that stopped the recording.
    error: Option<io::ErrorKind>,
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
        let started = SystemTime::now();
        // The sidecar first: a WAV found after a crash always has its call's metadata.
        let sidecar = sidecar_of(&path);
        write_atomic(&sidecar, &base_meta(&meta, started))?;
        let f = File::create(&path)?;
        let out = BufWriter::with_capacity(16 * 1024, f);
        let wav = if meta.voicemail {
            StereoWav::mono(out, RATE)?
        } else {
            StereoWav::new(out, RATE)?
        };
        Ok(Recorder {
            wav: Some(wav),
            path,
            inbox: crate::recordings::inbox_dir(storage_dir),
            meta,
            started,
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
            self.error = Some(e.kind());
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
    fn finish(mut self) -> io::Result<PathBuf> {
        if let Some(from) = self.paused_at.take() {
            self.spans.push((from, self.frames));
        }
        let ended = SystemTime::now();
        let wav = self
            .wav
            .take()
            .ok_or_else(|| io::Error::from(self.error.unwrap_or(io::ErrorKind::Other)))?;
        let mut w = wav.finish()?;
        w.flush()?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        let sha256 = storage::sha256_file(&self.path)?;
        let secs = |f: u64| f as f64 / FRAMES_PER_SEC;
        let mut meta = base_meta(&self.meta, self.started);
        meta["end"] = rfc3339(ended).into();
        meta["duration_secs"] = secs(self.frames).into();
        meta["paused"] = self
            .spans
            .iter()
            .map(|(a, b)| serde_json::json!({"from_secs": secs(*a), "to_secs": secs(*b)}))
            .collect::<Vec<_>>()
            .into();
        meta["sha256"] = sha256.into();
        hand_over(&self.path, &self.inbox, &self.meta.call_id, &meta)
    }
}

fn sidecar_of(wav: &Path) -> PathBuf {
    wav.with_extension("meta.json")
}

/// Reserved data fields as a JSON object (field → value).
pub fn reserved_json(fields: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

/// What is known of a recording when it starts.
fn base_meta(m: &RecordingMeta, started: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "recording_id": m.call_id,
        "call_id": m.call_id,
        "caller": m.caller,
        "callee": m.callee,
        "queue": m.queue,
        "route": m.route,
        "agent": m.agent,
        "reserved_data": reserved_json(&m.reserved),
        "start": rfc3339(started),
        "format": "wav",
        "channels": if m.voicemail {
            serde_json::json!({"mono": "caller"})
        } else {
            serde_json::json!({"left": "customer", "right": "agent"})
        },
        "voicemail": m.voicemail,
        "sample_rate": RATE,
        "file": format!("{}.wav", m.call_id),
    })
}

fn write_atomic(path: &Path, v: &serde_json::Value) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

/// Move a finished WAV into the inbox, then its metadata JSON (which appears whole:
/// the inbox scanner takes a pair only once its JSON exists); drop the sidecar.
fn hand_over(
    wav: &Path,
    inbox: &Path,
    call_id: &str,
    meta: &serde_json::Value,
) -> io::Result<PathBuf> {
    std::fs::create_dir_all(inbox)?;
    let wav_in = inbox.join(format!("{call_id}.wav"));
    std::fs::rename(wav, &wav_in)?;
    let tmp = inbox.join(format!(".{call_id}.json.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(meta).unwrap_or_default())?;
    let json = inbox.join(format!("{call_id}.json"));
    std::fs::rename(&tmp, &json)?;
    let _ = std::fs::remove_file(sidecar_of(wav));
    Ok(json)
}

/// At start: hand over every recording a crash left under `{storage.dir}/recording/`
/// (header repaired, torn last frame dropped, `"recovered": true`). Returns how many.
/// A file that cannot be recovered is logged and left for an operator.
pub fn recover(storage_dir: &Path) -> usize {
    let dir = storage_dir.join("recording");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let inbox = crate::recordings::inbox_dir(storage_dir);
    let mut n = 0;
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|e| e != "wav") {
            continue;
        }
        match recover_one(&path, &inbox) {
            Ok(json) => {
                n += 1;
                tracing::warn!(file = %json.display(), "recording left by a crash recovered and handed to storage");
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "recording left by a crash could not be recovered");
            }
        }
    }
    n
}

fn recover_one(path: &Path, inbox: &Path) -> io::Result<PathBuf> {
    let call_id = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a UTF-8 file name"))?
        .to_string();
    let mut meta: serde_json::Value = std::fs::read(sidecar_of(path))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({"recording_id": call_id, "call_id": call_id}));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let md = f.metadata()?;
    let channels: u16 = if meta["voicemail"] == true { 1 } else { 2 };
    let frames = media::wav::repair(&mut f, RATE, channels, md.len())?;
    f.set_len(44 + frames * 2 * u64::from(channels))?;
    f.sync_all()?;
    drop(f);
    meta["end"] = md.modified().map(rfc3339).unwrap_or_default().into();
    meta["duration_secs"] = (frames as f64 / RATE as f64).into();
    meta["paused"] = serde_json::json!([]);
    meta["recovered"] = true.into();
    meta["sha256"] = storage::sha256_file(path)?.into();
    hand_over(path, inbox, &call_id, &meta)
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

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
