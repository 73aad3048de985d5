//! Audio files for announcements and hold music: WAV, MP3, OGG (Vorbis) or FLAC,
//! decoded with symphonia, mixed down to mono and resampled to the call rate (8 kHz)
//! with rubato; and [`Player`], which hands the samples out one 20 ms frame at a time.
//! Decoding takes bytes (the driver reads the file), so it stays free of I/O.

use crate::mixer::{Frame, FRAME, SILENCE};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::io::Cursor;
use std::sync::Arc;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// The rate everything is resampled to (G.711).
pub const RATE: u32 = 8000;
/// Longest audio accepted (hold music loops; announcements are seconds).
pub const MAX_SECONDS: u32 = 600;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AudioError {
    #[error("not a supported audio file (WAV, MP3, OGG Vorbis, FLAC): {0}")]
    Format(String),
    #[error("no audio track")]
    NoTrack,
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("no audio samples")]
    Empty,
    #[error("longer than {MAX_SECONDS} s")]
    TooLong,
    #[error("cannot resample from {0} Hz: {1}")]
    Resample(u32, String),
}

/// Decode a whole file's bytes to mono 16-bit samples at [`RATE`]. `ext` (the file
/// extension) is a hint; the content decides.
pub fn decode(bytes: Vec<u8>, ext: Option<&str>) -> Result<Vec<i16>, AudioError> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = ext {
        hint.with_extension(e);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| AudioError::Format(e.to_string()))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or(AudioError::NoTrack)?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or(AudioError::NoTrack)?
        .clone();
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::Decode(e.to_string()))?;
    let mut mono: Vec<f32> = Vec::new();
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut interleaved: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A truncated file ends where the damage starts.
            Err(SymError::IoError(_)) => break,
            Err(e) => return Err(AudioError::Decode(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(b) => b,
            // A corrupt frame is skipped, as players do.
            Err(SymError::DecodeError(_)) => continue,
            Err(e) => return Err(AudioError::Decode(e.to_string())),
        };
        let spec = buf.spec();
        rate = spec.rate();
        let ch = spec.channels().count().max(1);
        interleaved.resize(buf.samples_interleaved(), 0.0);
        buf.copy_to_slice_interleaved(&mut interleaved);
        mono.extend(
            interleaved
                .chunks_exact(ch)
                .map(|f| f.iter().sum::<f32>() / ch as f32),
        );
        if rate > 0 && mono.len() as u64 > MAX_SECONDS as u64 * rate as u64 {
            return Err(AudioError::TooLong);
        }
    }
    if mono.is_empty() || rate == 0 {
        return Err(AudioError::Empty);
    }
    let out = if rate == RATE {
        mono
    } else {
        resample(&mono, rate)?
    };
    Ok(out
        .iter()
        .map(|s| (s * 32767.0).clamp(-32768.0, 32767.0) as i16)
        .collect())
}

fn resample(mono: &[f32], rate: u32) -> Result<Vec<f32>, AudioError> {
    let err = |e: &dyn std::fmt::Display| AudioError::Resample(rate, e.to_string());
    let mut r = Fft::<f32>::new(rate as usize, RATE as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| err(&e))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| err(&e))?;
    let out = r
        .process_all(&input, mono.len(), None)
        .map_err(|e| err(&e))?;
    Ok(out.take_data())
}

/// The name under which the built-in ringback is asked for (a `Hold` command's
/// `audio`): what a customer hears while a transfer's target rings when its queue or
/// route configures no `hold_audio`, so it never hears dead silence.
pub const RINGBACK: &str = "builtin:ringback";

/// One cycle of ringback at 8 kHz: 440 + 480 Hz for 2 s, then 4 s of silence
/// (ITU-T E.180 / North American cadence), at about -16 dBm0 per tone.
pub fn ringback() -> Vec<i16> {
    let rate = 8000.0;
    (0..6 * 8000)
        .map(|i| {
            if i >= 2 * 8000 {
                return 0;
            }
            let t = i as f64 / rate;
            let s = (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + (2.0 * std::f64::consts::PI * 480.0 * t).sin();
            (s * 4000.0) as i16
        })
        .collect()
}

/// Plays samples one frame at a time, once or looped.
#[derive(Debug, Clone)]
pub struct Player {
    samples: Arc<[i16]>,
    pos: usize,
    looped: bool,
}

impl Player {
    pub fn new(samples: Arc<[i16]>, looped: bool) -> Self {
        Player {
            samples,
            pos: 0,
            looped,
        }
    }

    /// The next 20 ms (the last one padded with silence); `None` when a single play
    /// is over (or there is nothing to play).
    pub fn next_frame(&mut self) -> Option<Frame> {
        let n = self.samples.len();
        if n == 0 || (!self.looped && self.pos >= n) {
            return None;
        }
        let mut f = SILENCE;
        for s in f.iter_mut() {
            if self.pos >= n {
                if !self.looped {
                    break;
                }
                self.pos = 0;
            }
            *s = self.samples[self.pos];
            self.pos += 1;
        }
        Some(f)
    }

    /// Frames a single play lasts.
    pub fn frames(&self) -> usize {
        self.samples.len().div_ceil(FRAME)
    }
}

#[cfg(test)]
#[path = "audio_tests.rs"]
mod tests;
