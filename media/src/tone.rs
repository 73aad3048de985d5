//! A sine tone generator producing G.711 payloads, so test and load traffic carries
//! real audio rather than silence.

use crate::g711;

#[derive(Debug, Clone)]
pub struct Tone {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl Tone {
    /// A tone of `hz` at `rate` samples/s, amplitude about −10 dBFS.
    pub fn new(hz: f64, rate: u32) -> Self {
        Tone {
            phase: 0.0,
            step: std::f64::consts::TAU * hz / rate as f64,
            amplitude: 10_000.0,
        }
    }

    pub fn next_sample(&mut self) -> i16 {
        let s = (self.phase.sin() * self.amplitude) as i16;
        self.phase = (self.phase + self.step) % std::f64::consts::TAU;
        s
    }

    /// Fill a µ-law (PT 0) or A-law (PT 8) payload.
    pub fn fill_g711(&mut self, out: &mut [u8], alaw: bool) {
        for b in out.iter_mut() {
            let s = self.next_sample();
            *b = if alaw {
                g711::linear_to_alaw(s)
            } else {
                g711::linear_to_ulaw(s)
            };
        }
    }
}

/// Goertzel power of `hz` in `samples` (normalised by length), to detect a tone.
pub fn goertzel(samples: &[i16], hz: f64, rate: u32) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * hz / rate as f64).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (samples.len().max(1) as f64).powi(2)
}

/// Whether `hz` is present in `samples`: its Goertzel power is a real share of the
/// signal's energy (a present tone gives about half the mean square per tone in the
/// mix; spectral leakage from gaps and concealment stays far below 5 %), and above
/// a floor for near-silence.
pub fn detect(samples: &[i16], hz: f64, rate: u32) -> bool {
    let p = goertzel(samples, hz, rate);
    let ms = samples.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64;
    p > 1000.0 && p > 0.05 * ms
}

/// One second of a tone, pre-encoded in G.711, to copy 20 ms slices from: a whole
/// number of periods when `hz` is an integer, so it loops seamlessly.
#[derive(Debug, Clone)]
pub struct ToneTable {
    samples: Vec<u8>,
}

impl ToneTable {
    pub fn new(hz: f64, rate: u32, alaw: bool) -> Self {
        let mut t = Tone::new(hz, rate);
        let mut samples = vec![0u8; rate as usize];
        t.fill_g711(&mut samples, alaw);
        ToneTable { samples }
    }

    /// Fill `out` with the samples starting at `pos` (wrapping); returns the next position.
    pub fn fill(&self, out: &mut [u8], pos: usize) -> usize {
        let n = self.samples.len();
        let mut p = pos % n;
        for chunk in out.chunks_mut(n) {
            let len = chunk.len();
            let first = (n - p).min(len);
            chunk[..first].copy_from_slice(&self.samples[p..p + first]);
            chunk[first..].copy_from_slice(&self.samples[..len - first]);
            p = (p + len) % n;
        }
        p
    }
}

#[cfg(test)]
#[path = "tone_tests.rs"]
mod tests;
