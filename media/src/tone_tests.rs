//! Unit tests of `tone.rs`.

use super::*;

#[test]
fn tone_is_detected_at_its_frequency_only() {
    let mut t = Tone::new(440.0, 8000);
    let mut payload = [0u8; 800];
    t.fill_g711(&mut payload, false);
    let pcm: Vec<i16> = payload.iter().map(|&u| g711::ulaw_to_linear(u)).collect();
    let at = goertzel(&pcm, 440.0, 8000);
    let off = goertzel(&pcm, 1100.0, 8000);
    assert!(at > 100.0 * off, "440: {at}, 1100: {off}");
}

#[test]
fn table_loops_seamlessly() {
    let t = ToneTable::new(440.0, 8000, false);
    let mut direct = Tone::new(440.0, 8000);
    let mut want = vec![0u8; 8000 * 2 + 160];
    direct.fill_g711(&mut want, false);
    let mut got = vec![0u8; want.len()];
    let mut pos = 0;
    for chunk in got.chunks_mut(160) {
        pos = t.fill(chunk, pos);
    }
    // Same samples across the wrap (sin of the same phase, within one step).
    let diff = want.iter().zip(&got).filter(|(a, b)| a != b).count();
    assert!(diff < want.len() / 100, "{diff} samples differ");
}
