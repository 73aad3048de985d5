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
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut b = vec![0u8; 172];
        crate::rtp::write_header(
            &mut b,
            &RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: seq,
                timestamp: ts,
                ssrc,
            },
            None,
        );
        b
    }

    #[test]
    fn relay_mix_relay_keeps_ssrc_sequence_and_timestamps_continuous() {
        let mut out = OutStream::new(0xABCD, 5000, 80_000);
        let mut got: Vec<(u16, u32, u32)> = Vec::new();
        let mut t = 0u64;
        let mut in_seq = 100u16;
        let mut in_ts = 1_000u32;
        let emit_relay =
            |out: &mut OutStream, t: u64, seq: u16, ts: u32, got: &mut Vec<(u16, u32, u32)>| {
                let mut p = packet(seq, ts, 0x1111);
                assert!(out.relay(&mut p, t));
                let h = crate::rtp::parse(&p).unwrap().header;
                got.push((h.sequence, h.timestamp, h.ssrc));
            };
        for _ in 0..10 {
            emit_relay(&mut out, t, in_seq, in_ts, &mut got);
            t += 20_000;
            in_seq += 1;
            in_ts += 160;
        }
        // A supervisor joins: the mixer produces the stream for 10 frames while the
        // input carries on (its packets are not forwarded).
        for _ in 0..10 {
            let h = out.generate(0, t);
            got.push((h.sequence, h.timestamp, h.ssrc));
            t += 20_000;
            in_seq += 1;
            in_ts += 160;
        }
        // Back to relaying the same input.
        for _ in 0..10 {
            emit_relay(&mut out, t, in_seq, in_ts, &mut got);
            t += 20_000;
            in_seq += 1;
            in_ts += 160;
        }
        assert_eq!(got[0].0, 5000);
        for w in got.windows(2) {
            assert_eq!(
                w[1].0,
                w[0].0.wrapping_add(1),
                "sequence without jumps: {w:?}"
            );
            assert_eq!(
                w[1].1,
                w[0].1.wrapping_add(160),
                "timestamps follow the clock: {w:?}"
            );
            assert_eq!(w[1].2, 0xABCD, "SSRC constant");
        }
    }

    #[test]
    fn a_new_input_stream_continues_the_output_too() {
        let mut out = OutStream::new(7, 1, 0);
        let mut a = packet(40_000, 9_999, 1);
        out.relay(&mut a, 0);
        // The far end changed (transfer, new SSRC) after a 60 ms gap.
        let mut b = packet(3, 77, 2);
        out.relay(&mut b, 60_000);
        let (ha, hb) = (
            crate::rtp::parse(&a).unwrap().header,
            crate::rtp::parse(&b).unwrap().header,
        );
        assert_eq!(hb.sequence, ha.sequence.wrapping_add(1));
        assert_eq!(hb.timestamp, ha.timestamp.wrapping_add(3 * 160));
        assert_eq!(hb.ssrc, 7);
    }
}
