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
mod tests {
    use super::*;
    use crate::tone;

    /// A 16-bit PCM WAV file in memory.
    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        let data_len = (samples.len() * 2) as u32;
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
        v.extend_from_slice(&(channels * 2).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    }

    fn sine(rate: u32, hz: f64, secs: f64) -> Vec<i16> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    fn dominant(samples: &[i16], candidates: &[f64]) -> Vec<f64> {
        let mid = &samples[samples.len() / 4..samples.len() / 4 + 1600];
        candidates
            .iter()
            .copied()
            .filter(|hz| tone::detect(mid, *hz, RATE))
            .collect()
    }

    #[test]
    fn wav_at_8k_is_taken_as_is() {
        let s = sine(8000, 440.0, 1.0);
        let out = decode(wav(8000, 1, &s), Some("wav")).unwrap();
        assert_eq!(out.len(), 8000);
        assert_eq!(dominant(&out, &[440.0, 1100.0]), vec![440.0]);
    }

    #[test]
    fn stereo_48k_is_mixed_down_and_resampled() {
        let left = sine(48_000, 1100.0, 1.0);
        let st: Vec<i16> = left.iter().flat_map(|s| [*s, *s]).collect();
        let out = decode(wav(48_000, 2, &st), None).unwrap();
        // One second at 8 kHz (the resampler trims its delay).
        assert!((7900..=8100).contains(&out.len()), "{}", out.len());
        assert_eq!(dominant(&out, &[440.0, 1100.0, 1700.0]), vec![1100.0]);
        // Level kept (8000 peak in, within a few % out).
        let peak = out[2000..6000]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!((7500..=8500).contains(&peak), "peak {peak}");
    }

    #[test]
    fn garbage_and_empty_are_clear_errors() {
        assert!(matches!(
            decode(b"this is not audio at all".to_vec(), Some("mp3")),
            Err(AudioError::Format(_))
        ));
        assert_eq!(decode(wav(8000, 1, &[]), None), Err(AudioError::Empty));
    }

    #[test]
    fn too_long_is_refused() {
        let s = vec![0i16; (8000 * (MAX_SECONDS + 1)) as usize];
        assert_eq!(decode(wav(8000, 1, &s), None), Err(AudioError::TooLong));
    }

    #[test]
    fn player_once_and_looped() {
        let s: Arc<[i16]> = (1..=400).collect::<Vec<i16>>().into();
        let mut once = Player::new(s.clone(), false);
        assert_eq!(once.frames(), 3);
        let f: Vec<Frame> = std::iter::from_fn(|| once.next_frame()).collect();
        assert_eq!(f.len(), 3);
        assert_eq!(f[2][79], 400);
        assert_eq!(f[2][80], 0, "last frame padded with silence");
        let mut looped = Player::new(s, true);
        for _ in 0..2 {
            looped.next_frame();
        }
        let third = looped.next_frame().unwrap();
        assert_eq!((third[79], third[80]), (400, 1), "wraps to the start");
        assert!(looped.next_frame().is_some());
    }

    /// MP3, OGG Vorbis and FLAC fixtures (1 s of 1100 Hz at 0.25 full scale, made
    /// with libsndfile): each decodes to about one second of 1100 Hz at 8 kHz.
    #[test]
    fn mp3_ogg_flac_decode_to_8k() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for (name, ext) in [
            ("tone1100_44k1_stereo.mp3", "mp3"),
            ("tone1100_48k_stereo.ogg", "ogg"),
            ("tone1100_16k.flac", "flac"),
        ] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            let out = decode(bytes, Some(ext)).unwrap_or_else(|e| panic!("{name}: {e}"));
            // MP3 adds encoder padding; allow 10 %.
            assert!((7600..=8900).contains(&out.len()), "{name}: {}", out.len());
            assert_eq!(
                dominant(&out, &[440.0, 1100.0, 1700.0]),
                vec![1100.0],
                "{name}"
            );
            let peak = out[2000..6000]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap();
            assert!((7000..=9500).contains(&peak), "{name}: peak {peak}");
        }
    }
}
