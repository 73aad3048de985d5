//! A fixed-delay jitter buffer for one incoming G.711 stream, sans-IO: packets go in
//! by RTP sequence number as they arrive (any order, duplicates, gaps), and one
//! 20 ms frame comes out per mixer tick after the playout delay. A missing frame is
//! concealed by repeating the last one at half level once, then silence.

use crate::mixer::{Frame, FRAME, SILENCE};

/// Frames held back before playout starts (60 ms).
pub const DEPTH: u16 = 3;
const SLOTS: usize = 32;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    pub played: u64,
    pub concealed: u64,
    pub late: u64,
    pub duplicates: u64,
}

#[derive(Debug)]
pub struct JitterBuffer {
    slots: Box<[Option<(u16, Frame)>; SLOTS]>,
    /// Sequence number of the next frame to play, once started.
    next: Option<u16>,
    buffered: u16,
    last: Frame,
    concealed_run: u32,
    pub stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl JitterBuffer {
    pub fn new() -> Self {
        JitterBuffer {
            slots: Box::new([None; SLOTS]),
            next: None,
            buffered: 0,
            last: SILENCE,
            concealed_run: 0,
            stats: JitterStats::default(),
        }
    }

    /// A decoded 20 ms frame with its RTP sequence number.
    pub fn push(&mut self, seq: u16, frame: &Frame) {
        if let Some(next) = self.next {
            let ahead = seq.wrapping_sub(next);
            if ahead >= 0x8000 {
                self.stats.late += 1;
                return;
            }
            if ahead as usize >= SLOTS {
                // Far ahead (a jump): restart playout from here.
                self.slots.iter_mut().for_each(|s| *s = None);
                self.next = Some(seq);
            }
        }
        let slot = &mut self.slots[seq as usize % SLOTS];
        if slot.is_some_and(|(s, _)| s == seq) {
            self.stats.duplicates += 1;
            return;
        }
        *slot = Some((seq, *frame));
        if self.next.is_none() {
            self.buffered += 1;
            // Playout starts DEPTH frames after the first one seen.
            if self.buffered >= DEPTH {
                let oldest = self
                    .slots
                    .iter()
                    .flatten()
                    .map(|(s, _)| *s)
                    .min_by_key(|s| s.wrapping_sub(seq).wrapping_add(0x8000))
                    .unwrap_or(seq);
                self.next = Some(oldest);
            }
        }
    }

    /// The frame for this tick (silence before playout starts).
    pub fn pop(&mut self) -> Frame {
        let Some(next) = self.next else {
            return SILENCE;
        };
        self.next = Some(next.wrapping_add(1));
        let slot = &mut self.slots[next as usize % SLOTS];
        match slot.take() {
            Some((s, f)) if s == next => {
                self.stats.played += 1;
                self.concealed_run = 0;
                self.last = f;
                f
            }
            other => {
                *slot = other.filter(|(s, _)| s.wrapping_sub(next) < 0x8000);
                self.stats.concealed += 1;
                self.concealed_run += 1;
                if self.concealed_run == 1 {
                    let mut f = self.last;
                    f.iter_mut().for_each(|x| *x /= 2);
                    f
                } else {
                    SILENCE
                }
            }
        }
    }
}

/// Decode a G.711 payload (PT 0 µ-law, 8 A-law) of 160 bytes into a frame.
pub fn decode_g711(payload: &[u8], alaw: bool, out: &mut Frame) -> bool {
    if payload.len() != FRAME {
        return false;
    }
    for (o, b) in out.iter_mut().zip(payload) {
        *o = if alaw {
            crate::g711::alaw_to_linear(*b)
        } else {
            crate::g711::ulaw_to_linear(*b)
        };
    }
    true
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
