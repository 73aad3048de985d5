//! One outgoing RTP stream towards an endpoint, kept continuous across relay → mix →
//! relay switches: the SSRC never changes, sequence numbers go up by one per packet
//! and timestamps follow the clock, whoever produced the packet (phones glitch or
//! drop audio on a jump).

use crate::rtp::RtpHeader;

#[derive(Debug, Clone, Copy)]
enum Source {
    /// Forwarding packets of an input stream (`ssrc`) with these offsets.
    Relay {
        ssrc: u32,
        seq_off: u16,
        ts_off: u32,
    },
    /// Generating frames (mixer output).
    Generate,
    None,
}

#[derive(Debug, Clone)]
pub struct OutStream {
    ssrc: u32,
    last_seq: u16,
    last_ts: u32,
    last_at_us: u64,
    started: bool,
    source: Source,
    /// The RFC 4733 event being passed through while generating: (input timestamp,
    /// output timestamp), so every packet of one event keeps one timestamp.
    event: Option<(u32, u32)>,
}

impl OutStream {
    pub fn new(ssrc: u32, first_seq: u16, first_ts: u32) -> Self {
        OutStream {
            ssrc,
            last_seq: first_seq.wrapping_sub(1),
            last_ts: first_ts.wrapping_sub(160),
            last_at_us: 0,
            started: false,
            source: Source::None,
            event: None,
        }
    }

    /// A stream that goes on from a packet already sent (`ssrc`, `seq`, `ts` at
    /// `at_us`): the next packet, whoever produces it, is `seq + 1` with this SSRC,
    /// its timestamp moved on by the time elapsed.
    pub fn continuing(ssrc: u32, seq: u16, ts: u32, at_us: u64) -> Self {
        OutStream {
            ssrc,
            last_seq: seq,
            last_ts: ts,
            last_at_us: at_us,
            started: true,
            source: Source::None,
            event: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Timestamp units elapsed since the last packet, in whole 20 ms frames.
    fn elapsed_ts(&self, now_us: u64) -> u32 {
        if !self.started {
            return 160;
        }
        let frames = (now_us.saturating_sub(self.last_at_us) + 10_000) / 20_000;
        (frames.max(1) as u32) * 160
    }

    /// Rewrite a relayed packet's header (in place) onto this stream.
    pub fn relay(&mut self, pkt: &mut [u8], now_us: u64) -> bool {
        let Some(p) = crate::rtp::parse(pkt) else {
            return false;
        };
        let h = p.header;
        let (seq_off, ts_off) = match self.source {
            Source::Relay {
                ssrc,
                seq_off,
                ts_off,
            } if ssrc == h.ssrc => (seq_off, ts_off),
            Source::None if h.ssrc == self.ssrc => {
                // The stream it was relayed on goes on (`continuing`): unchanged.
                self.source = Source::Relay {
                    ssrc: h.ssrc,
                    seq_off: 0,
                    ts_off: 0,
                };
                (0, 0)
            }
            _ => {
                // A new input (or back from mixing): continue where the stream is.
                let seq_off = self.last_seq.wrapping_add(1).wrapping_sub(h.sequence);
                let ts_off = self
                    .last_ts
                    .wrapping_add(self.elapsed_ts(now_us))
                    .wrapping_sub(h.timestamp);
                self.source = Source::Relay {
                    ssrc: h.ssrc,
                    seq_off,
                    ts_off,
                };
                (seq_off, ts_off)
            }
        };
        let seq = h.sequence.wrapping_add(seq_off);
        let ts = h.timestamp.wrapping_add(ts_off);
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        // Only move forward (a late packet keeps its rewritten number).
        if seq.wrapping_sub(self.last_seq) < 0x8000 {
            self.last_seq = seq;
            self.last_ts = ts;
        }
        self.last_at_us = now_us;
        self.started = true;
        true
    }

    /// Pass an RFC 4733 event packet into a stream that is generating audio: it gets
    /// the next sequence number and, per event, one timestamp on this stream's clock.
    pub fn event(&mut self, pkt: &mut [u8]) -> bool {
        let Some(p) = crate::rtp::parse(pkt) else {
            return false;
        };
        let in_ts = p.header.timestamp;
        let ts = match self.event {
            Some((i, o)) if i == in_ts => o,
            _ => {
                let o = self.last_ts.wrapping_add(160);
                self.event = Some((in_ts, o));
                o
            }
        };
        self.last_seq = self.last_seq.wrapping_add(1);
        pkt[2..4].copy_from_slice(&self.last_seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        true
    }

    /// The header of the next generated 20 ms frame.
    pub fn generate(&mut self, payload_type: u8, now_us: u64) -> RtpHeader {
        let ts = if matches!(self.source, Source::Generate) {
            self.last_ts.wrapping_add(160)
        } else {
            self.last_ts.wrapping_add(self.elapsed_ts(now_us))
        };
        let marker = !matches!(self.source, Source::Generate);
        self.source = Source::Generate;
        self.last_seq = self.last_seq.wrapping_add(1);
        self.last_ts = ts;
        self.last_at_us = now_us;
        self.started = true;
        RtpHeader {
            marker,
            payload_type,
            sequence: self.last_seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
    }
}

#[cfg(test)]
#[path = "continuity_tests.rs"]
mod tests;
