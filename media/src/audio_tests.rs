//! Unit tests of `audio.rs`.

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
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i16)
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
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("tests/fixtures");
    for (name, ext) in [
        ("tone1100_44k1_stereo.mp3", "mp3"),
        ("tone1100_48k_stereo.ogg", "ogg"),
        ("tone1100_16k.flac", "flac"),
    ] {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
